"""The seven terms of the self-supervised loss (paper Sec. 6), unweighted
except where a weight sits inside a term's definition.

All functions work on one face (unbatched); `jax.vmap` batches them. Units:
colours in [0, 1]; pixel positions in pixels, divided by the caller's
landmark unit; geometry offsets in mm, divided by the caller's length unit
(see `objective.LossConfig`). Norms have finite gradients at zero.
"""

import chex
import jax
import jax.numpy as jnp

_EPS = 1e-12


def safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
  """Euclidean norm whose gradient is 0 (not NaN) at x = 0."""
  squared = jnp.sum(x * x, axis=axis)
  return jnp.sqrt(jnp.maximum(squared, _EPS))


def photometric(observed: jax.Array, colors: jax.Array,
                visible: jax.Array) -> jax.Array:
  """Dense photometric term of one level (eq. 9): l2,1 over visible vertices.

  (1 / N) sum_{i visible} || I(u_i) - c_i ||_2.

  Args:
    observed: (N, 3) image colours sampled at the projected vertices.
    colors: (N, 3) shaded model colours.
    visible: (N,) 0/1 visibility (backface culling and inside the image).

  Returns:
    () float.
  """
  chex.assert_equal_shape([observed, colors])
  chex.assert_shape(visible, observed.shape[:1])
  return jnp.sum(visible * safe_norm(observed - colors)) / observed.shape[0]


def sparse_landmarks(detected: jax.Array, projected: jax.Array,
                     confidence: jax.Array) -> jax.Array:
  """Sparse feature term (eq. 10): (1/|F|) sum_f c_f ||f - u_{k_f}||^2.

  Args:
    detected: (L, 2) landmark positions, in the caller's landmark unit.
    projected: (L, 2) projections of the corresponding vertices, same unit.
    confidence: (L,) c_f in [0, 1]; 0 marks a missing landmark, which does
      not count in |F| either.

  Returns:
    () float.
  """
  chex.assert_equal_shape([detected, projected])
  chex.assert_shape(confidence, detected.shape[:1])
  count = jnp.maximum(jnp.sum(confidence > 0), 1)
  return jnp.sum(confidence * jnp.sum((detected - projected)**2, -1)) / count


def mean_landmark_distance(residual: jax.Array,
                           confidence: jax.Array) -> jax.Array:
  """() mean length (pixels) of the (L, 2) residuals of the landmarks whose
  (L,) confidence is > 0 (a missing landmark is not counted)."""
  chex.assert_shape(confidence, residual.shape[:1])
  counted = confidence > 0
  return jnp.sum(counted * jnp.linalg.norm(residual, axis=-1)) / jnp.maximum(
      jnp.sum(counted), 1)


def landmark_noise_weight(residual: jax.Array, confidence: jax.Array,
                          noise_px: float) -> jax.Array:
  """min(1, (noise_px / e)^2), e the `mean_landmark_distance` of the
  residuals: the sparse term's weight under Gaussian landmark noise whose
  level e is estimated from the residual, relative to the level `noise_px`
  that the term's own weight suits (iteratively reweighted: the fit
  re-estimates it at each iteration).

  Args:
    residual: (L, 2) projected - detected, pixels.
    confidence: (L,); 0 marks a missing landmark, not counted.
    noise_px: pixels; 0 gives weight 1.

  Returns:
    () float in (0, 1].
  """
  chex.assert_shape(confidence, residual.shape[:1])
  if noise_px <= 0:
    return jnp.ones((), residual.dtype)
  error = mean_landmark_distance(residual, confidence)
  return jnp.minimum(1.0, (noise_px / jnp.maximum(error, 1e-6))**2)


def statistical_geometry(shape: jax.Array, expression: jax.Array,
                         shape_sigma: jax.Array,
                         expression_sigma: jax.Array) -> jax.Array:
  """Tikhonov prior on geometry (eq. 11, first part):
  sum (alpha_shape / sigma)^2 + sum (alpha_expression / sigma)^2."""
  return (jnp.sum((shape / shape_sigma)**2) +
          jnp.sum((expression / expression_sigma)**2))


def statistical_reflectance(reflectance: jax.Array,
                            reflectance_sigma: jax.Array) -> jax.Array:
  """Tikhonov prior on reflectance (eq. 11, second part, without its weight
  w_rstd): sum (beta / sigma_r)^2."""
  return jnp.sum((reflectance / reflectance_sigma)**2)


