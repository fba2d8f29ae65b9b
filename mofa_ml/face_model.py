"""The base-level 3D Morphable Model: structure, the bundled ICT model, BFM09.

    v_b = mean_shape + sum_k alpha_shape_k shape_basis_k
                     + sum_k alpha_expr_k expression_basis_k       (mm)
    r_b = mean_reflectance + sum_k beta_k reflectance_basis_k     (RGB, [0, 1])

Bases are unit-norm in R^3N (orthonormal for the bundled model) and
coefficients carry the model's own scale: alpha_k ~ N(0, sigma_k^2), which is
what the statistical regulariser sum (alpha / sigma)^2 assumes.

Coordinates: model space is y up, z out of the face towards the viewer, x to
the subject's left, millimetres, origin near the head centre.

The bundled model is derived from the ICT FaceKit light model (MIT licence,
`assets/LICENSE-ICT-FaceKit.txt`): PCA of its 100 identity and 53
expression blendshapes restricted to the front face, plus the reflectance
prior of `reflectance_prior`. The derivation runs once (`python -m
mofa_ml.build_face_asset`) into a small asset beside the source; loading
only multiplies the stored coefficient combinations back into bases.
"""

import hashlib
import os
from importlib import resources
from typing import Dict, Optional

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml import face_regions
from mofa_ml import landmarks as lm
from mofa_ml import mesh
from mofa_ml import reflectance_prior

ICT_SOURCE = 'ict_face_model_light.npz'
ICT_DERIVED = 'ict_front_model_derived.npz'
DERIVED_FORMAT_VERSION = 1
CM_TO_MM = 10.0
DM_TO_MM = 100.0


@flax.struct.dataclass
class FaceModel:
  """An immutable base-level face model; a pytree of arrays.

  Attributes (N vertices, F triangles):
    mean_shape: (N, 3) float32, mm.
    shape_basis: (ms, N, 3) float32, unit-norm identity modes.
    shape_sigma: (ms,) float32, std of each identity coefficient.
    expression_basis: (me, N, 3) float32, unit-norm expression modes.
    expression_sigma: (me,) float32.
    mean_reflectance: (N, 3) float32, RGB in [0, 1].
    reflectance_basis: (mr, N, 3) float32, unit-norm reflectance modes.
    reflectance_sigma: (mr,) float32.
    triangles: (F, 3) int32, counter-clockwise seen from outside.
    neighbors: (N, K) int32 1-ring, padded with the vertex itself.
    neighbor_mask: (N, K) bool.
    landmark_vertices: (68,) int32, vertex of each iBUG landmark (for the 17
      outline landmarks, the vertex on the frontal outline).
    contour_candidates: (17, Kc) int32 sliding candidates per outline
      landmark, padded with its frontal vertex.
    contour_mask: (17, Kc) bool.
    skin_vertices: (M,) int32, the skin mask of the global reflectance
      constancy term (see `skin_mask` for the (N,) bool form).
    name: static identifier, part of checkpoint compatibility checks.
  """
  mean_shape: jax.Array
  shape_basis: jax.Array
  shape_sigma: jax.Array
  expression_basis: jax.Array
  expression_sigma: jax.Array
  mean_reflectance: jax.Array
  reflectance_basis: jax.Array
  reflectance_sigma: jax.Array
  triangles: jax.Array
  neighbors: jax.Array
  neighbor_mask: jax.Array
  landmark_vertices: jax.Array
  contour_candidates: jax.Array
  contour_mask: jax.Array
  skin_vertices: jax.Array
  name: str = flax.struct.field(pytree_node=False, default='unnamed')

  @property
  def num_vertices(self) -> int:
    return self.mean_shape.shape[0]

  @property
  def num_shape(self) -> int:
    return self.shape_basis.shape[0]

  @property
  def num_expression(self) -> int:
    return self.expression_basis.shape[0]

  @property
  def num_reflectance(self) -> int:
    return self.reflectance_basis.shape[0]

  @property
  def skin_mask(self) -> jax.Array:
    """(N,) bool, True on the skin vertices."""
    return jnp.zeros(self.num_vertices, bool).at[self.skin_vertices].set(True)

  def geometry(self, shape: jax.Array, expression: jax.Array) -> jax.Array:
    """Base-level vertices.

    Args:
      shape: (..., ms) identity coefficients.
      expression: (..., me) expression coefficients.

    Returns:
      (..., N, 3) positions, mm, model space.
    """
    chex.assert_axis_dimension(shape, -1, self.num_shape)
    chex.assert_axis_dimension(expression, -1, self.num_expression)
    return (self.mean_shape +
            jnp.einsum('...k,knd->...nd', shape, self.shape_basis) +
            jnp.einsum('...k,knd->...nd', expression, self.expression_basis))

  def reflectance(self, coefficients: jax.Array) -> jax.Array:
    """Base-level per-vertex albedo (..., N, 3) from (..., mr) coefficients."""
    chex.assert_axis_dimension(coefficients, -1, self.num_reflectance)
    return self.mean_reflectance + jnp.einsum(
        '...k,knd->...nd', coefficients, self.reflectance_basis)

  def fingerprint(self) -> str:
    """Short hash of the model's sizes and mean shape (checkpoint checks)."""
    digest = hashlib.sha256()
    digest.update(self.name.encode())
    digest.update(np.asarray([self.num_vertices, self.num_shape,
                              self.num_expression, self.num_reflectance]))
    digest.update(np.asarray(self.mean_shape, np.float32).tobytes())
    return digest.hexdigest()[:16]


