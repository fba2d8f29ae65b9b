"""Levenberg-Marquardt on the base parameters of one face.

It minimises the stage-1 objective written as weighted least squares
(`least_squares`). Each iteration recomputes the sliding jaw contour and,
once the photometric term is on, its support (`objective.supports`), IRLS
weights and the landmark term's noise weight
(`losses.landmark_noise_weight`), then tries several damping values at
once, keeping the step that lowers the exact objective most. The
iterations follow a schedule of `ContinuationStage`s: which terms are on
and how much stronger than the loss's own the prior is.
"""

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.fitting import appearance_prior
from mofa_ml.fitting import least_squares
from mofa_ml.learning import losses
from mofa_ml.learning import objective
from mofa_ml.learning import photometric_support
from mofa_ml.rendering import camera

# Damping multipliers tried in parallel at every iteration, a decade apart:
# one iteration covers what a serial Levenberg-Marquardt would try over
# several.
DAMPING_TRIALS = (0.1, 1.0, 10.0, 100.0)
# The first iteration's damping (relative to the normal matrix's diagonal):
# close to a Gauss-Newton step, the trials widen it if that fails.
INITIAL_DAMPING = 1e-3
# After an accepted step the damping is the accepted trial's divided by
# this: while steps succeed, the next iteration tries bolder ones.
DAMPING_DECREASE = 3.0
# After no trial lowers the objective the damping grows by this, so that
# the next iteration's trials start at the largest one just refused and
# reach three decades further.
DAMPING_INCREASE = 1000.0
# Bounds of the damping: after long runs of accepted or refused steps it
# stays finite in float32 and the damped matrix solvable.
DAMPING_RANGE = (1e-7, 1e7)
# Added to the normal matrix's diagonal, which scales the damping, so that
# a column without curvature (a parameter no row of the stage sees) is
# damped too and the damped matrix stays invertible.
DIAGONAL_FLOOR = 1e-6
# Iterations between recomputations of the normals' mode derivatives (half
# of an iteration's time; they only shape the step, the gradient is exact).
NORMALS_EVERY = 4
# A stage's terms: 'landmarks' (landmarks and prior; pose, shape and
# expression free) or 'all' (every base term and parameter).
STAGE_TERMS = ('landmarks', 'all')


@dataclasses.dataclass(frozen=True)
class ContinuationStage:
  """`iterations` Levenberg-Marquardt iterations alike (hashable: part of
  a static jit argument).

  Attributes:
    terms: one of `STAGE_TERMS`.
    prior_scale: the prior's weight times this; a strong prior first keeps
      the early steps near the mean (continuation).
    iterations: how many (0: the stage is skipped).
  """
  terms: str
  prior_scale: float
  iterations: int = 1

  def __post_init__(self):
    if self.terms not in STAGE_TERMS:
      raise ValueError(f'stage terms are landmarks or all, not '
                       f'{self.terms!r}')
    if self.iterations < 0:
      raise ValueError(f'stage iterations are 0 or more, not '
                       f'{self.iterations}')


