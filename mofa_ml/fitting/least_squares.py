"""The base objective of one face as weighted least squares.

The stage-1 objective (landmarks, base photometric term, prior) as a sum of
squares: the landmark term already is one; the l2,1 photometric term
(1/N) sum_i ||d_i|| becomes sum_i w_i ||d_i||^2, w_i = w_photo / (2 N
max(||d_i||, eps)) at the current estimate (IRLS: same value and gradient
there); the prior is sum raw^2 in `layout.parameter_scaling`'s units.

The Jacobian is built from its structure, not by `jax.jacfwd` of the whole
rendering (one direction per coefficient through the rasterizer): a
vertex's residual depends on the parameters through its own position,
albedo and normal, the pose and the light, so 42 forward-mode directions
give every vertex's 3x3 derivatives, which the basis rows carry to the ~250
coefficients; the normals' derivatives along each mode
(`normal_derivatives`) carry the shading's dependence on the shape, which
identifies it under a directional light.
`gauss_newton.solve` iterates on these rows.
"""

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.learning import objective
from mofa_ml.rendering import camera
from mofa_ml.rendering import formation
from mofa_ml.rendering import mesh
from mofa_ml.rendering import shading

# Groups of the base parameters in layout order; their Jacobian columns.
BASE_GROUPS = ('shape', 'expression', 'reflectance', 'rotation',
               'translation', 'sh_base')
# The groups the landmarks depend on (the landmark stage's).
GEOMETRY_GROUPS = ('shape', 'expression', 'rotation', 'translation')


class DenseTargets(NamedTuple):
  """Dense landmarks of one face and the mesh points they mark (a pytree).

  Attributes:
    points: (P, 2) detected positions, pixels in the crop.
    weight: (P,) per-point weight (0: not used); the term is normalised by
      the number of points used, as the 68-point term by its count.
    vertices: (P, 3) int32 the corners of each point's mesh triangle.
    barycentrics: (P, 3) float32 its barycentric coordinates there.
  """
  points: jax.Array
  weight: jax.Array
  vertices: jax.Array
  barycentrics: jax.Array


class Problem(NamedTuple):
  """One face's data (a pytree): image (H, W, 3) photo crop in [0, 1],
  landmarks (68, 2) pixels, confidence (68,), and optional dense
  landmarks."""
  image: jax.Array
  landmarks: jax.Array
  confidence: jax.Array
  dense: Optional[DenseTargets] = None


def dense_points(vertices: jax.Array, dense: DenseTargets) -> jax.Array:
  """(P, 3) the dense landmarks' points on a mesh with (N, 3) vertices."""
  return jnp.einsum('pj,pjd->pd', dense.barycentrics,
                    vertices[dense.vertices])


def dense_residual(model: fm.FaceModel, intrinsics: camera.Intrinsics,
                   params: layout_lib.FaceParams,
                   dense: DenseTargets) -> jax.Array:
  """(P, 2) projected - detected dense landmarks of the base level,
  pixels."""
  vertices = model.geometry(params.shape, params.expression)
  points = camera.rigid_transform(dense_points(vertices, dense),
                                  camera.pose_rotation(params.rotation),
                                  params.translation)
  return camera.project(points, intrinsics) - dense.points


def dense_row_weights(weight: jax.Array, unit_px: float) -> jax.Array:
  """(P,) each dense residual's weight in the objective: `weight` over the
  number of points used and the landmark unit squared (as the 68-point
  term's confidences)."""
  count = jnp.maximum(jnp.sum(weight > 0), 1)
  return weight / (count * unit_px**2)


def dense_term(residual: jax.Array, weight: jax.Array,
               unit_px: float) -> jax.Array:
  """() sum_i w_i ||r_i||^2 / (count unit^2): the dense landmark term of
  (P, 2) residuals under (P,) weights."""
  return jnp.sum(dense_row_weights(weight, unit_px) *
                 jnp.sum(residual**2, -1))


def free_columns(layout: layout_lib.ParameterLayout,
                 groups: Sequence[str]) -> np.ndarray:
  """Indices into the layout vector of the parameters in `groups`."""
  return np.concatenate([np.arange(*layout.offsets[name])
                         for name in BASE_GROUPS if name in groups])


