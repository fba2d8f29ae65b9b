"""The bundled face model, derived from the ICT FaceKit light model.

The ICT FaceKit model (MIT licence, `assets/LICENSE-ICT-FaceKit.txt`) has a
neutral head and 100 identity and 53 expression blendshapes, in cm. The
front face keeps its first `narrow_face_vertex_count` vertices; identity is
the PCA of the identity blendshapes (unit-variance weights), expression the
PCA of all 53, reflectance the prior of `reflectance_prior`. The derivation
runs once (`python -m mofa_ml.facemodel.build_asset`) into a small asset
beside the source; loading only multiplies the stored coefficient
combinations back into bases.
"""

from importlib import resources
from typing import Any, Dict, Tuple

import jax.numpy as jnp
import numpy as np

from mofa_ml.facemodel import face_regions
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.facemodel import reflectance_prior
from mofa_ml.rendering import mesh

SOURCE = 'ict_face_model_light.npz'
DERIVED = 'ict_front_model_derived.npz'
DERIVED_FORMAT_VERSION = 1
CM_TO_MM = 10.0
NAME = 'ict_facekit_front'


def asset_path(filename: str) -> str:
  """Path of a file in the package's assets folder."""
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


def build_derived(source: Dict[str, np.ndarray],
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
  harmonics = mesh.manifold_harmonics(
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


def combined_blendshapes(combination: np.ndarray, blendshapes: np.ndarray,
                         vertices: slice) -> np.ndarray:
  """(K, V, 3) mm: the K combinations (K, B) of the (B, ...) blendshapes (cm)
  on the `vertices` they select."""
  chosen = blendshapes[:, vertices]
  flat = chosen.reshape(len(chosen), -1) * CM_TO_MM
  return (combination @ flat).reshape(len(combination), -1, 3)


def model_fields(source: Dict[str, np.ndarray],
                 derived: Dict[str, np.ndarray]) -> Dict[str, Any]:
  """The `FaceModel` fields from the ICT arrays and their derived asset."""
  if int(derived['format_version']) != DERIVED_FORMAT_VERSION:
    raise ValueError('the derived face-model asset has format version '
                     f'{int(derived["format_version"])}, expected '
                     f'{DERIVED_FORMAT_VERSION}; rebuild it with '
                     '`python -m mofa_ml.facemodel.build_asset`')
  front = int(derived['front_vertex_count'])
  combine = lambda combination, blendshapes: combined_blendshapes(
      combination, blendshapes, slice(None, front))

  return dict(
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
      # The reflectance modes' spatial fields are the mesh's harmonics.
      surface_harmonics=jnp.asarray(derived['reflectance_fields']),
      name=NAME)


def load_source() -> Dict[str, np.ndarray]:
  """The bundled ICT FaceKit light model arrays (cm, full head)."""
  return _load_npz(asset_path(SOURCE))


def load_derived() -> Dict[str, np.ndarray]:
  """The shipped derived asset of the bundled model."""
  return _load_npz(asset_path(DERIVED))


def expression_blendshapes() -> Tuple[Tuple[str, ...], np.ndarray]:
  """The 53 named ARKit-style expression blendshapes of the front face.

  Returns:
    names: ('browDown_L', ..., 'noseSneer_R').
    offsets: (53, N, 3) float32 vertex offsets at weight 1, mm.
  """
  source = load_source()
  front = int(load_derived()['front_vertex_count'])
  offsets = source['expression_basis'][:, :front] * CM_TO_MM
  return (tuple(str(name) for name in source['expression_names']),
          offsets.astype(np.float32))


def load() -> Dict[str, Any]:
  """The bundled model's `FaceModel` fields."""
  return model_fields(load_source(), load_derived())
