"""Video -> per-frame reconstructions with one identity, and their files.

Two passes over the sampled frames. The first (`video_tracking`) detects
faces, landmarks only, and follows one: in each frame the detection
nearest the previous tracked face. Up to `IDENTITY_FRAMES` frames spread
over the clip, near-frontal and sharp, are reconstructed like photos; the
identity is the robust mean of those fits, so a turned first frame cannot
spoil the clip. The second pass fits pose, expression and light of every
frame with that identity fixed, from the previous frame, with a
landmark-only stage first. A fit whose projected landmarks stay farther
than `MAX_DISAGREEMENT` from the detected ones is refitted from its own
landmarks and, if still as far, counted as lost (the previous parameters
are kept, as for a frame without a face). Pose and expression are then
smoothed in time, in one camera (the first tracked face's crop camera in
photo pixels) so that poses share a frame.
"""

import dataclasses
import io
import json
import os
import tempfile
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.data import crop
from mofa_ml.facemodel import arkit
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.learning import network
from mofa_ml.export import animation
from mofa_ml.export import meshes
from mofa_ml.fitting import fit
from mofa_ml.fitting import pose_start
from mofa_ml.export import outputs
from mofa_ml.reconstruction import video_tracking as tracking
from mofa_ml.rendering import camera

# What `video_files` writes.
VIDEO_FILES = ('parameters.npz', 'identity_final.ply', 'overlay.mp4',
               animation.GLB, animation.LIVE_LINK_CSV)
# A fit has lost the face where its projected landmarks lie farther than
# this from the detected ones (`video_tracking.landmark_agreement`; good
# fits: 0.01-0.03).
MAX_DISAGREEMENT = 0.1
IDENTITY_FRAMES = tracking.IDENTITY_FRAMES
# Each frame starts from the previous one. The landmark-only stage (noise
# weight 1) lets pose and expression follow the landmarks when the head
# moves; in the full iterations the landmarks' noise weight shrinks exactly
# then, and the fit would stop following them. With the identity fixed the
# final phase would fit the final light alone: it is skipped (the base
# light lights both levels; no clip benchmark number changed). Two full
# iterations follow the clips as well as four (within 5%) in 0.11 s, not 0.16.
FRAME_CONFIG = fit.FitConfig(
    base_steps=2, final_steps=0, fixed_identity=True, report_terms=False,
    prediction_stages=(fit.ContinuationStage('landmarks', prior_scale=1.0,
                                             iterations=2),))


@dataclasses.dataclass
class VideoReconstruction:
  """Per-frame results of one video; identity is shared by all frames.

  Attributes:
    frames: (T,) frame indices, from the first with a face.
    found: (T,) bool, a face was detected (else the previous frame's
      parameters are carried over).
    vectors: (T, size) parameter vectors (`layout`), after smoothing.
    raw_vectors: (T, size) before smoothing.
    landmarks: (T, 68, 2) the tracked face's detected landmarks, photo
      pixels (a frame without a face repeats the previous one's).
    crop_transforms: (T, 2, 3).
    geometry_offsets, reflectance_offsets: (N, 3) shared correctives.
    layout: the vectors' layout.
    fps: frames per second of the sampled sequence.
    photo_camera: the one camera of all frames (the first face's crop
      camera in photo pixels), so poses share a frame and can be smoothed.
    landmark_agreement: (T,) of each frame's fit before smoothing (NaN
      without a face; the better try's where lost).
    refitted: (T,) bool, refitted from the frame's own landmarks.
    lost: (T,) bool, no fit agreed with the landmarks (previous kept).
    identity_frames: (K,) the frames whose photo fits make the identity.
  """
  frames: np.ndarray
  found: np.ndarray
  vectors: np.ndarray
  raw_vectors: np.ndarray
  landmarks: np.ndarray
  crop_transforms: np.ndarray
  geometry_offsets: np.ndarray
  reflectance_offsets: np.ndarray
  layout: layout_lib.ParameterLayout
  fps: float
  photo_camera: camera.Intrinsics
  landmark_agreement: np.ndarray
  refitted: np.ndarray
  lost: np.ndarray
  identity_frames: np.ndarray


class Stopped(Exception):
  """The `stop` callback asked a video's passes to end (between frames)."""