def _local_residuals(image, intrinsics, vertices, albedo, normals, rotation,
                     translation, sh, correction):
  """Photometric residuals (N, 3) = photo - model colour from each vertex's
  own position, albedo and (model-space) normal."""
  matrix = camera.pose_rotation(rotation)
  points = camera.rigid_transform(vertices, matrix, translation)
  observed, _ = formation.sample_image(image, camera.project(points,
                                                             intrinsics))
  colours = shading.shade(albedo, normals @ matrix.T, sh)
  return observed - colours - correction


def _with_coefficients(local, bases, scale, layout, columns):
  """Per-row Jacobian w.r.t. the raw parameters from local derivatives.

  Only the groups with a free column are formed: with a fixed identity the
  shape and reflectance blocks would be most of the work, then dropped.

  Args:
    local: dict of per-row derivatives: 'vertex' (N, R, 3) w.r.t. the row's
      vertex position, optional 'albedo' (N, R, 3) and 'normal' (N, R, 3),
      'rotation', 'translation' (N, R, 3), optional 'sh' (N, R, 27).
    bases: {'shape', 'expression', 'reflectance'}: (K, N, 3) the model's
      bases at the rows' vertices (reflectance only with 'albedo'); with
      'normal', also '<group>_normals' (K, N, 3): the rows' normal
      derivatives along each free geometry group's modes.
    scale: (size,) the raw -> params scale.
    layout: of the raw vector.
    columns: the free columns (static, ascending).

  Returns:
    (N * R, len(columns)).
  """
  rows = local['vertex'].shape[:2]
  zeros = lambda n: jnp.zeros(rows + (n,), local['vertex'].dtype)

  def geometry(name):
    block = jnp.einsum('nrj,knj->nrk', local['vertex'], bases[name])
    if 'normal' in local:
      block = block + jnp.einsum('nrj,knj->nrk', local['normal'],
                                 bases[f'{name}_normals'])
    return block

  blocks = {
      'shape': lambda: geometry('shape'),
      'expression': lambda: geometry('expression'),
      'reflectance': lambda: (
          jnp.einsum('nrj,knj->nrk', local['albedo'], bases['reflectance'])
          if 'albedo' in local else zeros(layout.num_reflectance)),
      'rotation': lambda: local['rotation'],
      'translation': lambda: local['translation'],
      'sh_base': lambda: local['sh'] if 'sh' in local else zeros(
          layout_lib.NUM_SH),
  }
  spans = {name: np.arange(*layout.offsets[name]) for name in BASE_GROUPS}
  kept = [name for name in BASE_GROUPS if np.isin(spans[name], columns).any()]
  positions = np.concatenate([spans[name] for name in kept])
  full = jnp.concatenate([blocks[name]() for name in kept], -1)
  full = (full * scale[positions]).reshape(-1, len(positions))
  return full[:, np.searchsorted(positions, columns)]


def normal_derivatives(model: fm.FaceModel, vertices: jax.Array,
                       groups: Sequence[str] = ('shape', 'expression')):
  """{group: (K, N, 3)} the derivative of every unit vertex normal along
  each mode of `groups` ('shape', 'expression') at `vertices` (N, 3), mm
  (one linearisation of `mesh.vertex_normals`, pushed along the modes in
  batches that bound the per-triangle temporaries)."""
  _, push = jax.linearize(lambda v: mesh.vertex_normals(v, model.triangles),
                          vertices)
  return {name: jax.lax.map(push, getattr(model, f'{name}_basis'),
                            batch_size=16)
          for name in groups}


