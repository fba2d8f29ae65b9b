"""The seven loss terms against hand-computed values and finite differences."""

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np

from mofa_ml.learning import losses
from mofa_ml.rendering import mesh

# A tiny mesh: a square split into two triangles, plus its padded 1-ring.
SQUARE_TRIANGLES = np.array([[0, 1, 2], [0, 2, 3]])
NEIGHBORS, NEIGHBOR_MASK = mesh.one_ring_neighbors(SQUARE_TRIANGLES, 4)


def test_safe_norm_value_and_finite_gradient_at_zero():
  np.testing.assert_allclose(losses.safe_norm(jnp.asarray([3.0, 4.0])), 5.0)
  gradient = jax.grad(lambda x: losses.safe_norm(x))(jnp.zeros(3))
  assert np.all(np.isfinite(gradient))


def test_photometric_by_hand():
  observed = jnp.asarray([[0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0],
                          [0.2, 0.2, 0.2]])
  colors = jnp.asarray([[0.5, 0.5, 0.5], [0.3, 0.4, 0.0], [0.0, 0.0, 0.0],
                        [0.9, 0.9, 0.9]])
  visible = jnp.asarray([1.0, 1.0, 1.0, 0.0])
  # (0 + 0.5 + 1.0) / 4 vertices; the hidden one does not count.
  np.testing.assert_allclose(losses.photometric(observed, colors, visible),
                             1.5 / 4, rtol=1e-6)
  gradient = jax.grad(losses.photometric, argnums=1)(observed, colors,
                                                     visible)
  assert np.all(np.isfinite(gradient))  # the zero residual of vertex 0


def test_photometric_gradient_matches_finite_differences():
  rng = np.random.default_rng(0)
  observed = jnp.asarray(rng.uniform(size=(6, 3)))
  visible = jnp.asarray([1.0, 1, 0, 1, 1, 1])
  with jax.enable_x64(True):
    colors = jnp.asarray(rng.uniform(size=(6, 3)))
    check_grads(lambda c: losses.photometric(
        jnp.asarray(observed, jnp.float64), c, visible), (colors,), order=1,
                modes=('rev',), eps=1e-6)