def read_video_frames(path: str, frame_step: int = 1,
                      stop: Optional[Callable[[], bool]] = None):
  """Yields (index, RGB uint8 frame) of every `frame_step`-th frame.

  Raises:
    Stopped: `stop()` is true before a frame.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  capture = cv2.VideoCapture(path)
  if not capture.isOpened():
    raise ValueError(f'{path}: not a readable video')
  index = 0
  try:
    while True:
      if stop is not None and stop():
        raise Stopped(f'{path}: stopped before frame {index}')
      ok, frame = capture.read()
      if not ok:
        break
      if index % frame_step == 0:
        yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
      index += 1
  finally:
    capture.release()


def video_fps(path: str) -> float:
  import cv2  # pylint: disable=g-import-not-at-top
  capture = cv2.VideoCapture(path)
  fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
  capture.release()
  return float(fps)


# Parameter groups that vary per frame and are smoothed over time.
SMOOTHED_GROUPS = ('rotation', 'translation', 'expression')


def smooth_vectors(vectors: np.ndarray, layout: layout_lib.ParameterLayout,
                   sigma_frames: float) -> np.ndarray:
  """Gaussian smoothing over time of pose and expression (other groups are
  left as they are); sigma 0 returns the input."""
  if sigma_frames <= 0 or len(vectors) < 2:
    return vectors.copy()
  import scipy.ndimage  # pylint: disable=g-import-not-at-top
  smoothed = vectors.copy()
  for name in SMOOTHED_GROUPS:
    start, stop = layout.offsets[name]
    smoothed[:, start:stop] = scipy.ndimage.gaussian_filter1d(
        vectors[:, start:stop], sigma_frames, axis=0, mode='nearest')
  return smoothed


def _fit_frame(reconstructor, frame_config, frame, marks, confidence, mesh,
               photo_camera, identity, previous):
  """One frame of the second pass.

  Args:
    frame: (H, W, 3) uint8; marks: (68, 2) its tracked landmarks, photo
      pixels; confidence: (68,); mesh: their `Track.face_mesh`.
    identity: (size,) vector (expression 0), (N, 3) geometry and
      reflectance offsets.
    previous: the last kept (size,) vector, or None: start from the
      landmarks.

  Returns:
    (size,) vector, its `landmark_agreement`, refitted, lost, (2, 3) crop
    transform.
  """
  model, layout = reconstructor.model, fit.fit_layout(reconstructor.model)
  vector0, geometry, reflectance = identity
  transform = crop.crop_transform(marks)
  image = jnp.asarray(crop.warp_crop(frame, transform), jnp.float32) / 255
  crop_marks = jnp.asarray(crop.apply_transform(transform, marks),
                           jnp.float32)
  crop_camera = camera.crop_intrinsics(photo_camera, transform)
  dense, _ = reconstructor.dense_targets(frame, marks, transform, mesh)

  def fit_from(start: np.ndarray):
    start = network.Prediction(layout.split(jnp.asarray(start, jnp.float32)),
                               jnp.asarray(geometry), jnp.asarray(reflectance))
    params = jax.device_get(fit.fit_face(
        model, crop_camera, image, crop_marks, confidence, frame_config,
        start, dense).params)
    return np.asarray(layout.join(params)), tracking.landmark_agreement(
        model, params, geometry, photo_camera, marks)

  def landmark_start() -> np.ndarray:
    # The identity (and the last light) at the landmarks' pose.
    rotation, translation = pose_start.landmark_pose(model, crop_camera,
                                                     crop_marks, confidence)
    start = (vector0 if previous is None else previous).copy()
    for name, value in (('expression', 0.0), ('rotation', rotation),
                        ('translation', translation)):
      start[slice(*layout.offsets[name])] = value
    return start

  vector, agreement = fit_from(landmark_start() if previous is None else
                               previous)
  refitted = previous is not None and agreement > MAX_DISAGREEMENT
  if refitted:
    tried = fit_from(landmark_start())
    vector, agreement = min((vector, agreement), tried, key=lambda t: t[1])
  return (vector, agreement, refitted, agreement > MAX_DISAGREEMENT,
          transform)


def reconstruct_video(reconstructor, path: str, landmarker,
                      frame_step: int = 1, smooth_sigma: float = 1.5,
                      frame_config: fit.FitConfig = FRAME_CONFIG,
                      progress: bool = False,
                      identity_frames: int = IDENTITY_FRAMES,
                      stop: Optional[Callable[[], bool]] = None
                      ) -> VideoReconstruction:
  """Reconstructs a video's tracked face with one identity (module doc).

  Args:
    reconstructor: a `reconstructor.Reconstructor` (its photo path makes the
      identity; its dense landmarks, if any, are fitted in every frame).
    path: the video file.
    landmarker: a `detection.FaceLandmarker` (any object whose
      `detect(frame)` gives `detection.Detection`s, largest first).
    frame_step: every n-th frame.
    smooth_sigma: std in sampled frames of the temporal Gaussian.
    frame_config: the fitting of each frame (`fixed_identity`).
    progress: show progress bars.
    identity_frames: at most this many frames make the identity.
    stop: asked before each frame of each pass.

  Raises:
    ValueError: no face in any sampled frame.
    Stopped: `stop()` became true.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  model = reconstructor.model
  frames = lambda: read_video_frames(path, frame_step, stop)
  track = tracking.track_faces(model, frames(), landmarker, progress,
                               reconstructor.face_mesh)
  if not track.found.any():
    raise ValueError(f'{path}: no face found in any sampled frame')
  layout = fit.fit_layout(model)
  chosen = tracking.choose_identity_frames(
      track.yaw_degrees, track.sharpness, identity_frames)
  faces = [reconstructor.reconstruct_face(frame, track.landmarks[k],
                                          track.confidence[k],
                                          blendshapes=False)
           for k, (_, frame) in enumerate(frames()) if k in chosen]
  identity = tracking.shared_identity(model, layout, faces)[:3]
  first = int(np.argmax(track.found))
  photo_camera = camera.photo_intrinsics(
      reconstructor.intrinsics, crop.crop_transform(track.landmarks[first]))
  rows, previous = [], None
  for k, (_, frame) in enumerate(tqdm.tqdm(
      frames(), total=len(track.frames), unit='frame',
      disable=not progress)):
    if k >= first and not track.found[k]:  # carried over
      rows.append((previous, np.nan, False, False, rows[-1][4]))
    elif k >= first:
      row = _fit_frame(reconstructor, frame_config, frame,
                       track.landmarks[k].astype(np.float64),
                       jnp.asarray(track.confidence[k]),
                       track.face_mesh[k], photo_camera, identity, previous)
      previous = row[0] if not row[3] or previous is None else previous
      rows.append((previous,) + row[1:])
  vectors, agreement, refitted, lost, transforms = map(np.asarray,
                                                       zip(*rows))
  found = track.found[first:]
  # A frame without a face repeats the previous one's landmarks.
  carried = np.maximum.accumulate(np.where(found, np.arange(len(found)), 0))
  return VideoReconstruction(
      frames=track.frames[first:], found=found,
      vectors=smooth_vectors(vectors, layout, smooth_sigma),
      raw_vectors=vectors, landmarks=track.landmarks[first:][carried],
      crop_transforms=transforms, geometry_offsets=identity[1],
      reflectance_offsets=identity[2], layout=layout,
      fps=video_fps(path) / frame_step, photo_camera=photo_camera,
      landmark_agreement=agreement.astype(np.float64),
      refitted=refitted.astype(bool), lost=lost.astype(bool),
      identity_frames=track.frames[chosen])