def asset_path(filename: str) -> str:
  return str(resources.files('mofa_ml') / 'assets' / filename)


def _pca_of_blendshapes(deltas: np.ndarray, num_modes: int):
  """PCA of blendshape offsets whose weights are taken as unit-variance.

  With s = D^T c, c ~ N(0, I), the covariance is D^T D; its eigenvectors are
  the right singular vectors of D and the stds the singular values.

  Args:
    deltas: (B, 3N) float64 offsets from the neutral, mm.
    num_modes: modes kept.

  Returns:
    combination: (num_modes, B); mode k = combination[k] @ deltas.
    sigma: (num_modes,).
    retained: fraction of the total variance kept.
  """
  u, s, vt = np.linalg.svd(deltas, full_matrices=False)
  sign = np.sign(vt[np.arange(len(s)), np.argmax(np.abs(vt), axis=1)])
  u = u * sign
  combination = (u[:, :num_modes] / s[:num_modes]).T
  retained = float(np.sum(s[:num_modes]**2) / np.sum(s**2))
  return combination, s[:num_modes], retained


def build_ict_derived(source: Dict[str, np.ndarray],
                      num_shape: int = 80,
                      num_reflectance: int = 80,
                      num_harmonics: int = 72) -> Dict[str, np.ndarray]:
  """Derives everything the front-face model needs from the ICT arrays.

  Deterministic: same source, same result (up to floating-point round-off).

  Args:
    source: the ICT FaceKit arrays (`assets/ict_face_model_light.npz`).
    num_shape: identity PCA modes kept (the paper's ms = 80).
    num_reflectance: reflectance modes (the paper's mr = 80).
    num_harmonics: manifold harmonics computed for the reflectance modes.

  Returns:
    A dict of small arrays, saved as the derived asset.
  """
  front = int(source['narrow_face_vertex_count'])
  neutral = source['neutral'][:front].astype(np.float64) * CM_TO_MM
  triangles = mesh.restrict_triangles(source['triangles'], front)
  landmark_vertices = source['landmarks_68'].astype(np.int32)
  if landmark_vertices.max() >= front:
    raise ValueError('a landmark vertex lies outside the front face')
  identity = source['identity_basis'][:, :front].reshape(
      len(source['identity_basis']), -1).astype(np.float64) * CM_TO_MM
  expression = source['expression_basis'][:, :front].reshape(
      len(source['expression_basis']), -1).astype(np.float64) * CM_TO_MM
  identity_combination, identity_sigma, identity_retained = (
      _pca_of_blendshapes(identity, num_shape))
  expression_combination, expression_sigma, expression_retained = (
      _pca_of_blendshapes(expression, len(expression)))
  harmonics = reflectance_prior.manifold_harmonics(
      neutral, triangles, num_harmonics)
  modes = reflectance_prior.select_modes(
      harmonics['eigenvalues'], front, num_reflectance)
  neighbors, neighbor_mask = mesh.one_ring_neighbors(triangles, front)
  face_centre = neutral[landmark_vertices[list(lm.FIXED)], :2].mean(axis=0)
  candidates, candidate_mask = lm.contour_candidates(
      neutral, landmark_vertices[list(lm.CONTOUR)], face_centre)
  return {
      'format_version': np.int32(DERIVED_FORMAT_VERSION),
      'front_vertex_count': np.int32(front),
      'identity_combination': identity_combination.astype(np.float32),
      'identity_sigma': identity_sigma.astype(np.float32),
      'identity_variance_retained': np.float64(identity_retained),
      'expression_combination': expression_combination.astype(np.float32),
      'expression_sigma': expression_sigma.astype(np.float32),
      'expression_variance_retained': np.float64(expression_retained),
      'reflectance_fields': harmonics['fields'].astype(np.float32),
      'reflectance_eigenvalues': harmonics['eigenvalues'].astype(np.float32),
      'reflectance_mode_harmonic': modes['harmonic'],
      'reflectance_mode_colour': modes['colour'],
      'reflectance_sigma': modes['sigma'].astype(np.float32),
      'mean_reflectance': reflectance_prior.mean_reflectance(
          neutral, landmark_vertices),
      'triangles': triangles,
      'neighbors': neighbors,
      'neighbor_mask': neighbor_mask,
      'landmark_vertices': landmark_vertices,
      'contour_candidates': candidates,
      'contour_mask': candidate_mask,
      'skin_mask': face_regions.skin_mask(neutral, landmark_vertices),
  }


