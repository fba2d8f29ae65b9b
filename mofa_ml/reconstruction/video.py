"""Video -> per-frame reconstructions with one identity, and their files.

The first frame with a face is reconstructed like a photo (identity free);
later frames start from the previous frame and fit pose, expression and
light only. Pose and expression are then smoothed in time, in one camera
(the first face's crop camera in photo pixels) so that poses share a frame.
"""

import dataclasses
import io
import json
import os
import tempfile
from typing import Dict, Optional

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
from mofa_ml.export import outputs
from mofa_ml.rendering import camera

# What `video_files` writes.
VIDEO_FILES = ('parameters.npz', 'identity_final.ply', 'overlay.mp4',
               animation.GLB, animation.LIVE_LINK_CSV)

@dataclasses.dataclass
class VideoReconstruction:
  """Per-frame results of one video; identity is shared by all frames.

  Attributes:
    frames: (T,) frame indices.
    found: (T,) bool, a face was detected (else the previous frame's
      parameters are carried over).
    vectors: (T, size) parameter vectors (`layout`), after smoothing.
    raw_vectors: (T, size) before smoothing.
    landmarks: (T, 68, 2) detected landmarks, photo pixels.
    crop_transforms: (T, 2, 3).
    geometry_offsets, reflectance_offsets: (N, 3) shared correctives.
    layout: the vectors' layout.
    fps: frames per second of the sampled sequence.
    photo_camera: the one camera of all frames (the first face's crop
      camera in photo pixels), so poses share a frame and can be smoothed.
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


def read_video_frames(path: str, frame_step: int = 1):
  """Yields (index, RGB uint8 frame) of every `frame_step`-th frame."""
  import cv2  # pylint: disable=g-import-not-at-top
  capture = cv2.VideoCapture(path)
  if not capture.isOpened():
    raise ValueError(f'{path}: not a readable video')
  index = 0
  try:
    while True:
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


def reconstruct_video(reconstructor, path: str, landmarker,
                      frame_step: int = 1, smooth_sigma: float = 1.5,
                      frame_config: fit.FitConfig = fit.FitConfig(
                          base_steps=4, final_steps=30, fixed_identity=True),
                      progress: bool = False) -> VideoReconstruction:
  """Fits every sampled frame; the first frame with a face fixes identity.

  Args:
    reconstructor: a `reconstruct.Reconstructor` (its first face).
    path: the video file.
    landmarker: a `detection.FaceLandmarker`.
    frame_step: every n-th frame.
    smooth_sigma: std in sampled frames of the temporal Gaussian.
    frame_config: the fitting of frames after the first.
    progress: show a progress bar.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  model = reconstructor.model
  layout = fit.fit_layout(model)
  rows = {k: [] for k in ('frames', 'found', 'vectors', 'landmarks',
                          'crop_transforms')}
  previous = None
  for index, frame in tqdm.tqdm(read_video_frames(path, frame_step),
                                unit='frame', disable=not progress):
    faces = landmarker.detect(frame)
    if faces:
      face = faces[0]
      if previous is None:
        result = reconstructor.reconstruct_face(frame, face.landmarks,
                                                face.point_confidence)
        previous = (result.params, result.geometry_offsets,
                    result.reflectance_offsets)
        transform = result.crop_transform
        photo_camera = camera.photo_intrinsics(reconstructor.intrinsics,
                                               transform)
      else:
        transform = crop.crop_transform(face.landmarks)
        image = crop.warp_crop(frame, transform).astype(np.float32) / 255
        marks = crop.apply_transform(transform, face.landmarks)
        start = network.Prediction(*previous)
        fitted = fit.fit_face(model,
                              camera.crop_intrinsics(photo_camera, transform),
                              jnp.asarray(image), jnp.asarray(marks,
                                                              jnp.float32),
                              jnp.asarray(face.point_confidence),
                              frame_config, start,
                              reconstructor.dense_targets(
                                  frame, face.landmarks, transform))
        previous = jax.device_get((fitted.params, previous[1], previous[2]))
      rows['landmarks'].append(face.landmarks)
      rows['crop_transforms'].append(transform)
    elif previous is not None:
      rows['landmarks'].append(rows['landmarks'][-1])
      rows['crop_transforms'].append(rows['crop_transforms'][-1])
    else:
      continue  # no face yet: nothing to carry over
    rows['frames'].append(index)
    rows['found'].append(bool(faces))
    rows['vectors'].append(np.asarray(layout.join(previous[0])))
  if previous is None:
    raise ValueError(f'{path}: no face found in any sampled frame')
  raw = np.stack(rows['vectors'])
  return VideoReconstruction(
      frames=np.asarray(rows['frames']), found=np.asarray(rows['found']),
      vectors=smooth_vectors(raw, layout, smooth_sigma), raw_vectors=raw,
      landmarks=np.stack(rows['landmarks']).astype(np.float32),
      crop_transforms=np.stack(rows['crop_transforms']),
      geometry_offsets=np.asarray(previous[1]),
      reflectance_offsets=np.asarray(previous[2]), layout=layout,
      fps=video_fps(path) / frame_step, photo_camera=photo_camera)


def video_files(model: fm.FaceModel, path: str, video: VideoReconstruction,
                frame_step: int, rig: Optional[arkit.BlendshapeRig] = None
                ) -> Dict[str, bytes]:
  """parameters.npz, identity_final.ply, overlay.mp4 and the animation
  files (`animation.video_files`) of a video.

  With the model's blendshape `rig`, parameters.npz holds the per-frame
  ARKit weights of the smoothed expressions too ('arkit_weights' (T, K),
  'arkit_names' (K,)).
  """
  import cv2  # pylint: disable=g-import-not-at-top
  source_fps = video.fps * frame_step
  files, weights = animation.video_files(
      model, rig, video.layout, video.vectors, video.frames / source_fps,
      source_fps, video.geometry_offsets, video.reflectance_offsets)
  named_weights = {} if rig is None else dict(
      arkit_weights=weights, arkit_names=np.asarray(rig.names))
  buffer = io.BytesIO()
  np.savez(buffer, **named_weights, frames=video.frames, found=video.found,
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
  writer, temporary = None, None
  by_frame = {int(f): k for k, f in enumerate(video.frames)}
  try:
    for index, frame in read_video_frames(path, frame_step):
      if writer is None:
        handle, temporary = tempfile.mkstemp(suffix='.mp4')
        os.close(handle)
        writer = cv2.VideoWriter(temporary, cv2.VideoWriter_fourcc(*'mp4v'),
                                 video.fps, (frame.shape[1], frame.shape[0]))
      picture = frame
      if index in by_frame:
        k = by_frame[index]
        face = outputs.Reconstruction(
            video.layout.split(jnp.asarray(video.vectors[k])),
            video.geometry_offsets, video.reflectance_offsets,
            video.crop_transforms[k], video.landmarks[k], None, {}, 0.0)
        final = levels.surfaces(model, face.params, video.geometry_offsets,
                                video.reflectance_offsets)[1]
        picture = outputs.overlay_on_photo(model, frame, face, final,
                                           video.photo_camera)
      writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    writer.release()
    writer = None
    with open(temporary, 'rb') as f:
      files['overlay.mp4'] = f.read()
  finally:
    if writer is not None:
      writer.release()
    if temporary and os.path.exists(temporary):
      os.remove(temporary)
  return files