class Rows(NamedTuple):
  """Weighted residual rows of the base objective and their Jacobian.

  Attributes:
    photo_vertices: (S,) the sampled vertices of the photometric rows.
    photo_residual: (S, 3) photo - picture-corrected model colour.
    photo_jacobian: (3 S, P) d photo_residual / d raw (free columns).
    photo_weight: (S,) IRLS weights times the support's weights (0 for
      unused samples), scaled up from the sample to every visible vertex.
    landmark_residual: (68, 2) projected - detected, pixels.
    landmark_jacobian: (136, P).
    landmark_weight: (68,) confidence / (count unit^2).
    dense_residual: (P, 2) projected - detected dense landmarks, pixels
      (P = 0 without them).
    dense_jacobian: (2 P, P_free).
    dense_weight: (P,) `dense_row_weights`.
  """
  photo_vertices: jax.Array
  photo_residual: jax.Array
  photo_jacobian: jax.Array
  photo_weight: jax.Array
  landmark_residual: jax.Array
  landmark_jacobian: jax.Array
  landmark_weight: jax.Array
  dense_residual: jax.Array
  dense_jacobian: jax.Array
  dense_weight: jax.Array


def _projection_rows(intrinsics, layout, scaling, columns, params,
                     positions, bases, targets):
  """Residuals (R, 2) of points at `positions` (R, 3) (model space, mm)
  projected minus `targets` (R, 2), and their Jacobian (2 R, P) through
  `bases` {'shape', 'expression'}: (K, R, 3) the modes at the points."""

  def project(delta_vertex, rotation, translation):
    return camera.project(camera.rigid_transform(
        positions + delta_vertex, camera.pose_rotation(rotation),
        translation), intrinsics) - targets

  local = (jnp.zeros(3), params.rotation, params.translation)
  derivatives = jax.jacfwd(project, argnums=(0, 1, 2))(*local)
  jacobian = _with_coefficients(
      {'vertex': derivatives[0], 'rotation': derivatives[1],
       'translation': derivatives[2]}, bases, scaling.scale, layout, columns)
  return project(*local), jacobian