def _load_npz(path: str) -> Dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as data:
    return {key: data[key] for key in data.files}


def assemble_ict_model(source: Dict[str, np.ndarray],
                       derived: Dict[str, np.ndarray]) -> FaceModel:
  """Builds the FaceModel from the ICT arrays and their derived asset."""
  if int(derived['format_version']) != DERIVED_FORMAT_VERSION:
    raise ValueError('the derived face-model asset has format version '
                     f'{int(derived["format_version"])}, expected '
                     f'{DERIVED_FORMAT_VERSION}; rebuild it with '
                     '`python -m mofa_ml.build_face_asset`')
  front = int(derived['front_vertex_count'])

  def combine(combination, blendshapes):
    flat = blendshapes[:, :front].reshape(len(blendshapes), -1) * CM_TO_MM
    return (combination @ flat).reshape(len(combination), front, 3)

  return FaceModel(
      mean_shape=jnp.asarray(source['neutral'][:front] * CM_TO_MM),
      shape_basis=jnp.asarray(combine(derived['identity_combination'],
                                      source['identity_basis'])),
      shape_sigma=jnp.asarray(derived['identity_sigma']),
      expression_basis=jnp.asarray(combine(derived['expression_combination'],
                                           source['expression_basis'])),
      expression_sigma=jnp.asarray(derived['expression_sigma']),
      mean_reflectance=jnp.asarray(derived['mean_reflectance']),
      reflectance_basis=jnp.asarray(reflectance_prior.assemble_modes(
          derived['reflectance_fields'], derived['reflectance_mode_harmonic'],
          derived['reflectance_mode_colour'])),
      reflectance_sigma=jnp.asarray(derived['reflectance_sigma']),
      triangles=jnp.asarray(derived['triangles']),
      neighbors=jnp.asarray(derived['neighbors']),
      neighbor_mask=jnp.asarray(derived['neighbor_mask']),
      landmark_vertices=jnp.asarray(derived['landmark_vertices']),
      contour_candidates=jnp.asarray(derived['contour_candidates']),
      contour_mask=jnp.asarray(derived['contour_mask']),
      skin_vertices=jnp.asarray(np.flatnonzero(derived['skin_mask']),
                                jnp.int32),
      name='ict_facekit_front')


def load_ict_source() -> Dict[str, np.ndarray]:
  """The bundled ICT FaceKit light model arrays (cm, full head)."""
  return _load_npz(asset_path(ICT_SOURCE))


def load_ict_derived() -> Dict[str, np.ndarray]:
  """The shipped derived asset of the bundled model."""
  return _load_npz(asset_path(ICT_DERIVED))


def load_face_model(bfm_path: Optional[str] = None) -> FaceModel:
  """Loads the bundled ICT front-face model, or a user's BFM09 file.

  Args:
    bfm_path: path of a `BFM_model_front.mat`; None for the bundled model.
  """
  if bfm_path:
    return load_bfm09_front(bfm_path)
  return assemble_ict_model(load_ict_source(), load_ict_derived())


_BFM_KEYS = ('meanshape', 'idBase', 'exBase', 'meantex', 'texBase', 'tri',
             'keypoints')


def load_bfm09_front(path: str) -> FaceModel:
  """Loads the Basel Face Model 2009 front face as packed by Deep3DFaceRecon.

  `BFM_model_front.mat` holds meanshape (1, 3N) and idBase (3N, 80) / exBase
  (3N, 64) pre-multiplied by their stds, in decimetres; meantex (1, 3N) and
  texBase (3N, 80) in 0..255; tri (F, 3) and keypoints (68,), 1-based;
  optionally skinmask (N,). This loader converts to mm and [0, 1], splits
  each basis column into a unit mode and its sigma, centres the mean shape,
  and derives the remaining topology like the bundled model does.

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
  return FaceModel(
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
