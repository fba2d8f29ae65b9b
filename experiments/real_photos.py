"""The benchmark's photos and one face's reconstruction, scored in 2D.

Photo sets (each item: an image path, (68, 2) 0-based pixel truth, |yaw|):
  * aflw2000: AFLW2000-3D's `pt3d_68` (rows x, y, z; Matlab's 1-based
    pixels, so 1 is subtracted), |yaw| from `Pose_Para` (pitch, yaw, roll in
    radians first).
  * 300w: iBUG `.pts` (1-based, `landmarks.read_pts`).
  * bundled: the package's sample photos (`mofa_ml.samples`).
Without pose parameters, |yaw| comes from the truth itself
(`yaw_from_landmarks`).

`reconstruct_largest` is one face of `mofa reconstruct --faces=largest`:
the detector's largest face, then `Reconstructor.reconstruct_face` (crop,
fit, reflectance trust); the meshes are the ones `export/outputs.py` writes
(`levels.surfaces`), the projected landmarks those of reconstruction.json
(`outputs.description`'s sliding jaw contour), for either level.

Appearance (`appearance`, no truth on photos): the mean absolute RGB
difference between the photo and the fitted face drawn as overlay.png
draws it (reflectance clipped to [0, 1], per-pixel SH shading), over the
pixels the face covers in the fitter's own crop (the z-buffer keeps the
visible surface only); the light's colour cast and the share of
out-of-range reflectance (`real_scoring`).
"""

import glob
import os
from typing import Any, Dict, List, NamedTuple, Optional

import jax.numpy as jnp
import numpy as np
import scipy.io

from mofa_ml import metrics
from mofa_ml import samples
from mofa_ml.data import crop
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.facemodel import levels
from mofa_ml.rendering import camera
from mofa_ml.rendering import viz

from experiments import real_scoring

YAW_BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))
LEVELS = ('base', 'final')


class Photo(NamedTuple):
  set: str
  name: str
  path: str
  truth: np.ndarray  # (68, 2) 0-based pixels
  yaw_degrees: float  # |yaw|


def yaw_from_landmarks(truth: np.ndarray, model_points: np.ndarray) -> float:
  """|yaw| (degrees) of a face from its (68, 2) 2D points.

  The affine camera that best maps the model's 3D landmarks onto the 51
  inner points (the jaw outline is a silhouette, not fixed points) gives
  the image's x and y axes in the model frame; orthonormalised, their cross
  product is the rotation's third row, whose x component is -sin(yaw) for
  `camera.euler_to_rotation`'s Rz Ry Rx.

  Args:
    truth: (68, 2) pixels.
    model_points: (68, 3) the mean face's landmark vertices, model frame.
  """
  inner = list(lm.FIXED)
  source = np.concatenate([model_points[inner], np.ones((len(inner), 1))],
                          axis=1)
  affine, *_ = np.linalg.lstsq(source, truth[inner], rcond=None)
  x_row, y_row = affine[:3].T
  x_row = x_row / np.linalg.norm(x_row)
  y_row = y_row - (y_row @ x_row) * x_row
  y_row /= np.linalg.norm(y_row)
  return float(np.degrees(np.arcsin(min(1.0, abs(np.cross(x_row,
                                                          y_row)[0])))))


def yaw_bin(yaw_degrees: float) -> str:
  for low, high in YAW_BINS:
    if low <= abs(yaw_degrees) < high or (high == 90.0 and
                                          abs(yaw_degrees) >= 90.0):
      return f'{low:.0f}-{high:.0f}'
  raise ValueError(yaw_degrees)