def solve(model: fm.FaceModel, intrinsics: camera.Intrinsics,
          problem: least_squares.Problem, raw: jax.Array, *,
          loss: objective.LossConfig, layout: layout_lib.ParameterLayout,
          scaling: layout_lib.ParameterScaling,
          schedule: Sequence[ContinuationStage],
          fixed_identity: bool = False, irls_epsilon: float = 1e-3,
          sample_size: int = 1024,
          landmark_noise_px: float = 0.0,
          light_colour_prior: float = 0.0,
          reflectance_bound: float = 0.0) -> jax.Array:
  """Levenberg-Marquardt iterations on the base parameters (jit-able).

  Args:
    model, intrinsics: the face model and the crop's camera.
    problem: the face's data.
    raw: (size,) start, normalised.
    loss: the objective (stage-1 weights; its visibility and correction
      options apply).
    layout, scaling: of the raw vector.
    schedule: the iterations, stage after stage.
    fixed_identity: keep shape and reflectance at `raw`.
    irls_epsilon: floor of a residual's norm in the IRLS weights.
    sample_size: photometric vertices sampled for the normal matrix
      (`least_squares.rows`).
    landmark_noise_px: the photometric stages' `losses.landmark_noise_weight`
      (0: the landmark term keeps its weight).
    light_colour_prior, reflectance_bound: weights of the appearance priors
      (`appearance_prior`) on the base light and reflectance.

  Returns:
    (size,) the fitted raw parameters.
  """
  identity = ('shape', 'reflectance') if fixed_identity else ()
  # The normals' derivatives along the free geometry modes only.
  normal_derivatives = functools.partial(
      least_squares.normal_derivatives,
      groups=tuple(g for g in ('shape', 'expression') if g not in identity))
  zeros = jnp.zeros((model.num_vertices, 3))
  key = jax.random.PRNGKey(0)
  prior = jnp.asarray(least_squares.prior_weights(layout, loss))

  def light_colour(raw):
    return light_colour_prior * appearance_prior.light_colour_energy(
        scaling.params(layout, raw).sh_base)

  def appearance(raw):
    energy = light_colour(raw)
    if reflectance_bound:
      energy += reflectance_bound * appearance_prior.reflectance_bound_energy(
          model.reflectance(scaling.params(layout, raw).reflectance))
    return energy

  # The light's prior is quadratic: its half Hessian is exact and constant.
  light_hessian = 0.5 * jax.hessian(light_colour)(jnp.zeros_like(raw))
  reflectance_columns = np.arange(*layout.offsets['reflectance'])

  def bound_hessian(raw, rows, columns):
    """The reflectance bound's half Gauss-Newton Hessian on the free
    columns, from the photometric rows' sampled vertices (the gradient is
    exact; this only shapes the step)."""
    free = np.flatnonzero(np.isin(columns, reflectance_columns))
    if not reflectance_bound or not free.size:
      return 0.0
    index = columns[free] - reflectance_columns[0]
    albedo = model.reflectance(
        scaling.params(layout, raw).reflectance)[rows.photo_vertices]
    outside = ((albedo > 1.0) | (albedo < 0.0)) * (
        rows.photo_weight > 0)[:, None]
    basis = (model.reflectance_basis[index][:, rows.photo_vertices] *
             scaling.scale[columns[free]][:, None, None])
    block = reflectance_bound / jnp.maximum(
        jnp.sum(rows.photo_weight > 0), 1) * jnp.einsum(
            'ksc,sc,lsc->kl', basis, outside, basis)
    return jnp.zeros((len(columns),) * 2).at[np.ix_(free, free)].set(block)

  def cost(raw, support, prior_scale, confidence, dense_weight):
    """The exact objective under a fixed support (which compares no colours
    in the landmark stage), the prior times `prior_scale`, plus the dense
    landmarks' term under `dense_weight`."""
    params = scaling.params(layout, raw)
    terms = objective.face_objective(
        model, intrinsics, loss, params, zeros, zeros, problem.image,
        problem.landmarks, confidence, key, support)
    if problem.dense is not None:
      terms['total'] += least_squares.dense_term(
          least_squares.dense_residual(model, intrinsics, params,
                                       problem.dense),
          dense_weight, loss.landmark_unit_px)
    # The objective's prior terms equal sum prior * raw^2 (normalised units).
    return (terms['total'] + (prior_scale - 1.0) * jnp.sum(prior * raw**2) +
            appearance(raw))

  def geometry(raw):
    return levels.surfaces(model, scaling.params(layout, raw))[0].vertices

  def iteration(carry, scanned, use_photo, groups):
    raw, damping, mode_normals = carry
    prior_scale, refresh = scanned
    columns = least_squares.free_columns(
        layout, [g for g in groups if g not in identity])
    if use_photo:
      support = objective.supports(
          model, intrinsics, loss, scaling.params(layout, raw), zeros, zeros,
          problem.image)
      mode_normals = jax.lax.cond(
          refresh,
          lambda: normal_derivatives(model, geometry(raw)),
          lambda: mode_normals)
    else:  # The landmark stage: no vertex compared, nothing rasterized.
      support = (photometric_support.Support(zeros[:, 0], zeros),) * 2
    residuals = least_squares.rows(
        model, intrinsics, loss, layout, scaling, problem, raw, support,
        columns, irls_epsilon, sample_size, mode_normals)
    # Each landmark term's noise weight (1 in the landmark stage).
    weight = losses.landmark_noise_weight(
        residuals.landmark_residual, problem.confidence,
        landmark_noise_px * use_photo)
    confidence = problem.confidence * weight
    dense_weight, dense_noise = None, 1.0
    if problem.dense is not None:
      dense_noise = losses.landmark_noise_weight(
          residuals.dense_residual, problem.dense.weight,
          landmark_noise_px * use_photo)
      dense_weight = problem.dense.weight * dense_noise
    value, gradient = jax.value_and_grad(cost)(raw, support, prior_scale,
                                               confidence, dense_weight)
    # Half the gradient: the normal matrix approximates half the Hessian.
    gradient = 0.5 * gradient[columns]
    normal = least_squares.normal_matrix(
        residuals._replace(
            landmark_weight=residuals.landmark_weight * weight,
            dense_weight=residuals.dense_weight * dense_noise),
        prior_scale * prior[columns], use_photo) + light_hessian[
            np.ix_(columns, columns)] + bound_hessian(raw, residuals, columns)
    diagonal = jnp.diag(normal) + DIAGONAL_FLOOR

    def candidate(factor):
      step = jnp.linalg.solve(normal + damping * factor * jnp.diag(diagonal),
                              -gradient)
      moved = raw.at[columns].add(step)
      value = cost(moved, support, prior_scale, confidence, dense_weight)
      return moved, jnp.where(jnp.isfinite(value), value, jnp.inf)

    factors = jnp.asarray(DAMPING_TRIALS)
    moved, values = jax.vmap(candidate)(factors)
    best = jnp.argmin(values)
    better = values[best] < value
    raw = jnp.where(better, moved[best], raw)
    damping = jnp.where(better, damping * factors[best] / DAMPING_DECREASE,
                        damping * DAMPING_INCREASE)
    return raw, jnp.clip(damping, *DAMPING_RANGE), mode_normals

  # One compiled iteration per run of a stage, its prior scales scanned over.
  carry = (raw, jnp.float32(INITIAL_DAMPING), jax.tree_util.tree_map(
      lambda x: jnp.zeros(x.shape, x.dtype),
      jax.eval_shape(normal_derivatives, model, zeros)))
  for stage, prior_scales in _runs(schedule):
    groups = (least_squares.GEOMETRY_GROUPS if stage == 'landmarks' else
              least_squares.BASE_GROUPS)
    refresh = np.arange(len(prior_scales)) % NORMALS_EVERY == 0
    carry, _ = jax.lax.scan(
        lambda c, x, s=stage, g=groups: (
            iteration(c, x, s == 'all', g), None),
        carry, (jnp.asarray(prior_scales, jnp.float32), jnp.asarray(refresh)))
  return carry[0]


def _runs(schedule: Sequence[ContinuationStage]):
  """Consecutive stages with the same terms as one run (one compiled
  iteration, scanned over) of per-iteration prior scales:
  (landmarks 3 x2, landmarks 2 x1, all 1 x1) ->
  [('landmarks', (3, 3, 2)), ('all', (1,))]."""
  runs = []
  for stage in schedule:
    scales = (stage.prior_scale,) * stage.iterations
    if not scales:
      continue
    if runs and runs[-1][0] == stage.terms:
      runs[-1] = (stage.terms, runs[-1][1] + scales)
    else:
      runs.append((stage.terms, scales))
  return runs