def rows(model: fm.FaceModel, intrinsics: camera.Intrinsics,
         loss: objective.LossConfig, layout: layout_lib.ParameterLayout,
         scaling: layout_lib.ParameterScaling, problem: Problem,
         raw: jax.Array, support, columns: np.ndarray, irls_epsilon: float,
         sample_size: int = 1024, mode_normals=None) -> Rows:
  """The base objective's residual rows at `raw` and their Jacobian.

  The photometric rows come from `sample_size` visible vertices drawn in a
  fixed random order, their weights scaled up to all visible ones: the
  normal matrix only shapes the step (the gradient is exact), and a sixth
  of the vertices costs a sixth of the time.

  Args:
    model, intrinsics, loss: the objective (stage-1 weights and units).
    layout, scaling: of the raw vector (`fit.fit_layout`).
    problem: the face's photo and landmarks.
    raw: (size,) normalised parameters.
    support: the (base, final) photometric supports at `raw`.
    columns: free columns (static).
    irls_epsilon: floor of ||d_i|| in the IRLS weights.
    sample_size: photometric vertices (static).
    mode_normals: `normal_derivatives` at a recent estimate, of at least
      the geometry groups with free columns, or None to compute them all at
      `raw`.
  """
  params = scaling.params(layout, raw)
  surface, _ = levels.surfaces(model, params)
  points = camera.rigid_transform(surface.vertices,
                                  camera.pose_rotation(params.rotation),
                                  params.translation)
  _, inside = formation.sample_image(problem.image,
                                     camera.project(points, intrinsics))
  visible = support[0].visible * inside
  order = np.random.default_rng(0).permutation(model.num_vertices)
  chosen = jnp.asarray(order)[jnp.nonzero(visible[order] > 0,
                                          size=sample_size)[0]]
  count = jnp.sum(visible > 0)
  normals = mesh.vertex_normals(surface.vertices, model.triangles)[chosen]
  if mode_normals is None:
    mode_normals = normal_derivatives(model, surface.vertices)
  mode_normals = {name: value[:, chosen]
                  for name, value in mode_normals.items()}

  # A shift shared by all vertices is, for each vertex's residual, a shift
  # of its own position (albedo, normal): one forward pass per direction
  # gives every vertex's derivative.
  def photo(delta_vertex, delta_albedo, delta_normal, rotation, translation,
            sh):
    return _local_residuals(
        problem.image, intrinsics, surface.vertices[chosen] + delta_vertex,
        surface.reflectance[chosen] + delta_albedo, normals + delta_normal,
        rotation, translation, sh, support[0].correction[chosen])

  local = (jnp.zeros(3), jnp.zeros(3), jnp.zeros(3), params.rotation,
           params.translation, params.sh_base)
  photo_residual = photo(*local)
  derivatives = jax.jacfwd(photo, argnums=tuple(range(6)))(*local)
  distance = jnp.sqrt(jnp.sum(photo_residual**2, -1))
  used = jnp.arange(sample_size) < count
  photo_weight = used * visible[chosen] * loss.weight('photo') / (
      2.0 * model.num_vertices * jnp.maximum(distance, irls_epsilon)) * (
          count / jnp.maximum(jnp.minimum(count, sample_size), 1))
  photo_jacobian = _with_coefficients(
      {'vertex': derivatives[0], 'albedo': derivatives[1],
       'normal': derivatives[2], 'rotation': derivatives[3],
       'translation': derivatives[4],
       'sh': derivatives[5].reshape(photo_residual.shape + (-1,))},
      dict({name: getattr(model, f'{name}_basis')[:, chosen]
            for name in ('shape', 'expression', 'reflectance')},
           **{f'{name}_normals': value
              for name, value in mode_normals.items()}),
      scaling.scale, layout, columns)

  indices = levels.landmark_vertex_indices(model, points, problem.landmarks,
                                           intrinsics)
  landmark_count = jnp.maximum(jnp.sum(problem.confidence > 0), 1)
  landmark_residual, landmark_jacobian = _projection_rows(
      intrinsics, layout, scaling, columns, params,
      surface.vertices[indices],
      {'shape': model.shape_basis[:, indices],
       'expression': model.expression_basis[:, indices]},
      problem.landmarks)
  dense = problem.dense
  if dense is None:
    dense_rows = (jnp.zeros((0, 2)), jnp.zeros((0, len(columns))),
                  jnp.zeros(0))
  else:
    at_points = jax.vmap(lambda basis: dense_points(basis, dense))
    dense_rows = _projection_rows(
        intrinsics, layout, scaling, columns, params,
        dense_points(surface.vertices, dense),
        {'shape': at_points(model.shape_basis),
         'expression': at_points(model.expression_basis)},
        dense.points) + (dense_row_weights(dense.weight,
                                           loss.landmark_unit_px),)
  return Rows(chosen, photo_residual, photo_jacobian, photo_weight,
              landmark_residual, landmark_jacobian,
              problem.confidence / (landmark_count *
                                    loss.landmark_unit_px**2), *dense_rows)


def normal_matrix(rows: Rows, prior: jax.Array, photometric: bool):
  """(P, P) J^T W J + diag(prior): Gauss-Newton's half Hessian.

  Args:
    rows: at the current estimate.
    prior: (P,) the prior's weights of the free columns.
    photometric: include the photometric rows (static).
  """
  normal = jnp.diag(prior)
  for jacobian, weight in ((rows.landmark_jacobian, rows.landmark_weight),
                           (rows.dense_jacobian, rows.dense_weight)):
    weighted = jacobian * jnp.sqrt(jnp.repeat(weight, 2))[:, None]
    normal = normal + weighted.T @ weighted
  if photometric:
    weighted = rows.photo_jacobian * jnp.sqrt(
        jnp.repeat(rows.photo_weight, 3))[:, None]
    normal = normal + weighted.T @ weighted
  return normal


def prior_weights(layout: layout_lib.ParameterLayout,
                  loss: objective.LossConfig) -> np.ndarray:
  """(size,) the prior's weight on each raw parameter squared (0 for pose
  and light)."""
  weights = np.zeros(layout.size, np.float32)
  reg = loss.weight('reg')
  for name, value in (('shape', reg / loss.shape_prior_std**2),
                      ('expression', reg / loss.expression_prior_std**2),
                      ('reflectance', reg * loss.weight('rstd'))):
    weights[slice(*layout.offsets[name])] = value
  return weights

