"""Evaluation metrics (paper Sec. 7.2): geometry, photometry, landmarks.

Geometry is compared after a similarity alignment (rotation, translation,
isotropic scale), as monocular reconstruction fixes neither scale nor the
camera: `similarity_alignment` (Umeyama's closed form) when the two meshes
share their topology, `closest_point_alignment` (ICP) when they do not.
Distances are in the meshes' units (mm for the face models here).

The array functions are pure `jnp` and work under `jit`/`vmap`; the
closest-point functions run on the host with scipy's k-d tree, which
answers N nearest-neighbour queries in O(N log M) where a dense distance
matrix would need N x M memory.
"""

from typing import NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
import scipy.spatial

from mofa_ml.facemodel import landmarks as lm


class Similarity(NamedTuple):
  """x -> scale * rotation @ x + translation (a pytree).

  Attributes:
    scale: () float.
    rotation: (3, 3) proper rotation.
    translation: (3,).
  """
  scale: jax.Array
  rotation: jax.Array
  translation: jax.Array

  def apply(self, points: jax.Array) -> jax.Array:
    """(..., 3) points -> transformed (..., 3) points."""
    return self.scale * points @ self.rotation.T + self.translation


def similarity_alignment(source: jax.Array, target: jax.Array,
                         weights: Optional[jax.Array] = None,
                         with_scale: bool = True) -> Similarity:
  """The least-squares similarity taking `source` onto `target`.

  Umeyama (1991): minimises sum_i w_i |s R x_i + t - y_i|^2 in closed form
  through the SVD of the weighted cross-covariance, with the sign fix that
  keeps R a rotation (never a reflection).

  Args:
    source: (N, 3) points x_i.
    target: (N, 3) corresponding points y_i.
    weights: (N,) non-negative, default uniform.
    with_scale: False for a rigid alignment (s = 1).

  Returns:
    Similarity.
  """
  chex.assert_rank([source, target], 2)
  chex.assert_equal_shape([source, target])
  chex.assert_axis_dimension(source, 1, 3)
  if weights is None:
    weights = jnp.ones(source.shape[0], source.dtype)
  chex.assert_shape(weights, (source.shape[0],))
  weights = weights / jnp.sum(weights)
  source_mean = weights @ source
  target_mean = weights @ target
  x = source - source_mean
  y = target - target_mean
  covariance = (y * weights[:, None]).T @ x
  u, singular, vt = jnp.linalg.svd(covariance)
  sign = jnp.sign(jnp.linalg.det(u) * jnp.linalg.det(vt))
  correction = jnp.asarray([1.0, 1.0, 0.0], source.dtype) + jnp.asarray(
      [0.0, 0.0, 1.0], source.dtype) * sign
  rotation = (u * correction) @ vt
  if with_scale:
    variance = jnp.sum(weights * jnp.sum(x**2, axis=1))
    scale = jnp.sum(singular * correction) / variance
  else:
    scale = jnp.ones((), source.dtype)
  translation = target_mean - scale * rotation @ source_mean
  return Similarity(scale, rotation, translation)


def aligned_points(predicted: jax.Array, ground_truth: jax.Array,
                   weights: Optional[jax.Array] = None) -> jax.Array:
  """(N, 3) `predicted` moved by its best similarity onto `ground_truth`.

  Args:
    predicted: (N, 3) reconstruction, same topology as `ground_truth`.
    ground_truth: (N, 3).
    weights: (N,) alignment weights (e.g. a region mask), default uniform.
  """
  return similarity_alignment(predicted, ground_truth,
                              weights).apply(predicted)


def aligned_vertex_errors(predicted: jax.Array, ground_truth: jax.Array,
                          weights: Optional[jax.Array] = None) -> jax.Array:
  """(N,) per-vertex distances after the best similarity alignment (see
  `aligned_points`), in the ground truth's units."""
  aligned = aligned_points(predicted, ground_truth, weights)
  return jnp.linalg.norm(aligned - ground_truth, axis=-1)


def nearest_distances(source: np.ndarray, target: np.ndarray) -> np.ndarray:
  """(N,) distance from each source point to its nearest target point."""
  source, target = _points(source, 'source'), _points(target, 'target')
  distances, _ = scipy.spatial.cKDTree(target).query(source)
  return distances


