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


def test_the_texture_fill_keeps_covered_texels_and_continues_them():
  size = 256
  rows, cols = np.mgrid[:size, :size]
  covered = (cols - 128)**2 + (rows - 120)**2 < 70**2
  image = np.stack([cols / size, rows / size, np.full((size, size), 0.5)],
                   -1).astype(np.float32)
  filled = meshes.fill_uncovered(np.where(covered[..., None], image, 0.0),
                                 covered)
  np.testing.assert_array_equal(filled[covered], image[covered])
  assert np.isfinite(filled).all()
  # Just outside the island the fill starts near the edge's colours and
  # turns smoothly (no streaks, no seam) to the island's mean far away.
  ring = ~covered & ((cols - 128)**2 + (rows - 120)**2 < 73**2)
  assert np.abs(filled[ring] - image[ring]).max() < 0.1
  outside = np.where(covered[..., None], np.nan, filled)
  steps = np.abs(np.diff(outside, axis=1))
  assert np.nanmax(steps) < 0.03, np.nanmax(steps)
  np.testing.assert_allclose(filled[0, 0], image[covered].mean(0), atol=0.05)
  # A constant island fills everything with its colour.
  constant = meshes.fill_uncovered(
      np.where(covered[..., None], 0.3, 0.0).astype(np.float32) *
      np.ones(3, np.float32), covered)
  np.testing.assert_allclose(constant, 0.3, atol=1e-5)
