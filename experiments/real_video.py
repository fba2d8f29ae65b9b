"""The benchmark's video clips: stability without ground truth.

Each clip's first `frames` frames are written to a temporary clip (OpenCV's
mp4v, so every method sees the same re-encoded pixels) and reconstructed
twice: by `mofa reconstruct`'s video path (`video.reconstruct_video`: the
identity is the mean of photo fits of up to 5 near-frontal, sharp frames;
each frame fits pose, expression and light from the previous one, a frame
that disagrees with its landmarks is refitted from them or counted lost;
then pose and expression are smoothed), and frame by frame by its photo
path (`real_photos.reconstruct_largest`).

Measured, with the detector as the baseline:
  * jitter: mean |x(t+1) - 2 x(t) + x(t-1)| of the 68 points over
    consecutive frames (25 fps), over sqrt(w h) of the detection's box:
    motion plus noise, the same motion for every method.
  * agreement: NME of the projected final-level landmarks against the
    detections (no truth: how closely the model follows the detector).
  * identity spread: the frame-by-frame path's identity meshes (shape
    only, expression 0), each aligned by a similarity onto their mean: mean
    per-vertex distance to that mean, mm (the video path shares one
    identity, 0 by construction).
  * landmark distance: per frame, the median over the 68 points of the
    projected final-level landmarks' distance to the detections over
    sqrt(w h) of their box (the video path's lost-face test); its median
    and 95th percentile over frames.
  * vertex jitter: mean |v(t+1) - 2 v(t) + v(t-1)| of the final mesh's
    vertices in the model frame (expression and identity, no pose), mm.
  * ARKit jitter: mean |w(t+1) - w(t)| of the 53 blendshape weights
    (`arkit.weights_over_time`, as the animation files), per weight.
  * motion (`motion_following`): the lag behind the detector's motion,
    the speed kept on its fastest frames, and jitter on its stillest.
  * the video path's frames without a face, refitted and lost, and the
    frames its identity came from.
"""

import os
import tempfile
import time
from typing import Dict

import jax.numpy as jnp
import numpy as np

from mofa_ml import metrics
from mofa_ml.facemodel import arkit
from mofa_ml.facemodel import levels
from mofa_ml.reconstruction import video as video_lib

from experiments import real_photos
from experiments import real_scoring


def _first_frames(path: str, count: int, folder: str) -> str:
  """The clip's first `count` frames as a new mp4 in `folder`."""
  import cv2  # pylint: disable=g-import-not-at-top
  target = os.path.join(folder, os.path.basename(path))
  writer = None
  for index, frame in video_lib.read_video_frames(path):
    if index >= count:
      break
    if writer is None:
      writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*'mp4v'),
                               video_lib.video_fps(path),
                               (frame.shape[1], frame.shape[0]))
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  if writer is None:
    raise ValueError(f'{path}: no frames')
  writer.release()
  return target


def _second_differences(tracks: np.ndarray, boxes: np.ndarray
                        ) -> np.ndarray:
  """(T - 2,) the mean second difference of (T, K, 2) point tracks over
  (T,) box sizes, entry t centred on frame t + 1."""
  second = tracks[2:] - 2 * tracks[1:-1] + tracks[:-2]
  return np.linalg.norm(second, axis=-1).mean(-1) / boxes[1:-1]


def jitter(tracks: np.ndarray, boxes: np.ndarray) -> float:
  """Mean second difference of (T, K, 2) point tracks over (T,) box sizes
  (consecutive frames; T >= 3)."""
  return float(np.mean(_second_differences(tracks, boxes)))


def identity_spread(identities) -> float:
  """Mean per-vertex distance (mm) of same-topology (N, 3) meshes, each
  aligned by a similarity onto their mean, to that mean (twice)."""
  identities = [np.asarray(v, np.float64) for v in identities]
  mean = np.mean(identities, axis=0)
  for _ in range(2):  # realign to the mean of the aligned meshes
    aligned = [real_scoring.apply(real_scoring.umeyama(v, mean), v)
               for v in identities]
    mean = np.mean(aligned, axis=0)
  return float(np.mean([np.linalg.norm(v - mean, axis=1).mean()
                        for v in aligned]))