def load_photos(data: str, model_points: np.ndarray,
                sets=('aflw2000', '300w', 'bundled'),
                limit: Optional[int] = None) -> List[Photo]:
  """The photo sets' items, sorted by name within a set; `limit` per set."""
  photos = []
  if 'aflw2000' in sets:
    items = []
    for path in sorted(glob.glob(os.path.join(data, 'photos', 'aflw2000',
                                              '*.jpg'))):
      mat = scipy.io.loadmat(os.path.splitext(path)[0] + '.mat')
      truth = np.asarray(mat['pt3d_68'], np.float64)[:2].T - 1.0
      yaw = (abs(float(np.degrees(mat['Pose_Para'][0, 1])))
             if 'Pose_Para' in mat else yaw_from_landmarks(truth,
                                                           model_points))
      items.append(Photo('aflw2000', os.path.basename(path), path, truth, yaw))
    photos += items[:limit]
  if '300w' in sets:
    items = []
    for path in sorted(glob.glob(os.path.join(data, 'photos', '300w',
                                              '*.png'))):
      truth = lm.read_pts(os.path.splitext(path)[0] + '.pts').astype(
          np.float64)
      items.append(Photo('300w', os.path.basename(path), path, truth,
                         yaw_from_landmarks(truth, model_points)))
    photos += items[:limit]
  if 'bundled' in sets:
    items = []
    for name, sample in samples.sample_faces().items():
      truth = lm.read_pts(sample.landmarks_path).astype(np.float64)
      items.append(Photo('bundled', name, sample.image_path, truth,
                         yaw_from_landmarks(truth, model_points)))
    photos += items[:limit]
  return photos


class Fitted(NamedTuple):
  """One face reconstructed as `mofa reconstruct` does.

  Attributes:
    detected: (68, 2) the detector's landmarks, pixels.
    vertices: {'mean': mean face, 'base', 'final'}: (N, 3) model frame, mm.
    landmarks_2d: same keys: (68, 2) projected landmarks, photo pixels
      (the mean face at the fitted pose).
    seconds: reconstruction time (crop + fit + reflectance trust).
    identity: (N, 3) the fitted identity alone (expression 0), mm.
    reflectance: {'base', 'final'}: (N, 3) per-vertex albedo, unclipped.
    lights: {'base', 'final'}: (9, 3) camera-frame SH (the final level's
      own light, or the base one when shared).
    face: the `outputs.Reconstruction` (pose, crop transform).
  """
  detected: np.ndarray
  vertices: Dict[str, np.ndarray]
  landmarks_2d: Dict[str, np.ndarray]
  seconds: float
  identity: np.ndarray
  reflectance: Optional[Dict[str, np.ndarray]] = None
  lights: Optional[Dict[str, np.ndarray]] = None
  face: Any = None


def project_at(model, params, photo_camera, vertices, detected
               ) -> np.ndarray:
  """(68, 2) photo pixels of `vertices` at the pose of `params`
  (`levels.projected_landmarks`, as `outputs.description`)."""
  return np.asarray(levels.projected_landmarks(
      model, jnp.asarray(vertices, jnp.float32), params,
      jnp.asarray(detected, jnp.float32), photo_camera), np.float64)


def projected_landmarks(model, reconstructor, face, vertices) -> np.ndarray:
  """`project_at` of one photo reconstruction (`outputs.Reconstruction`)."""
  return project_at(model, face.params, camera.photo_intrinsics(
      reconstructor.intrinsics, face.crop_transform), vertices,
                    face.landmarks_photo)


def reconstruct_largest(model, reconstructor, landmarker,
                        image: np.ndarray) -> Optional[Fitted]:
  """The largest detected face reconstructed; None if none is found."""
  detections = landmarker.detect(image)
  if not detections:
    return None
  found = detections[0]
  face = reconstructor.reconstruct_face(image, found.landmarks,
                                        found.point_confidence)
  base, final = levels.surfaces(model, face.params, face.geometry_offsets,
                                face.reflectance_offsets)
  vertices = {'mean': np.asarray(model.mean_shape, np.float64),
              'base': np.asarray(base.vertices, np.float64),
              'final': np.asarray(final.vertices, np.float64)}
  marks = {key: projected_landmarks(model, reconstructor, face, value)
           for key, value in vertices.items()}
  identity = model.geometry(face.params.shape,
                            jnp.zeros_like(face.params.expression))
  return Fitted(np.asarray(found.landmarks, np.float64), vertices, marks,
                face.seconds, np.asarray(identity, np.float64),
                {'base': np.asarray(base.reflectance, np.float64),
                 'final': np.asarray(final.reflectance, np.float64)},
                {'base': np.asarray(base.sh, np.float64),
                 'final': np.asarray(final.sh, np.float64)}, face)