def video_files(model: fm.FaceModel, path: str, video: VideoReconstruction,
                frame_step: int, texture_map: meshes.TextureMap,
                rig: Optional[arkit.BlendshapeRig] = None,
                scratch: Optional[str] = None,
                stop: Optional[Callable[[], bool]] = None
                ) -> Dict[str, bytes]:
  """parameters.npz, identity_final.ply, overlay.mp4 and the animation
  files (`animation.video_files`) of a video.

  parameters.npz holds the `VideoReconstruction`'s arrays (per frame:
  'found', 'landmark_agreement', 'refitted', 'lost', ...); with the model's
  blendshape `rig`, the per-frame ARKit weights of the smoothed
  expressions too ('arkit_weights' (T, K), 'arkit_names' (K,)).
  `texture_map`: the model's (`outputs.texture_map`); `scratch` and `stop`:
  see `overlay_video`.
  """
  source_fps = video.fps * frame_step
  files, weights = animation.video_files(
      model, rig, video.layout, video.vectors, video.frames / source_fps,
      source_fps, video.geometry_offsets, video.reflectance_offsets,
      texture_map)
  named_weights = {} if rig is None else dict(
      arkit_weights=weights, arkit_names=np.asarray(rig.names))
  buffer = io.BytesIO()
  np.savez(buffer, **named_weights, frames=video.frames, found=video.found,
           landmark_agreement=video.landmark_agreement,
           refitted=video.refitted, lost=video.lost,
           identity_frames=video.identity_frames,
           vectors=video.vectors, raw_vectors=video.raw_vectors,
           landmarks=video.landmarks, crop_transforms=video.crop_transforms,
           geometry_offsets=video.geometry_offsets,
           reflectance_offsets=video.reflectance_offsets,
           layout=json.dumps(dataclasses.asdict(video.layout)),
           focal_length_px=float(video.photo_camera.focal_length),
           principal_point_px=np.asarray(video.photo_camera.principal_point),
           face_model=model.name)
  files['parameters.npz'] = buffer.getvalue()
  first = video.layout.split(jnp.asarray(video.vectors[0]))
  neutral = first._replace(expression=jnp.zeros_like(first.expression))
  identity = levels.surfaces(model, neutral, video.geometry_offsets,
                             video.reflectance_offsets)[1]
  files['identity_final.ply'] = meshes.ply_bytes(
      np.asarray(identity.vertices), np.asarray(model.triangles),
      np.clip(np.asarray(identity.reflectance), 0, 1))
  by_frame = {int(f): k for k, f in enumerate(video.frames)}

  def draw(index, frame):
    if index not in by_frame:
      return frame
    k = by_frame[index]
    face = outputs.Reconstruction(
        video.layout.split(jnp.asarray(video.vectors[k])),
        video.geometry_offsets, video.reflectance_offsets,
        video.crop_transforms[k], video.landmarks[k], None, {}, 0.0)
    final = levels.surfaces(model, face.params, video.geometry_offsets,
                            video.reflectance_offsets)[1]
    return outputs.overlay_on_photo(model, frame, face, final,
                                    video.photo_camera)

  files['overlay.mp4'] = overlay_video(path, frame_step, video.fps, draw,
                                       scratch, stop)
  return files


