"""Metrics: alignment recovers known transforms, distances known values."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofa_ml import samples
from mofa_ml import metrics
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh


def _random_similarity(seed):
  rng = np.random.default_rng(seed)
  rotation = np.asarray(camera.euler_to_rotation(
      jnp.asarray(rng.uniform(-1.2, 1.2, 3), jnp.float32)))
  return metrics.Similarity(np.float32(rng.uniform(0.5, 2.0)), rotation,
                            rng.uniform(-50, 50, 3).astype(np.float32))


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_similarity_alignment_recovers_known_transform(ict_model, seed):
  source = ict_model.mean_shape
  truth = _random_similarity(seed)
  found = jax.jit(metrics.similarity_alignment)(source, truth.apply(source))
  np.testing.assert_allclose(found.scale, truth.scale, rtol=1e-5)
  np.testing.assert_allclose(found.rotation, truth.rotation, atol=1e-5)
  np.testing.assert_allclose(found.translation, truth.translation, atol=1e-3)
  errors = metrics.aligned_vertex_errors(source, truth.apply(source))
  chex.assert_shape(errors, (ict_model.num_vertices,))
  assert float(errors.max()) < 1e-3


def test_alignment_is_a_rotation_for_mirrored_targets(ict_model):
  """A mirror image cannot be reached: R stays proper, error stays > 0."""
  source = ict_model.mean_shape
  mirrored = source * jnp.asarray([-1.0, 1.0, 1.0])
  found = metrics.similarity_alignment(source, mirrored)
  assert float(jnp.linalg.det(found.rotation)) == pytest.approx(1.0, abs=1e-5)
  rigid = metrics.similarity_alignment(source, 2 * source, with_scale=False)
  assert float(rigid.scale) == 1.0


def test_weights_restrict_the_alignment(ict_model):
  source = ict_model.mean_shape
  target = source.at[:100].add(30.0)  # an outlier region
  weights = jnp.ones(source.shape[0]).at[:100].set(0.0)
  errors = metrics.aligned_vertex_errors(source, target, weights)
  assert float(errors[100:].max()) < 1e-3
  np.testing.assert_allclose(errors[:100], 30.0 * np.sqrt(3), rtol=1e-4)


def test_hausdorff_self_zero_and_shift():
  vertices, _ = mesh.icosphere(3)
  vertices = np.asarray(vertices, np.float64) * 50.0
  assert metrics.hausdorff_distance(vertices, vertices) == 0.0
  # Along the direction of a vertex: that vertex's shifted copy is exactly
  # `shift` from the whole sphere (it moves radially outwards).
  direction = vertices[0] / np.linalg.norm(vertices[0])
  for shift in (0.5, 3.0):
    moved = vertices + shift * direction
    assert metrics.hausdorff_distance(vertices, moved) == pytest.approx(
        shift, rel=1e-9)
  with pytest.raises(ValueError, match=r'\(N, 3\)'):
    metrics.hausdorff_distance(vertices[:, :2], vertices)


def test_closest_point_alignment_other_topology(ict_model):
  """A finer resampling of the same surface, moved by a known similarity,
  is aligned back to sub-millimetre distances."""
  vertices = np.asarray(ict_model.mean_shape, np.float64)
  triangles = np.asarray(ict_model.triangles)
  corners = vertices[triangles]
  rng = np.random.default_rng(0)
  bary = rng.dirichlet(np.ones(3), size=(len(triangles), 3))
  scan = np.einsum('fkc,fcd->fkd', bary, corners).reshape(-1, 3)
  truth = _random_similarity(3)
  truth = truth._replace(rotation=np.asarray(camera.euler_to_rotation(
      jnp.asarray([0.05, -0.08, 0.03]))), translation=np.asarray(
          [2.0, -1.0, 3.0], np.float32), scale=np.float32(1.03))
  moved_scan = np.asarray(truth.apply(scan))
  start = metrics.nearest_distances(vertices, moved_scan).mean()
  result = metrics.closest_point_alignment(vertices, moved_scan)
  # The floor: the true transform leaves the scan's sampling gaps.
  floor = metrics.nearest_distances(np.asarray(truth.apply(vertices)),
                                    moved_scan).mean()
  assert result.distances.mean() < 1.1 * floor < 0.2 * start
  np.testing.assert_allclose(result.similarity.scale, truth.scale, atol=5e-3)
  np.testing.assert_allclose(result.similarity.rotation, truth.rotation,
                             atol=5e-3)


def test_photometric_error_perfect_render_and_known_value(ict_model):
  rng = np.random.default_rng(0)
  colours = jnp.asarray(rng.uniform(size=(2, 50, 3)), jnp.float32)
  visible = jnp.ones((2, 50)).at[1, 25:].set(0.0)
  error = metrics.photometric_error(colours, colours, visible)
  chex.assert_shape(error, (2,))
  np.testing.assert_allclose(error, 0.0, atol=1e-7)
  shifted = colours.at[..., 0].add(0.3)
  np.testing.assert_allclose(
      metrics.photometric_error(colours, shifted, visible), 0.3, rtol=1e-5)
  # Invisible points do not count, even when wildly wrong.
  wrong = shifted.at[1, 25:].set(10.0)
  np.testing.assert_allclose(
      metrics.photometric_error(colours, wrong, visible), 0.3, rtol=1e-5)
  assert float(metrics.photometric_error(colours, wrong,
                                         jnp.zeros((2, 50)))[0]) == 0.0


def test_landmark_nme_ground_truth_and_shift():
  truth = jnp.asarray(lm.read_pts(samples.sample_faces()['takeo']
                                  .landmarks_path))
  assert float(metrics.landmark_nme(truth, truth)) == 0.0
  eyes = float(jnp.linalg.norm(truth[36] - truth[45]))
  np.testing.assert_allclose(metrics.landmark_nme(truth + 3.0 * jnp.asarray(
      [1.0, 4.0 / 3.0]), truth), 5.0 / eyes, rtol=1e-5)
  batched = metrics.landmark_nme(jnp.stack([truth, truth + 1.0]),
                                 jnp.stack([truth, truth]))
  chex.assert_shape(batched, (2,))
  with pytest.raises(AssertionError):
    metrics.landmark_nme(truth[:60], truth[:60])
