"""Triangle-mesh topology and differential operators.

Host-side helpers (NumPy) build fixed topology once per face model: sub-mesh
extraction, padded 1-ring neighbourhoods, the cotangent Laplacian and its
lowest eigenfunctions (manifold harmonics). The one per-step operation,
area-weighted vertex normals, is a pure `jnp` function.
"""

from typing import Dict, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import scipy.sparse.linalg


def restrict_triangles(triangles: np.ndarray, vertex_count: int) -> np.ndarray:
  """Keeps the triangles whose three vertices all have index < `vertex_count`.

  Args:
    triangles: (F, 3) int vertex indices.
    vertex_count: the sub-mesh is the vertex prefix [0, vertex_count).

  Returns:
    (F', 3) int32 triangles of the sub-mesh (indices unchanged, since the
    sub-mesh is a prefix).
  """
  triangles = np.asarray(triangles)
  keep = np.all(triangles < vertex_count, axis=1)
  return triangles[keep].astype(np.int32)


def unique_edges(triangles: np.ndarray) -> np.ndarray:
  """(E, 2) int32 undirected edges (i < j) of a triangle mesh, sorted."""
  triangles = np.asarray(triangles)
  edges = np.concatenate(
      [triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
  return np.unique(np.sort(edges, axis=1), axis=0).astype(np.int32)


def one_ring_neighbors(triangles: np.ndarray,
                       vertex_count: int) -> Tuple[np.ndarray, np.ndarray]:
  """Padded 1-ring neighbourhoods.

  A padded (N, K) table gathers in one op on any accelerator, which is why it
  is preferred over a ragged adjacency list here.

  Args:
    triangles: (F, 3) int vertex indices.
    vertex_count: N.

  Returns:
    neighbors: (N, K) int32, K the maximum valence; padded slots repeat the
      vertex's own index so that gathers stay in bounds.
    mask: (N, K) bool, True for real neighbours.
  """
  edges = unique_edges(triangles)
  both = np.concatenate([edges, edges[:, ::-1]])
  order = np.lexsort((both[:, 1], both[:, 0]))
  both = both[order]
  counts = np.bincount(both[:, 0], minlength=vertex_count)
  width = int(counts.max()) if counts.size else 0
  neighbors = np.repeat(np.arange(vertex_count, dtype=np.int32)[:, None],
                        width, axis=1)
  mask = np.zeros((vertex_count, width), dtype=bool)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  slot = np.arange(len(both)) - starts[both[:, 0]]
  neighbors[both[:, 0], slot] = both[:, 1]
  mask[both[:, 0], slot] = True
  return neighbors, mask


def cotangent_laplacian(
    vertices: np.ndarray,
    triangles: np.ndarray) -> Tuple[scipy.sparse.csr_matrix, np.ndarray]:
  """Cotangent stiffness matrix and lumped (barycentric) vertex areas.

  Args:
    vertices: (N, 3) float positions.
    triangles: (F, 3) int indices.

  Returns:
    stiffness: (N, N) sparse, symmetric positive semi-definite; constant
      vectors are in its null space.
    areas: (N,) float64, one third of the incident triangle areas.
  """
  v = np.asarray(vertices, dtype=np.float64)
  t = np.asarray(triangles)
  n = len(v)
  weights = []
  rows = []
  cols = []
  for k in range(3):
    i, j, o = t[:, (k + 1) % 3], t[:, (k + 2) % 3], t[:, k]
    a, b = v[i] - v[o], v[j] - v[o]
    cross = np.linalg.norm(np.cross(a, b), axis=1)
    cot = np.einsum('fd,fd->f', a, b) / np.maximum(cross, 1e-12)
    weights.append(0.5 * cot)
    rows.append(i)
    cols.append(j)
  w = np.concatenate(weights)
  r = np.concatenate(rows)
  c = np.concatenate(cols)
  off_diagonal = scipy.sparse.coo_matrix((-w, (r, c)), shape=(n, n))
  off_diagonal = off_diagonal + off_diagonal.T
  diagonal = -np.asarray(off_diagonal.sum(axis=1)).ravel()
  stiffness = (off_diagonal + scipy.sparse.diags(diagonal)).tocsr()
  face_areas = 0.5 * np.linalg.norm(
      np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]]), axis=1)
  areas = np.bincount(t.ravel(), weights=np.repeat(face_areas, 3) / 3.0,
                      minlength=n)
  return stiffness, areas


