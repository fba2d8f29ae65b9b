"""Loader of the Basel Face Model 2009 front face (Deep3DFaceRecon packing).

The model itself is not redistributable: users pass the path of their own
`BFM_model_front.mat` (`--face_model=bfm09:PATH`).
"""

import os
from typing import Any, Dict

import jax.numpy as jnp
import numpy as np

from mofa_ml.facemodel import face_regions
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.rendering import mesh

DM_TO_MM = 100.0
# Manifold harmonics computed at load: more than the fit's corrective modes
# (`fit.FitConfig.corrective_harmonics`); each one costs load time.
NUM_SURFACE_HARMONICS = 40

_BFM_KEYS = ('meanshape', 'idBase', 'exBase', 'meantex', 'texBase', 'tri',
             'keypoints')


def load(path: str) -> Dict[str, Any]:
  """Loads the Basel Face Model 2009 front face as packed by Deep3DFaceRecon.

  `BFM_model_front.mat` holds meanshape (1, 3N) and idBase (3N, 80) / exBase
  (3N, 64) pre-multiplied by their stds, in decimetres; meantex (1, 3N) and
  texBase (3N, 80) in 0..255; tri (F, 3) and keypoints (68,), 1-based;
  optionally skinmask (N,). This loader converts to mm and [0, 1], splits
  each basis column into a unit mode and its sigma, centres the mean shape,
  and derives the remaining topology like the bundled model does.

  Returns:
    The `FaceModel` fields.

  Raises:
    FileNotFoundError / ValueError with the problem named.
  """
  import scipy.io  # Only this loader needs it; keeps import time down.
  if not os.path.isfile(path):
    raise FileNotFoundError(f'BFM model file not found: {path}')
  try:
    data = scipy.io.loadmat(path)
  except Exception as e:  # scipy raises several types for non-.mat files.
    raise ValueError(f'{path}: not a readable MATLAB .mat file ({e})') from None
  missing = [key for key in _BFM_KEYS if key not in data]
  if missing:
    raise ValueError(f'{path}: not a BFM_model_front.mat file, missing '
                     f'{", ".join(missing)}')
  for key in _BFM_KEYS:
    if not np.issubdtype(np.asarray(data[key]).dtype, np.number):
      raise ValueError(f'{path}: {key} holds {np.asarray(data[key]).dtype} '
                       'values, not numbers')
  mean = data['meanshape'].astype(np.float64).reshape(-1, 3) * DM_TO_MM
  mean -= mean.mean(axis=0, keepdims=True)
  count = len(mean)

  def split_basis(basis, scale, name):
    basis = np.asarray(basis, np.float64)
    if basis.shape[0] != 3 * count:
      raise ValueError(f'{path}: {name} has {basis.shape[0]} rows, expected '
                       f'3 x {count} vertices')
    sigma = np.linalg.norm(basis, axis=0) * scale
    unit = (basis * scale / np.maximum(sigma, 1e-12)).T.reshape(-1, count, 3)
    return unit.astype(np.float32), sigma.astype(np.float32)

  shape_basis, shape_sigma = split_basis(data['idBase'], DM_TO_MM, 'idBase')
  expression_basis, expression_sigma = split_basis(data['exBase'], DM_TO_MM,
                                                   'exBase')
  reflectance_basis, reflectance_sigma = split_basis(data['texBase'],
                                                     1.0 / 255.0, 'texBase')
  triangles = data['tri'].astype(np.int64).reshape(-1, 3) - 1
  landmark_vertices = data['keypoints'].astype(np.int64).ravel() - 1
  if len(landmark_vertices) != lm.NUM_LANDMARKS:
    raise ValueError(f'{path}: keypoints holds {len(landmark_vertices)} '
                     f'indices, expected {lm.NUM_LANDMARKS}')
  if triangles.min() < 0 or triangles.max() >= count:
    raise ValueError(f'{path}: tri indexes outside the {count} vertices')
  triangles = _orient_towards_viewer(mean, triangles).astype(np.int32)
  landmark_vertices = landmark_vertices.astype(np.int32)
  if 'skinmask' in data:
    skin = data['skinmask'].ravel().astype(bool)
  else:
    skin = face_regions.skin_mask(mean, landmark_vertices)
  neighbors, neighbor_mask = mesh.one_ring_neighbors(triangles, count)
  face_centre = mean[landmark_vertices[list(lm.FIXED)], :2].mean(axis=0)
  candidates, candidate_mask = lm.contour_candidates(
      mean, landmark_vertices[list(lm.CONTOUR)], face_centre)
  return dict(
      mean_shape=jnp.asarray(mean, jnp.float32),
      shape_basis=jnp.asarray(shape_basis),
      shape_sigma=jnp.asarray(shape_sigma),
      expression_basis=jnp.asarray(expression_basis),
      expression_sigma=jnp.asarray(expression_sigma),
      mean_reflectance=jnp.asarray(
          data['meantex'].astype(np.float32).reshape(-1, 3) / 255.0),
      reflectance_basis=jnp.asarray(reflectance_basis),
      reflectance_sigma=jnp.asarray(reflectance_sigma),
      triangles=jnp.asarray(triangles),
      neighbors=jnp.asarray(neighbors),
      neighbor_mask=jnp.asarray(neighbor_mask),
      landmark_vertices=jnp.asarray(landmark_vertices),
      contour_candidates=jnp.asarray(candidates),
      contour_mask=jnp.asarray(candidate_mask),
      skin_vertices=jnp.asarray(np.flatnonzero(skin), jnp.int32),
      surface_harmonics=jnp.asarray(mesh.manifold_harmonics(
          mean, triangles, min(NUM_SURFACE_HARMONICS, count - 2))['fields'],
                                    jnp.float32),
      name='bfm09_front')


def _orient_towards_viewer(vertices: np.ndarray,
                           triangles: np.ndarray) -> np.ndarray:
  """Flips the winding if most face normals point away from +z (the face
  looks along +z), so that normals come out outward."""
  v = vertices
  normals = np.cross(v[triangles[:, 1]] - v[triangles[:, 0]],
                     v[triangles[:, 2]] - v[triangles[:, 0]])
  if np.sum(normals[:, 2]) < 0:
    return triangles[:, ::-1].copy()
  return triangles