def hausdorff_distance(a: np.ndarray, b: np.ndarray) -> float:
  """Symmetric Hausdorff distance between two point sets (mesh vertices).

  max(max_a min_b |a - b|, max_b min_a |a - b|); vertex to vertex, so for
  meshes it is exact up to their vertex spacing.
  """
  return float(max(nearest_distances(a, b).max(),
                   nearest_distances(b, a).max()))


class ClosestPointResult(NamedTuple):
  """What `closest_point_alignment` found.

  Attributes:
    similarity: source -> target transform.
    distances: (N,) aligned source point to nearest target point.
    iterations: iterations run.
  """
  similarity: Similarity
  distances: np.ndarray
  iterations: int


def closest_point_alignment(source: np.ndarray, target: np.ndarray,
                            initial: Optional[Similarity] = None,
                            max_iterations: int = 50,
                            tolerance: float = 1e-6,
                            with_scale: bool = True) -> ClosestPointResult:
  """Iterative closest point with scale, for meshes of different topology.

  Alternates nearest-neighbour matching (k-d tree) with the Umeyama fit of
  the matches until the mean distance improves by less than `tolerance`
  (relative). Like any ICP it needs a rough start: give `initial` (e.g. a
  `similarity_alignment` of corresponding landmarks) unless the two point
  sets already overlap.

  Args:
    source: (N, 3) points to move (the reconstruction).
    target: (M, 3) points to align to (the scan).
    initial: starting transform, default identity.
    max_iterations, tolerance: stopping rule.
    with_scale: fit the scale too (else rigid).

  Returns:
    ClosestPointResult.
  """
  source = _points(source, 'source')
  target = _points(target, 'target')
  tree = scipy.spatial.cKDTree(target)
  on_host = lambda s: Similarity(*(np.asarray(x, np.float64) for x in s))
  similarity = on_host(initial or Similarity(1.0, np.eye(3), np.zeros(3)))
  source_on_device = jnp.asarray(source)
  previous = np.inf
  for iteration in range(1, max_iterations + 1):
    distances, nearest = tree.query(similarity.apply(source))
    error = distances.mean()
    if np.isfinite(previous) and previous - error <= tolerance * previous:
      break
    previous = error
    similarity = on_host(similarity_alignment(
        source_on_device, jnp.asarray(target[nearest]),
        with_scale=with_scale))
  distances, _ = tree.query(similarity.apply(source))
  return ClosestPointResult(similarity, distances, iteration)


def photometric_error(observed: jax.Array, rendered: jax.Array,
                      visible: jax.Array) -> jax.Array:
  """Mean Euclidean RGB distance over the visible points (paper Sec. 7.2).

  Args:
    observed: (..., N, 3) photo colours at the points, channels in [0, 1].
    rendered: (..., N, 3) the model's colours.
    visible: (..., N) weights in {0, 1}.

  Returns:
    (...) errors; 0 where nothing is visible.
  """
  chex.assert_equal_shape([observed, rendered])
  chex.assert_equal_shape_prefix([observed, visible], visible.ndim)
  distance = jnp.linalg.norm(observed - rendered, axis=-1)
  return jnp.sum(visible * distance, axis=-1) / jnp.maximum(
      jnp.sum(visible, axis=-1), 1.0)


def landmark_nme(predicted: jax.Array, ground_truth: jax.Array) -> jax.Array:
  """68-point NME: mean point distance over the outer-eye-corner distance.

  Args:
    predicted, ground_truth: (..., 68, 2) pixels (iBUG order).

  Returns:
    (...) normalised mean errors.
  """
  chex.assert_equal_shape([predicted, ground_truth])
  chex.assert_axis_dimension(predicted, -2, lm.NUM_LANDMARKS)
  chex.assert_axis_dimension(predicted, -1, 2)
  return jnp.mean(jnp.linalg.norm(predicted - ground_truth, axis=-1),
                  axis=-1) / lm.outer_eye_distance(ground_truth)


def box_size(points: np.ndarray) -> float:
  """sqrt(w h) of the bounding box of (K, 2) points, pixels: the face-box
  normaliser of landmark errors (AFLW2000-3D's NME, a video's drift)."""
  points = np.asarray(points, np.float64)
  extent = points.max(axis=0) - points.min(axis=0)
  return float(np.sqrt(extent[0] * extent[1]))


def _points(points, name: str) -> np.ndarray:
  points = np.asarray(points, np.float64)
  if points.ndim != 2 or points.shape[1] != 3 or not len(points):
    raise ValueError(f'{name}: expected (N, 3) points, got shape '
                     f'{points.shape}')
  return points
