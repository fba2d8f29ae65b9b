"""Photos and videos -> 3D face reconstructions and their files.

For each face: crop (`data.crop`), parameters from a trained regressor
and/or per-image fitting (`fit`), then the files of `outputs` (meshes of
both levels, compact code, JSON, pictures). `reconstruct_inputs` is the loop
of `mofa reconstruct`: it resolves inputs, reconstructs photos and videos,
writes each result folder and reports every success or failure through a
callback.
"""

import os
import time
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml import image_io
from mofa_ml import samples
from mofa_ml.data import crop
from mofa_ml.data import prepare
from mofa_ml.facemodel import face_model as fm
from mofa_ml.learning import objective
from mofa_ml.learning import regressor as regressor_lib
from mofa_ml.reconstruction import export
from mofa_ml.reconstruction import fit
from mofa_ml.reconstruction import outputs
from mofa_ml.reconstruction import video as video_lib
from mofa_ml.reconstruction import visibility
from mofa_ml.rendering import camera


class Reconstructor:
  """Holds the face model, the crop camera and (optionally) a regressor."""

  def __init__(self, model: fm.FaceModel,
               regressor: Optional[regressor_lib.Regressor] = None,
               fit_config: Optional[fit.FitConfig] = fit.FitConfig()):
    """
    Args:
      model: the face model.
      regressor: a trained network (`Regressor.load`), or None.
      fit_config: per-image fitting after the regressor; None to skip (only
        with a regressor).

    Raises:
      ValueError: nothing to reconstruct with, or a regressor of another
        face model.
    """
    if regressor is None and fit_config is None:
      raise ValueError('without a regressor checkpoint, fitting is needed')
    if regressor is not None and (regressor.face_model.fingerprint() !=
                                  model.fingerprint()):
      raise ValueError('the checkpoint was trained with another face model '
                       f'({regressor.face_model.name})')
    self.model = model
    self.regressor = regressor
    self.fit_config = fit_config
    self.intrinsics = camera.default_intrinsics(crop.CROP_SIZE)
    self.mirror = jnp.asarray(visibility.mirror_vertices(model.mean_shape))

  def reconstruct_face(self, photo: np.ndarray, landmarks: np.ndarray,
                       confidence: np.ndarray) -> outputs.Reconstruction:
    """Reconstructs the face with these (68, 2) landmarks in a uint8 photo.
    """
    start = time.perf_counter()
    transform = crop.crop_transform(landmarks)
    crop_image = crop.warp_crop(photo, transform).astype(np.float32) / 255.0
    crop_marks = crop.apply_transform(transform, landmarks).astype(np.float32)
    initial = None
    if self.regressor is not None:
      prediction = self.regressor.predict(jnp.asarray(crop_image[None]))
      initial = jax.tree_util.tree_map(lambda x: x[0], prediction)
    if self.fit_config is not None:
      result = fit.fit_face(self.model, self.intrinsics,
                            jnp.asarray(crop_image), jnp.asarray(crop_marks),
                            jnp.asarray(confidence), self.fit_config, initial)
      face = (result.params, result.geometry_offsets,
              result.reflectance_offsets)
      metrics = {f'start_{k}': float(result.start[k]) for k in
                 ('landmark_error_px', 'photometric_error_base')}
      terms = result.end
    else:
      face = (initial.params, initial.geometry_offsets,
              initial.reflectance_offsets)
      terms = None
      metrics = {}
    params, geometry, reflectance = face
    # Reflectance the photo does not show (hidden, edge-on) is not kept.
    seen = visibility.seen_weights(self.model, params, geometry,
                                   self.intrinsics, crop.CROP_SIZE,
                                   crop.CROP_SIZE)
    reflectance = visibility.trusted_reflectance_offsets(reflectance, seen,
                                                         self.mirror)
    params, geometry, reflectance = jax.device_get(
        (params, geometry, reflectance))
    if terms is None:
      terms = objective.face_objective(
          self.model, self.intrinsics, objective.LossConfig.for_stage(
              'stage2'), params, jnp.asarray(geometry),
          jnp.asarray(reflectance), jnp.asarray(crop_image),
          jnp.asarray(crop_marks), jnp.asarray(confidence),
          jax.random.PRNGKey(0))
    metrics.update({k: float(terms[k]) for k in objective.METRIC_NAMES})
    return outputs.Reconstruction(
        params, np.asarray(geometry), np.asarray(reflectance), transform,
        np.asarray(landmarks, np.float32), np.asarray(confidence, np.float32),
        metrics, time.perf_counter() - start)

  def files(self, photo: np.ndarray, face: outputs.Reconstruction):
    """{file name: bytes} of every output of one face."""
    return outputs.face_files(self.model, self.intrinsics, photo, face)