def vertex_jitter(vertices: np.ndarray) -> float:
  """Mean second difference (mm) of (T, N, 3) vertices (T >= 3)."""
  second = vertices[2:] - 2 * vertices[1:-1] + vertices[:-2]
  return float(np.linalg.norm(second, axis=-1).mean())


def weight_jitter(weights: np.ndarray) -> float:
  """Mean |w(t+1) - w(t)| of (T, K) weights, over frames and weights."""
  return float(np.abs(np.diff(weights, axis=0)).mean())


def motion_following(tracks: np.ndarray, detected: np.ndarray,
                     boxes: np.ndarray, fast_fraction: float = 0.2,
                     max_lag: int = 3) -> Dict:
  """How (T, 68, 2) point tracks follow the detections' motion (box units,
  (T,) box sizes; consecutive frames):
    lag_frames: the shift in [-max_lag, max_lag] (positive: behind) at which
      the tracks' mean velocity best matches the detections' (correlation);
    fast_speed_ratio: the tracks' mean speed over the detections' on the
      `fast_fraction` of frames where the detections move fastest (below
      1: fast motion smeared);
    still_jitter: `jitter` over the frames where the detections move at
      most their median speed (noise, not motion).
  """
  velocity = lambda t: np.diff(t, axis=0).mean(axis=1) / boxes[1:, None]
  own, reference = velocity(tracks), velocity(detected)
  count = len(reference)

  def match(lag):
    a = own[max(lag, 0):count + min(lag, 0)]
    b = reference[max(-lag, 0):count - max(lag, 0)]
    return float(np.sum(a * b) / max(len(a), 1))

  speed = np.linalg.norm(reference, axis=1)
  fast = speed >= np.quantile(speed, 1.0 - fast_fraction)
  still = np.flatnonzero(speed <= np.median(speed))
  per_frame = _second_differences(tracks, boxes)
  # Entry t is centred on frame t + 1: the motion from t to t + 1 and on.
  still_frames = still[still < len(per_frame)]
  return {
      'lag_frames': int(max(range(-max_lag, max_lag + 1), key=match)),
      'fast_speed_ratio': float(np.linalg.norm(own[fast], axis=1).mean() /
                                max(speed[fast].mean(), 1e-12)),
      'still_jitter': float(per_frame[still_frames].mean()),
  }


def landmark_distance(tracks: np.ndarray, detected: np.ndarray) -> Dict:
  """{'median', 'p95'} over frames of each frame's median distance of
  (T, 68, 2) points to the detections, over sqrt(w h) of their box."""
  per_frame = [np.median(np.linalg.norm(t - d, axis=1)) /
               metrics.box_size(d) for t, d in zip(tracks, detected)]
  return {'median': float(np.median(per_frame)),
          'p95': float(np.percentile(per_frame, 95))}


def _video_meshes(model, video, vectors):
  """(T, N, 3) final-level vertices (model frame, mm) and (T, me)
  expressions of the video path."""
  params = [video.layout.split(jnp.asarray(v)) for v in vectors]
  return (np.stack([np.asarray(levels.surfaces(
      model, p, video.geometry_offsets)[1].vertices) for p in params]),
          np.stack([np.asarray(p.expression) for p in params]))


def _video_landmarks(model, video, vectors) -> np.ndarray:
  """(T, 68, 2) final-level landmarks of the video path, photo pixels."""
  tracks = []
  for k in range(len(video.frames)):
    params = video.layout.split(jnp.asarray(vectors[k]))
    final = levels.surfaces(model, params, video.geometry_offsets)[1]
    tracks.append(real_photos.project_at(
        model, params, video.photo_camera, final.vertices,
        video.landmarks[k]))
  return np.stack(tracks)