def manifold_harmonics(vertices: np.ndarray, triangles: np.ndarray,
                       count: int) -> Dict[str, np.ndarray]:
  """The `count` lowest manifold harmonics, orthonormalised.

  Solves S phi = lambda A phi (cotangent stiffness S, lumped areas A) near
  zero by shift-invert Lanczos with a fixed start vector, fixes each sign so
  that the largest entry is positive, then orthonormalises in the Euclidean
  sense (QR; the triangular factor keeps the span of every low-frequency
  prefix) because the base model's modes must be orthonormal in R^3N.

  Returns:
    dict with 'fields' (N, count) float64 orthonormal columns, constant
    first, and 'eigenvalues' (count,) in 1/mm^2, ascending.
  """
  stiffness, areas = cotangent_laplacian(vertices, triangles)
  mass = scipy.sparse.diags(areas)
  eigenvalues, vectors = scipy.sparse.linalg.eigsh(
      stiffness, k=count, M=mass, sigma=-1e-6, which='LM',
      v0=np.ones(len(areas)))
  order = np.argsort(eigenvalues)
  eigenvalues, vectors = eigenvalues[order], vectors[:, order]
  largest = vectors[np.argmax(np.abs(vectors), axis=0), np.arange(count)]
  vectors *= np.sign(largest)
  fields, upper = np.linalg.qr(vectors)
  fields *= np.sign(np.diag(upper))
  return {'fields': fields, 'eigenvalues': np.maximum(eigenvalues, 0.0)}


@jax.jit  # outside a jit (pictures, exports) one program, not op by op
def vertex_normals(vertices: jax.Array, triangles: jax.Array) -> jax.Array:
  """Area-weighted unit vertex normals.

  Each triangle contributes its unnormalised cross product (twice its area
  times its unit normal), so large triangles weigh more. Counter-clockwise
  triangles (seen from outside) give outward normals.

  Args:
    vertices: (N, 3) float positions.
    triangles: (F, 3) int indices.

  Returns:
    (N, 3) unit normals, same dtype as `vertices`. Isolated vertices get a
    zero vector rather than NaN.
  """
  chex.assert_rank(vertices, 2)
  chex.assert_axis_dimension(vertices, 1, 3)
  chex.assert_rank(triangles, 2)
  chex.assert_axis_dimension(triangles, 1, 3)
  v0 = vertices[triangles[:, 0]]
  v1 = vertices[triangles[:, 1]]
  v2 = vertices[triangles[:, 2]]
  face_normals = jnp.cross(v1 - v0, v2 - v0)
  summed = jnp.zeros_like(vertices)
  for k in range(3):
    summed = summed.at[triangles[:, k]].add(face_normals)
  return safe_normalize(summed)


def safe_normalize(vectors: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Unit vectors along the last axis, with a finite gradient at zero."""
  squared = jnp.sum(vectors * vectors, axis=-1, keepdims=True)
  return vectors * jax.lax.rsqrt(jnp.maximum(squared, eps))


def icosphere(subdivisions: int) -> Tuple[np.ndarray, np.ndarray]:
  """A unit sphere from a subdivided icosahedron.

  Used for lit-sphere pictures and as a test mesh with known normals.

  Args:
    subdivisions: each level splits every triangle into four.

  Returns:
    vertices: (V, 3) float64 unit vectors; triangles: (F, 3) int32,
    counter-clockwise seen from outside.
  """
  golden = (1.0 + np.sqrt(5.0)) / 2.0
  vertices = [(-1, golden, 0), (1, golden, 0), (-1, -golden, 0),
              (1, -golden, 0), (0, -1, golden), (0, 1, golden),
              (0, -1, -golden), (0, 1, -golden), (golden, 0, -1),
              (golden, 0, 1), (-golden, 0, -1), (-golden, 0, 1)]
  triangles = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11),
               (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6), (7, 1, 8),
               (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
               (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
  points = [np.asarray(v, np.float64) / np.linalg.norm(v) for v in vertices]
  for _ in range(subdivisions):
    midpoint_index = {}

    def midpoint(a, b):
      key = (min(a, b), max(a, b))
      if key not in midpoint_index:
        m = points[a] + points[b]
        points.append(m / np.linalg.norm(m))
        midpoint_index[key] = len(points) - 1
      return midpoint_index[key]

    refined = []
    for a, b, c in triangles:
      ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
      refined += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
    triangles = refined
  return np.asarray(points), np.asarray(triangles, np.int32)
