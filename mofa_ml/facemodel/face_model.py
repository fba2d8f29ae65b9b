"""The base-level 3D Morphable Model type and the face-model choice.

    v_b = mean_shape + sum_k alpha_shape_k shape_basis_k
                     + sum_k alpha_expr_k expression_basis_k       (mm)
    r_b = mean_reflectance + sum_k beta_k reflectance_basis_k     (RGB, [0, 1])

Bases are unit-norm in R^3N (orthonormal for the bundled model) and
coefficients carry the model's own scale: alpha_k ~ N(0, sigma_k^2), which is
what the statistical regulariser sum (alpha / sigma)^2 assumes.

Coordinates: model space is y up, z out of the face towards the viewer, x to
the subject's left, millimetres, origin near the head centre.

`with_smooth_displacements` appends smooth displacement modes (the mean
shape's manifold harmonics along its normals) to the identity modes: the
fit solves its smooth correctives with the base that way.

Models are named by a spec string (`--face_model` of every command):
'ict' is the bundled ICT FaceKit front face (`ict`), 'bfm09:PATH' a user's
Basel Face Model 2009 file (`bfm09`).
"""

import hashlib

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.facemodel import bfm09
from mofa_ml.facemodel import ict
from mofa_ml.rendering import mesh

DEFAULT_SPEC = 'ict'


@flax.struct.dataclass
class FaceModel:
  """An immutable base-level face model; a pytree of arrays.

  Attributes (N vertices, F triangles):
    mean_shape: (N, 3) float32, mm.
    shape_basis: (ms, N, 3) float32, unit-norm identity modes.
    shape_sigma: (ms,) float32, std of each identity coefficient.
    expression_basis: (me, N, 3) float32, unit-norm expression modes.
    expression_sigma: (me,) float32.
    mean_reflectance: (N, 3) float32, RGB in [0, 1].
    reflectance_basis: (mr, N, 3) float32, unit-norm reflectance modes.
    reflectance_sigma: (mr,) float32.
    triangles: (F, 3) int32, counter-clockwise seen from outside.
    neighbors: (N, K) int32 1-ring, padded with the vertex itself.
    neighbor_mask: (N, K) bool.
    landmark_vertices: (68,) int32, vertex of each iBUG landmark (for the 17
      outline landmarks, the vertex on the frontal outline).
    contour_candidates: (17, Kc) int32 sliding candidates per outline
      landmark, padded with its frontal vertex.
    contour_mask: (17, Kc) bool.
    skin_vertices: (M,) int32, the skin mask of the global reflectance
      constancy term (see `skin_mask` for the (N,) bool form).
    surface_harmonics: (N, H) float32, the lowest manifold harmonics of the
      mean shape (orthonormal columns, constant first): smooth scalar fields
      on the surface (the fit's corrective displacement modes).
    name: static identifier, part of checkpoint compatibility checks.
  """
  mean_shape: jax.Array
  shape_basis: jax.Array
  shape_sigma: jax.Array
  expression_basis: jax.Array
  expression_sigma: jax.Array
  mean_reflectance: jax.Array
  reflectance_basis: jax.Array
  reflectance_sigma: jax.Array
  triangles: jax.Array
  neighbors: jax.Array
  neighbor_mask: jax.Array
  landmark_vertices: jax.Array
  contour_candidates: jax.Array
  contour_mask: jax.Array
  skin_vertices: jax.Array
  surface_harmonics: jax.Array
  name: str = flax.struct.field(pytree_node=False, default='unnamed')

  @property
  def num_vertices(self) -> int:
    return self.mean_shape.shape[0]

  @property
  def num_shape(self) -> int:
    return self.shape_basis.shape[0]

  @property
  def num_expression(self) -> int:
    return self.expression_basis.shape[0]

  @property
  def num_reflectance(self) -> int:
    return self.reflectance_basis.shape[0]

  @property
  def skin_mask(self) -> jax.Array:
    """(N,) bool, True on the skin vertices."""
    return jnp.zeros(self.num_vertices, bool).at[self.skin_vertices].set(True)

  def geometry(self, shape: jax.Array, expression: jax.Array) -> jax.Array:
    """Base-level vertices.

    Args:
      shape: (..., ms) identity coefficients.
      expression: (..., me) expression coefficients.

    Returns:
      (..., N, 3) positions, mm, model space.
    """
    chex.assert_axis_dimension(shape, -1, self.num_shape)
    chex.assert_axis_dimension(expression, -1, self.num_expression)
    return (self.mean_shape +
            jnp.einsum('...k,knd->...nd', shape, self.shape_basis) +
            jnp.einsum('...k,knd->...nd', expression, self.expression_basis))

  def reflectance(self, coefficients: jax.Array) -> jax.Array:
    """Base-level per-vertex albedo (..., N, 3) from (..., mr) coefficients."""
    chex.assert_axis_dimension(coefficients, -1, self.num_reflectance)
    return self.mean_reflectance + jnp.einsum(
        '...k,knd->...nd', coefficients, self.reflectance_basis)

  def fingerprint(self) -> str:
    """Short hash of the model's sizes and mean shape (checkpoint checks)."""
    digest = hashlib.sha256()
    digest.update(self.name.encode())
    digest.update(np.asarray([self.num_vertices, self.num_shape,
                              self.num_expression, self.num_reflectance]))
    digest.update(np.asarray(self.mean_shape, np.float32).tobytes())
    return digest.hexdigest()[:16]


def with_smooth_displacements(model: FaceModel, count: int,
                              rms_mm: float) -> FaceModel:
  """`model` with `count` smooth displacement modes after its identity modes.

  Mode k moves every vertex along the mean shape's normal by the k-th
  manifold harmonic (`model.surface_harmonics`), unit-norm in R^3N like
  the identity modes; every mode's sigma is rms_mm sqrt(N / count), so that
  together they displace a vertex by `rms_mm` RMS under the prior.

  Raises:
    ValueError: the model has fewer than `count` harmonics.
  """
  available = model.surface_harmonics.shape[1]
  if count > available:
    raise ValueError(f'{count} corrective harmonics asked for; the face '
                     f'model has {available}')
  if count == 0:
    return model
  normals = mesh.vertex_normals(model.mean_shape, model.triangles)
  modes = model.surface_harmonics[:, :count].T[:, :, None] * normals
  sigma = jnp.full(count, rms_mm * np.sqrt(model.num_vertices / count),
                   jnp.float32)
  return model.replace(
      shape_basis=jnp.concatenate([model.shape_basis, modes]),
      shape_sigma=jnp.concatenate([model.shape_sigma, sigma]))


def load_face_model(spec: str = DEFAULT_SPEC) -> FaceModel:
  """Loads the face model a spec names.

  Args:
    spec: 'ict' (the bundled model) or 'bfm09:PATH' (a user's
      `BFM_model_front.mat`).

  Raises:
    ValueError: an unknown spec or an unreadable model file (named).
    FileNotFoundError: the model file does not exist.
  """
  kind, _, path = (spec or DEFAULT_SPEC).partition(':')
  if kind == 'ict' and not path:
    return FaceModel(**ict.load())
  if kind == 'bfm09' and path:
    return FaceModel(**bfm09.load(path))
  raise ValueError(f"unknown face model {spec!r}: use 'ict' or "
                   "'bfm09:PATH/TO/BFM_model_front.mat'")