def evaluate_clip(model, reconstructor, landmarker, path: str,
                  frames: int) -> Dict:
  """JSON-ready stability numbers of one clip (module docstring)."""
  with tempfile.TemporaryDirectory() as folder:
    clip = _first_frames(path, frames, folder)
    start = time.perf_counter()
    video = video_lib.reconstruct_video(reconstructor, clip, landmarker)
    video_seconds = time.perf_counter() - start
    per_frame, identities, seconds, meshes = [], [], [], {}
    for index, frame in video_lib.read_video_frames(clip):
      fitted = real_photos.reconstruct_largest(model, reconstructor,
                                               landmarker, frame)
      per_frame.append(None if fitted is None else
                       fitted.landmarks_2d['final'])
      if fitted is not None:
        identities.append(fitted.identity)
        seconds.append(fitted.seconds)
        meshes[index] = (fitted.vertices['final'],
                         np.asarray(fitted.face.params.expression))
  found = np.asarray(video.found) & np.asarray(
      [p is not None for p in per_frame])[np.asarray(video.frames)]
  detected = np.asarray(video.landmarks, np.float64)
  boxes = np.asarray([metrics.box_size(d) for d in detected])
  tracks = {
      'detector': detected,
      'video_path': _video_landmarks(model, video, video.vectors),
      'video_path_unsmoothed': _video_landmarks(model, video,
                                                video.raw_vectors),
      'frame_by_frame': np.stack([
          per_frame[f] if per_frame[f] is not None else detected[k]
          for k, f in enumerate(video.frames)]),
  }
  # Frames where the detector found the face on both passes (a gap joins
  # its neighbours; none did in the benchmark's clips: JSON 'found').
  keep = np.flatnonzero(found)
  result = {'frames': int(len(video.frames)), 'found': int(found.sum()),
            'jitter': {}, 'agreement_nme': {}}
  for name, track in tracks.items():
    result['jitter'][name] = jitter(track[keep], boxes[keep])
    if name != 'detector':
      result['agreement_nme'][name] = float(np.mean([
          real_scoring.nme(track[k], detected[k]) for k in keep]))
  result['identity_spread_mm'] = {'frame_by_frame': identity_spread(
      identities), 'video_path': 0.0}
  result['seconds_per_frame'] = {
      'video_path': video_seconds / len(video.frames),
      'frame_by_frame': float(np.mean(seconds))}
  result['motion'] = {
      name: motion_following(track[keep], detected[keep], boxes[keep])
      for name, track in tracks.items()}
  result['landmark_distance'] = {
      name: landmark_distance(track[keep], detected[keep])
      for name, track in tracks.items() if name != 'detector'}
  result['video_path_frames'] = {
      'without_face': int(np.sum(~video.found)),
      'refitted': int(np.sum(video.refitted)),
      'lost': int(np.sum(video.lost)),
      'agreement_max': float(np.nanmax(video.landmark_agreement)),
      'identity_frames': [int(f) for f in video.identity_frames]}
  # (vertices, expressions) over the kept frames, per method.
  shapes = {name: tuple(value[keep] for value in _video_meshes(
      model, video, vectors)) for name, vectors in (
          ('video_path', video.vectors),
          ('video_path_unsmoothed', video.raw_vectors))}
  shapes['frame_by_frame'] = tuple(
      np.stack([meshes[int(f)][i] for f in np.asarray(video.frames)[keep]])
      for i in (0, 1))
  result['vertex_jitter_mm'] = {name: vertex_jitter(vertices) for name, (
      vertices, _) in shapes.items()}
  rig = arkit.load_rig(model)
  if rig is not None:
    result['arkit_jitter'] = {name: weight_jitter(arkit.weights_over_time(
        rig, expressions, arkit.DEFAULT_SPARSITY)[0]) for name, (
            _, expressions) in shapes.items()}
  return result
