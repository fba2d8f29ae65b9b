"""SH basis and shading against quadrature over the sphere."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.rendering import shading


def sphere_quadrature(polar_count, azimuth_count):
  """Gauss-Legendre in cos(theta) x uniform azimuth: directions, weights."""
  nodes, weights = np.polynomial.legendre.leggauss(polar_count)
  azimuth = (np.arange(azimuth_count) + 0.5) * 2 * np.pi / azimuth_count
  cos_t, phi = np.meshgrid(nodes, azimuth, indexing='ij')
  sin_t = np.sqrt(1 - cos_t**2)
  directions = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], -1)
  w = np.repeat(weights[:, None], azimuth_count, 1) * 2 * np.pi / azimuth_count
  return directions.reshape(-1, 3), w.ravel()


def test_sh_basis_is_orthonormal_over_the_sphere():
  directions, weights = sphere_quadrature(12, 24)  # exact for degree <= 4
  basis = np.asarray(shading.sh_basis(jnp.asarray(directions)), np.float64)
  chex.assert_shape(basis, (len(directions), 9))
  gram = basis.T @ (basis * weights[:, None])
  np.testing.assert_allclose(gram, np.eye(9), atol=1e-5)


def test_uniform_radiance_gives_irradiance_pi():
  radiance = np.zeros((9, 3), np.float32)
  radiance[0] = 1.0 / shading._C0  # L(w) = 1 everywhere
  normals = jax.random.normal(jax.random.PRNGKey(0), (50, 3))
  normals /= jnp.linalg.norm(normals, axis=-1, keepdims=True)
  irradiance = shading.irradiance(
      normals, shading.radiance_to_irradiance(jnp.asarray(radiance)))
  np.testing.assert_allclose(irradiance, np.pi, rtol=1e-5)


def test_band_limited_radiance_gives_the_integrated_irradiance():
  rng = np.random.default_rng(0)
  radiance_sh = rng.normal(size=(9, 3))
  directions, weights = sphere_quadrature(400, 800)
  radiance = np.asarray(shading.sh_basis(jnp.asarray(directions)),
                        np.float64) @ radiance_sh
  normals = rng.normal(size=(6, 3))
  normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
  cosine = np.maximum(0.0, normals @ directions.T)  # (6, Q)
  integrated = cosine @ (radiance * weights[:, None])
  predicted = shading.irradiance(
      jnp.asarray(normals, jnp.float32),
      shading.radiance_to_irradiance(jnp.asarray(radiance_sh, jnp.float32)))
  np.testing.assert_allclose(predicted, integrated, atol=2e-3)


def test_directional_light_matches_its_nine_term_approximation():
  # For n = d the 9-term clamped cosine is 1/4 + 1/2 + 5/16 = 1.0625, and 0.5
  # ambient adds 0.5; opposite the light the 9 terms give 1/4 - 1/2 + 5/16.
  direction = jnp.asarray([0.0, 0.6, -0.8])
  gamma = shading.directional_light(direction, jnp.asarray([1.0, 0.5, 2.0]),
                                    jnp.asarray([0.5, 0.5, 0.5]))
  chex.assert_shape(gamma, (9, 3))
  towards = shading.irradiance(direction[None], gamma)[0]
  away = shading.irradiance(-direction[None], gamma)[0]
  np.testing.assert_allclose(towards, 0.5 + 1.0625 * np.array([1, 0.5, 2]),
                             rtol=1e-5)
  np.testing.assert_allclose(away, 0.5 + 0.0625 * np.array([1, 0.5, 2]),
                             rtol=1e-4)


def test_shade_multiplies_reflectance_by_irradiance_and_batches():
  key1, key2, key3 = jax.random.split(jax.random.PRNGKey(3), 3)
  reflectance = jax.random.uniform(key1, (2, 10, 3))
  normals = jax.random.normal(key2, (2, 10, 3))
  normals /= jnp.linalg.norm(normals, axis=-1, keepdims=True)
  sh = jax.random.normal(key3, (2, 9, 3))
  colours = shading.shade(reflectance, normals, sh)
  chex.assert_shape(colours, (2, 10, 3))
  expected = reflectance[1, 4] * (shading.sh_basis(normals[1, 4]) @ sh[1])
  np.testing.assert_allclose(colours[1, 4], expected, rtol=1e-5)
  ambient = shading.shade(reflectance, normals,
                          jnp.broadcast_to(shading.AMBIENT_WHITE, (2, 9, 3)))
  np.testing.assert_allclose(ambient, reflectance, rtol=1e-5)