METHODS = ('detector', 'mean', 'base', 'final')


def landmark_errors(fitted: Fitted, truth: np.ndarray,
                    points=tuple(range(68))) -> Dict[str, float]:
  """{method: NME over `points`, normalised by their truth's box}."""
  points = list(points)
  errors = {'detector': real_scoring.nme(fitted.detected[points],
                                         truth[points])}
  for key in ('mean', 'base', 'final'):
    errors[key] = real_scoring.nme(fitted.landmarks_2d[key][points],
                                   truth[points])
  return errors


def colour_difference(model, crop_camera, face, image: np.ndarray,
                      vertices: np.ndarray, reflectance: np.ndarray,
                      sh: np.ndarray) -> Optional[float]:
  """Mean |photo - rendered face| over channels and covered pixels, [0, 1].

  The face is drawn as overlay.png draws it (`outputs.overlay_on_photo`:
  reflectance clipped to [0, 1], `viz.render_shaded`), in the fitter's crop
  of the photo (`crop_camera`, `face.crop_transform`); None when it covers
  no pixel.

  Args:
    model: the face model (triangles).
    crop_camera: the crop's intrinsics (`Reconstructor.intrinsics`).
    face: `outputs.Reconstruction` (pose, crop transform).
    image: (H, W, 3) uint8 photo.
    vertices: (N, 3) model frame, mm; reflectance: (N, 3); sh: (9, 3).
  """
  size = crop.CROP_SIZE
  photo = crop.warp_crop(image, face.crop_transform, size).astype(
      np.float32) / 255.0
  rendered, mask = viz.render_shaded(
      jnp.asarray(vertices, jnp.float32),
      jnp.clip(jnp.asarray(reflectance, jnp.float32), 0.0, 1.0),
      model.triangles, face.params.rotation, face.params.translation,
      jnp.asarray(sh, jnp.float32), crop_camera, size, size)
  if not mask.any():
    return None
  return float(np.abs(rendered - photo)[mask].mean())


def appearance(model, reconstructor, fitted: Fitted,
               image: np.ndarray) -> Dict:
  """JSON-ready appearance of one reconstruction, per level: the photo's
  `colour_difference`, the light's colour (`real_scoring.light_colour`)
  and the share of out-of-range reflectance."""
  return {
      'colour_difference': {
          level: colour_difference(
              model, reconstructor.intrinsics, fitted.face, image,
              fitted.vertices[level], fitted.reflectance[level],
              fitted.lights[level]) for level in LEVELS},
      'light_colour': {level: real_scoring.light_colour(
          fitted.lights[level]) for level in LEVELS},
      'out_of_range': {level: real_scoring.out_of_range(
          fitted.reflectance[level]) for level in LEVELS}}


def evaluate_photo(model, reconstructor, landmarker, photo: Photo,
                   image: np.ndarray) -> Dict:
  """JSON-ready row of one photo."""
  fitted = reconstruct_largest(model, reconstructor, landmarker, image)
  row = {'set': photo.set, 'name': photo.name,
         'yaw_degrees': round(photo.yaw_degrees, 2),
         'yaw_bin': yaw_bin(photo.yaw_degrees),
         'box_px': round(metrics.box_size(photo.truth), 2),
         'found': fitted is not None}
  if fitted is not None:
    row['nme'] = landmark_errors(fitted, photo.truth)
    row['seconds'] = fitted.seconds
    row.update(appearance(model, reconstructor, fitted, image))
  return row