def overlay_video(path: str, frame_step: int, fps: float, draw: Callable,
                  scratch: Optional[str] = None,
                  stop: Optional[Callable[[], bool]] = None) -> bytes:
  """The mp4 of `draw(index, frame)` of every sampled frame of `path`.

  It is encoded into a temporary file in `scratch` (the results' folder;
  default the system's temporary folder, which may be small) and read back.

  Raises:
    OSError: the video could not be written whole.
    Stopped: `stop()` is true before a frame.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  writer, temporary, written = None, None, 0
  try:
    for index, frame in read_video_frames(path, frame_step, stop):
      if writer is None:
        handle, temporary = tempfile.mkstemp(suffix='.mp4', prefix='.partial-',
                                             dir=scratch)
        os.close(handle)
        writer = cv2.VideoWriter(temporary, cv2.VideoWriter_fourcc(*'mp4v'),
                                 fps, (frame.shape[1], frame.shape[0]))
        if not writer.isOpened():
          raise OSError(f'{path}: cannot write the overlay video into '
                        f'{os.path.dirname(temporary)}')
      writer.write(cv2.cvtColor(draw(index, frame), cv2.COLOR_RGB2BGR))
      written += 1
    if writer is None:
      raise OSError(f'{path}: no frame could be read for the overlay video')
    writer.release()
    writer = None
    # OpenCV's writer reports no failure (a full disk leaves a few
    # unplayable bytes): the file is read back and its frames counted.
    check = cv2.VideoCapture(temporary)
    held = int(check.get(cv2.CAP_PROP_FRAME_COUNT)) if check.isOpened() else 0
    check.release()
    if held != written:
      raise OSError(f'{path}: the overlay video holds {held} of its '
                    f'{written} frames (is {os.path.dirname(temporary)} '
                    'full?)')
    with open(temporary, 'rb') as f:
      return f.read()
  finally:
    if writer is not None:
      writer.release()
    if temporary and os.path.exists(temporary):
      os.remove(temporary)
