"""Mesh topology, normals and the cotangent Laplacian."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import scipy.spatial

from mofa_ml.rendering import mesh

OCTAHEDRON_VERTICES = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0],
                                [0, 0, 1], [0, 0, -1]], np.float32)
OCTAHEDRON_TRIANGLES = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4],
                                 [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]],
                                np.int32)


def test_octahedron_normals_are_the_axes():
  normals = mesh.vertex_normals(jnp.asarray(OCTAHEDRON_VERTICES),
                                jnp.asarray(OCTAHEDRON_TRIANGLES))
  chex.assert_shape(normals, (6, 3))
  np.testing.assert_allclose(normals, OCTAHEDRON_VERTICES, atol=1e-6)


def test_sphere_normals_are_radial_and_area_weighted():
  vertices, triangles = mesh.icosphere(4)
  scaled = vertices * 37.0 + 5.0
  normals = np.asarray(mesh.vertex_normals(jnp.asarray(scaled, jnp.float32),
                                           jnp.asarray(triangles)))
  cosine = np.sum(normals * vertices, axis=1)
  assert cosine.min() > 0.9999
  # Area weighting: a single huge triangle dominates a small one.
  vertices = jnp.asarray([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 0.1],
                          [0.1, 0, 0]], jnp.float32)
  triangles = jnp.asarray([[0, 1, 2], [0, 3, 4]])
  # Cross products (twice the areas): (0, 0, 100) and (0, 0.01, 0).
  normal = mesh.vertex_normals(vertices, triangles)[0]
  expected = np.array([0.0, 0.01, 100.0])
  np.testing.assert_allclose(normal, expected / np.linalg.norm(expected),
                             atol=1e-6)


def test_safe_normalize_has_finite_gradient_at_zero():
  grad = jax.grad(lambda v: jnp.sum(mesh.safe_normalize(v)))(jnp.zeros(3))
  assert np.all(np.isfinite(grad))


def test_one_ring_of_the_octahedron():
  neighbors, mask = mesh.one_ring_neighbors(OCTAHEDRON_TRIANGLES, 6)
  chex.assert_shape([neighbors, mask], (6, 4))
  assert mask.all()
  opposite = {0: 1, 1: 0, 2: 3, 3: 2, 4: 5, 5: 4}
  for vertex in range(6):
    assert set(neighbors[vertex]) == set(range(6)) - {vertex, opposite[vertex]}


def test_one_ring_pads_with_the_vertex_itself():
  triangles = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4]])
  neighbors, mask = mesh.one_ring_neighbors(triangles, 5)
  assert mask.sum(axis=1).tolist() == [4, 2, 3, 3, 2]
  assert np.all(neighbors[~mask] == np.nonzero(~mask)[0])


def test_cotangent_laplacian_has_linear_precision_on_a_plane():
  grid = np.stack(np.meshgrid(np.linspace(0, 1, 9), np.linspace(0, 2, 11)),
                  -1).reshape(-1, 2)
  rng = np.random.default_rng(0)
  interior = (grid[:, 0] > 0) & (grid[:, 0] < 1) & (grid[:, 1] > 0) & (
      grid[:, 1] < 2)
  grid[interior] += rng.uniform(-0.03, 0.03, (interior.sum(), 2))
  vertices = np.concatenate([grid, np.zeros((len(grid), 1))], axis=1)
  triangles = scipy.spatial.Delaunay(grid).simplices
  stiffness, areas = mesh.cotangent_laplacian(vertices, triangles)
  np.testing.assert_allclose(stiffness @ np.ones(len(grid)), 0.0, atol=1e-10)
  linear = 3.0 * grid[:, 0] - 2.0 * grid[:, 1] + 1.0
  np.testing.assert_allclose((stiffness @ linear)[interior], 0.0, atol=1e-9)
  np.testing.assert_allclose(areas.sum(), 2.0, rtol=1e-9)
  assert np.allclose((stiffness - stiffness.T).toarray(), 0.0)


def test_restrict_triangles_and_edges():
  triangles = np.array([[0, 1, 2], [1, 2, 5], [2, 3, 0]])
  np.testing.assert_array_equal(mesh.restrict_triangles(triangles, 4),
                                [[0, 1, 2], [2, 3, 0]])
  np.testing.assert_array_equal(
      mesh.unique_edges(np.array([[0, 1, 2], [2, 1, 3]])),
      [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]])


def test_manifold_harmonics_of_a_sphere_are_constant_then_linear():
  # On a sphere of radius r the Laplace-Beltrami eigenfunctions are the
  # spherical harmonics: the constant (eigenvalue 0), then x, y, z (2 / r^2).
  radius = 50.0
  unit, triangles = mesh.icosphere(3)
  harmonics = mesh.manifold_harmonics(unit * radius, triangles, 6)
  fields, eigenvalues = harmonics['fields'], harmonics['eigenvalues']
  chex.assert_shape(fields, (len(unit), 6))
  np.testing.assert_allclose(fields.T @ fields, np.eye(6), atol=1e-8)
  np.testing.assert_allclose(fields[:, 0], 1.0 / np.sqrt(len(unit)),
                             rtol=1e-6)
  np.testing.assert_allclose(eigenvalues[0], 0.0, atol=1e-8)
  np.testing.assert_allclose(eigenvalues[1:4], 2.0 / radius**2, rtol=0.02)
  assert eigenvalues[4] > 2.5 * eigenvalues[3]  # 6 / r^2 next
  # Fields 1-3 span the coordinate functions.
  solution, *_ = np.linalg.lstsq(unit, fields[:, 1:4], rcond=None)
  np.testing.assert_allclose(unit @ solution, fields[:, 1:4], atol=1e-3)