def test_sparse_landmarks_by_hand_and_gradient():
  detected = jnp.asarray([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
  projected = jnp.asarray([[3.0, 4.0], [1.0, 2.0], [0.0, 0.0]])
  confidence = jnp.asarray([1.0, 0.5, 0.0])  # the third is missing
  # (1 * 25 + 0.5 * 1) / 2 counted landmarks.
  np.testing.assert_allclose(
      losses.sparse_landmarks(detected, projected, confidence), 12.75)
  with jax.enable_x64(True):
    check_grads(lambda p: losses.sparse_landmarks(
        jnp.asarray(detected, jnp.float64), p, confidence),
                (jnp.asarray(projected, jnp.float64),), order=1,
                modes=('rev',))


def test_landmark_noise_weight_by_hand():
  residual = jnp.asarray([[3.0, 4.0], [0.0, 1.0], [60.0, 80.0]])
  confidence = jnp.asarray([1.0, 0.5, 0.0])  # the third is missing
  # Mean counted length (5 + 1) / 2 = 3 px.
  np.testing.assert_allclose(
      losses.landmark_noise_weight(residual, confidence, 1.5), 0.25)
  np.testing.assert_allclose(  # below the noise level: the full weight
      losses.landmark_noise_weight(residual, confidence, 4.0), 1.0)
  np.testing.assert_allclose(
      losses.landmark_noise_weight(residual, confidence, 0.0), 1.0)
  np.testing.assert_allclose(  # a perfect fit: finite, full weight
      losses.landmark_noise_weight(0 * residual, confidence, 3.0), 1.0)


def test_statistical_by_hand():
  geometry = losses.statistical_geometry(
      jnp.asarray([2.0, 0.0]), jnp.asarray([1.0]), jnp.asarray([1.0, 5.0]),
      jnp.asarray([0.5]))
  np.testing.assert_allclose(geometry, 4.0 + 4.0)
  reflectance = losses.statistical_reflectance(jnp.asarray([3.0, 6.0]),
                                               jnp.asarray([3.0, 2.0]))
  np.testing.assert_allclose(reflectance, 1.0 + 9.0)


def test_corrective_smoothness_and_stabilization_by_hand():
  # Square ring: vertex 0 and 2 have 3 neighbours, 1 and 3 have 2.
  offsets = jnp.asarray([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0],
                         [0.0, 0.0, 0.0]])
  # Laplacians: v0: 3 - 0 = 3; v1, v2, v3: 0 - 3 / |N| (2, 3, 2 neighbours).
  expected = (9.0 + (3 / 2)**2 + 1.0 + (3 / 2)**2) / 4
  np.testing.assert_allclose(
      losses.corrective_smoothness(offsets, jnp.asarray(NEIGHBORS),
                                   jnp.asarray(NEIGHBOR_MASK)), expected,
      rtol=1e-6)
  constant = jnp.ones((4, 3)) * 7.0
  np.testing.assert_allclose(losses.corrective_smoothness(
      constant, jnp.asarray(NEIGHBORS), jnp.asarray(NEIGHBOR_MASK)), 0.0)
  np.testing.assert_allclose(losses.stabilization(offsets), 9.0 / 4)


def test_chromaticity_weights_ignore_shading():
  observed = jnp.asarray([[0.4, 0.2, 0.2], [0.8, 0.4, 0.4], [0.2, 0.4, 0.2],
                          [0.4, 0.2, 0.2]])
  weights = losses.chromaticity_weights(observed, jnp.asarray(NEIGHBORS))
  row = list(NEIGHBORS[0])
  # Vertex 1 has vertex 0's chromaticity at twice the brightness: weight 1.
  np.testing.assert_allclose(weights[0, row.index(1)], 1.0, rtol=1e-4)
  chroma_distance = np.linalg.norm(np.array([0.5, 0.25, 0.25]) -
                                   np.array([0.25, 0.5, 0.25]))
  np.testing.assert_allclose(weights[0, row.index(2)],
                             np.exp(-50 * chroma_distance), rtol=1e-4)


def test_reflectance_sparsity_by_hand_and_finite_at_equal_albedo():
  reflectance = jnp.asarray([[0.3, 0.3, 0.3], [0.3, 0.3, 0.3],
                             [0.3, 0.7, 0.3], [0.3, 0.3, 0.3]])
  weights = jnp.ones(NEIGHBORS.shape)
  value = losses.reflectance_sparsity(reflectance, jnp.asarray(NEIGHBORS),
                                      jnp.asarray(NEIGHBOR_MASK), weights)
  # Vertex 2 differs by 0.4 from its 3 neighbours (0, 1, 3); each of those
  # pairs counts from both ends: 6 terms of 0.4^0.9, over 4 vertices.
  np.testing.assert_allclose(value, 6 * 0.4**0.9 / 4, rtol=1e-5)
  gradient = jax.grad(lambda r: losses.reflectance_sparsity(
      r, jnp.asarray(NEIGHBORS), jnp.asarray(NEIGHBOR_MASK), weights))(
          jnp.full((4, 3), 0.5))
  assert np.all(np.isfinite(gradient))


def test_global_constancy_by_hand_and_partners_stay_in_the_mask():
  reflectance = jnp.asarray([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0],
                             [0.0, 2.0, 0.0], [9.0, 9.0, 9.0]])
  skin = jnp.asarray([0, 1, 2])
  partners = jnp.asarray([[1, 2], [1, 1], [0, 1]])
  # Row sums: (1 + 4) + (0 + 0) + (4 + 5), over |M| = 3.
  np.testing.assert_allclose(
      losses.global_reflectance_constancy(reflectance, skin, partners),
      14.0 / 3)
  drawn = losses.draw_skin_partners(jax.random.PRNGKey(0),
                                    jnp.asarray([4, 8, 15, 16]), count=6)
  assert drawn.shape == (4, 6)
  assert set(np.asarray(drawn).ravel()) <= {4, 8, 15, 16}
