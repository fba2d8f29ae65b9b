"""The appearance priors against analytic values, and the texture fill."""

import jax.numpy as jnp
import numpy as np
import pytest

from mofa_ml.export import meshes
from mofa_ml.fitting import appearance_prior
from mofa_ml.rendering import shading


def test_a_white_light_of_any_shape_costs_nothing():
  rng = np.random.default_rng(0)
  white = np.repeat(rng.normal(size=(9, 1)), 3, axis=1)
  assert float(appearance_prior.light_colour_energy(jnp.asarray(
      white, jnp.float32))) == pytest.approx(0.0, abs=1e-10)


def test_a_coloured_light_costs_its_deviation_in_ambient_units():
  ambient = shading.AMBIENT_WHITE.copy()
  dc = ambient[0, 0]
  ambient[0] = dc * np.array([1.2, 1.0, 0.8])  # a warm constant band
  # Deviations from the band's mean (dc): +0.2 dc, 0, -0.2 dc.
  assert float(appearance_prior.light_colour_energy(
      jnp.asarray(ambient))) == pytest.approx(0.08, rel=1e-5)


def test_reflectance_inside_the_bound_costs_nothing_outside_its_distance():
  inside = jnp.full((10, 3), 0.5)
  assert float(appearance_prior.reflectance_bound_energy(inside)) == 0.0
  outside = inside.at[0, 0].set(1.3).at[1, 2].set(-0.2)
  # (0.3^2 + 0.2^2) / 10 vertices.
  assert float(appearance_prior.reflectance_bound_energy(
      outside)) == pytest.approx(0.013, rel=1e-5)


def _disk_texture_map(size):
  """A triangulated disk in UV space, its texture map and the texel grid."""
  from scipy import spatial  # pylint: disable=g-import-not-at-top
  angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
  radii = np.linspace(0.0, 0.27, 10)[1:]
  uv = np.concatenate([[[0.5, 0.53]]] + [
      np.stack([0.5 + r * np.cos(angles), 0.53 + r * np.sin(angles)], 1)
      for r in radii])
  triangles = spatial.Delaunay(uv).simplices
  rows, cols = np.mgrid[:size, :size]
  texel_uv = np.stack([cols / (size - 1), 1 - rows / (size - 1)], -1)
  return uv, meshes.texture_map(uv, triangles, size), texel_uv


def test_the_texture_bakes_covered_texels_and_continues_them():
  size = 256
  uv, texture, texel_uv = _disk_texture_map(size)
  linear = lambda p: np.concatenate(  # exact under barycentric weights
      [p, np.full(p.shape[:-1] + (1,), 0.5)], -1)
  baked = meshes.bake_texture(texture, linear(uv))
  covered = texture.distance == 0
  assert 0.15 < covered.mean() < 0.3
  np.testing.assert_allclose(baked[covered], linear(texel_uv)[covered],
                             atol=1e-4)
  assert np.isfinite(baked).all()
  # Just outside the island the fill starts near the edge's colours and
  # turns smoothly (no streaks, no seam) to the island's mean far away.
  ring = ~covered & (texture.distance < 3)
  assert np.abs(baked[ring] - linear(texel_uv)[ring]).max() < 0.03
  # No seam where the fill takes over: neighbours outside the island differ
  # by little more than the island's own gradient across a polygon corner
  # (0.004 a texel; 0.034 at most here).
  outside = np.where(covered[..., None], np.nan, baked)
  for axis in (0, 1):
    steps = np.abs(np.diff(outside, axis=axis))
    assert np.nanmax(steps) < 0.04, np.nanmax(steps)
  np.testing.assert_allclose(baked[0, 0], baked[covered].mean(0), atol=0.05)
  # A constant island fills everything with its colour.
  constant = meshes.bake_texture(texture, np.full((len(uv), 3), 0.3))
  np.testing.assert_allclose(constant, 0.3, atol=1e-5)