def _neighbour_mean(values: jax.Array, neighbors: jax.Array,
                    mask: jax.Array) -> jax.Array:
  counts = jnp.maximum(jnp.sum(mask, axis=1, keepdims=True), 1)
  return jnp.sum(values[neighbors] * mask[..., None], axis=1) / counts


def corrective_smoothness(offsets: jax.Array, neighbors: jax.Array,
                          mask: jax.Array) -> jax.Array:
  """Laplacian smoothness of corrective displacements (eq. 12, no weight):

  (1 / N) sum_i || (1 / |N_i|) sum_{j in N_i} (F_i - F_j) ||^2.

  Args:
    offsets: (N, 3) F_g in the caller's length unit.
    neighbors: (N, K) padded 1-ring.
    mask: (N, K) bool.
  """
  chex.assert_rank([offsets, neighbors, mask], [2, 2, 2])
  laplacian = offsets - _neighbour_mean(offsets, neighbors, mask)
  return jnp.mean(jnp.sum(laplacian**2, axis=-1))


def chromaticity_weights(observed: jax.Array, neighbors: jax.Array,
                         sharpness: float = 50.0) -> jax.Array:
  """w_ij = exp(-sharpness ||chroma(I(u_i)) - chroma(I(u_j))||) (eq. 13).

  Chromaticity is the colour divided by its channel sum, so shading
  (a common factor) cancels. Constants: no gradient flows through them.

  Args:
    observed: (N, 3) image colours at the final level's projected vertices
      under the previous parameters.
    neighbors: (N, K) padded 1-ring.

  Returns:
    (N, K) weights in (0, 1].
  """
  observed = jax.lax.stop_gradient(observed)
  chroma = observed / (jnp.sum(observed, -1, keepdims=True) + 1e-6)
  difference = chroma[:, None, :] - chroma[neighbors]
  return jax.lax.stop_gradient(jnp.exp(-sharpness * safe_norm(difference)))


def reflectance_sparsity(reflectance: jax.Array, neighbors: jax.Array,
                         mask: jax.Array, weights: jax.Array,
                         p: float = 0.9) -> jax.Array:
  """Local reflectance sparsity (eq. 13, no weight):

  (1 / N) sum_i sum_{j in N_i} w_ij ||r_i - r_j||_2^p.

  Args:
    reflectance: (N, 3) final-level albedo.
    neighbors, mask: (N, K) padded 1-ring.
    weights: (N, K) chromaticity weights.
    p: the l2,p exponent (0.9 in the paper).
  """
  difference = reflectance[:, None, :] - reflectance[neighbors]
  squared = jnp.maximum(jnp.sum(difference**2, -1), _EPS)
  return jnp.sum(mask * weights * squared**(p / 2)) / reflectance.shape[0]


def draw_skin_partners(key: jax.Array, skin_vertices: jax.Array,
                       count: int = 6) -> jax.Array:
  """(M, count) random partners, drawn from the skin vertices, of each of
  the M skin vertices (G_i of eq. 14)."""
  picks = jax.random.randint(key, (skin_vertices.shape[0], count), 0,
                             skin_vertices.shape[0])
  return skin_vertices[picks]


def global_reflectance_constancy(reflectance: jax.Array,
                                 skin_vertices: jax.Array,
                                 partners: jax.Array) -> jax.Array:
  """Global skin reflectance constancy (eq. 14, no weight):

  (1 / |M|) sum_{i in M} sum_{j in G_i} ||r_i - r_j||^2.

  Args:
    reflectance: (N, 3) final-level albedo.
    skin_vertices: (M,) indices of the skin mask.
    partners: (M, G) partner indices (see `draw_skin_partners`).
  """
  chex.assert_rank([skin_vertices, partners], [1, 2])
  difference = reflectance[skin_vertices][:, None, :] - reflectance[partners]
  return jnp.sum(difference**2) / skin_vertices.shape[0]


def stabilization(offsets: jax.Array) -> jax.Array:
  """Small corrective displacements (eq. 15, no weight): (1/N) sum ||F_i||^2.
  """
  return jnp.mean(jnp.sum(offsets**2, axis=-1))