class Inputs(NamedTuple):
  """What --input names: photo paths, video paths, problems (one line
  each)."""
  photos: List[str]
  videos: List[str]
  errors: List[str]


def resolve_inputs(entries: Sequence[str]) -> Inputs:
  """Photos and videos named by paths, folders, lists or sample:<name>."""
  photos, videos, errors = [], [], []
  bundled = samples.sample_faces()
  for entry in entries:
    if entry.startswith('sample:'):
      name = entry.split(':', 1)[1]
      if name not in bundled:
        errors.append(f'{entry}: no such sample (choose from '
                      f'{", ".join(bundled)})')
      else:
        photos.append(bundled[name].image_path)
      continue
    items, problems = prepare.list_inputs([entry], frame_step=1)
    errors += [problem.replace(': not found', ': file not found')
               for problem in problems]
    for item in items:
      target = videos if item.frame >= 0 else photos
      if item.source not in target:
        target.append(item.source)
  return Inputs(photos, videos, errors)


def photo_faces(reconstructor: Reconstructor, landmarker, path: str,
                faces: Optional[str]) -> Tuple[np.ndarray, list]:
  """(photo, [(name, Reconstruction)]) of one photo.

  Args:
    faces: None (a photo must show one face), 'largest' or 'all'.

  Raises:
    ValueError / FileNotFoundError: naming the photo and the problem.
  """
  stem = os.path.splitext(os.path.basename(path))[0]
  photo = image_io.to_uint8(image_io.load_image(path))
  detections = landmarker.detect(photo)
  if not detections:
    raise ValueError(f'{path}: no face found')
  if len(detections) > 1 and faces is None:
    raise ValueError(f'{path}: {len(detections)} faces found; choose with '
                     '--faces=largest or --faces=all')
  if faces != 'all':
    detections = detections[:1]
  results = []
  for index, face in enumerate(detections):
    name = stem if len(detections) == 1 else f'{stem}_face{index}'
    results.append((name, reconstructor.reconstruct_face(
        photo, face.landmarks, face.point_confidence)))
  return photo, results


def reconstruct_inputs(reconstructor: Reconstructor, landmarker,
                       entries: Sequence[str], output: str,
                       faces: Optional[str] = None, overwrite: bool = False,
                       frame_step: int = 1, smooth_frames: float = 1.5,
                       report: Callable[[str], None] = print,
                       progress: bool = False) -> Tuple[int, List[str]]:
  """Reconstructs every photo and video and writes one folder per face.

  Args:
    reconstructor: the model and how to reconstruct.
    landmarker: a `detection.FaceLandmarker`.
    entries: --input values (see `resolve_inputs`).
    output: the results folder.
    faces: see `photo_faces`.
    overwrite: replace existing result files.
    frame_step, smooth_frames: videos (see `video.reconstruct_video`).
    report: called with a line for every folder written.
    progress: show progress bars.

  Returns:
    (folders written, error lines).
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  inputs = resolve_inputs(entries)
  errors = list(inputs.errors)
  written = 0
  for path in tqdm.tqdm(inputs.photos, unit='photo',
                        disable=not progress or len(inputs.photos) < 2):
    try:
      photo, results = photo_faces(reconstructor, landmarker, path, faces)
    except (ValueError, FileNotFoundError) as e:
      errors.append(str(e))
      continue
    for name, result in results:
      folder = os.path.join(output, name)
      try:
        os.makedirs(folder, exist_ok=True)
        export.write_files(folder, reconstructor.files(photo, result),
                           overwrite=overwrite)
      except (FileExistsError, OSError) as e:
        errors.append(str(e))
        continue
      written += 1
      metrics = result.metrics
      report(f'{folder}: landmark error {metrics["landmark_error_px"]:.2f} '
             f'px, photometric error base '
             f'{metrics["photometric_error_base"]:.3f} final '
             f'{metrics["photometric_error_final"]:.3f}, '
             f'{result.seconds:.1f} s')
  for path in inputs.videos:
    folder = os.path.join(output, os.path.splitext(os.path.basename(path))[0])
    try:
      video = video_lib.reconstruct_video(reconstructor, path, landmarker,
                                          frame_step, smooth_frames,
                                          progress=progress)
      os.makedirs(folder, exist_ok=True)
      export.write_files(folder, video_lib.video_files(
          reconstructor.model, path, video, frame_step), overwrite=overwrite)
    except (ValueError, FileExistsError, OSError) as e:
      errors.append(str(e))
      continue
    written += 1
    report(f'{folder}: {len(video.frames)} frames, faces in '
           f'{int(video.found.sum())}')
  return written, errors
