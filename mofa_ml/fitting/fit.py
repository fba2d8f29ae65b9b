"""Per-image fitting (analysis by synthesis) with the training objective.

Two phases on one face, jitted together:
  1. base: the normalised base parameters (see `layout.parameter_scaling`)
     under the stage-1 loss (landmarks, base photometric term, prior), by
     Levenberg-Marquardt (`gauss_newton`) or Adam. Levenberg-Marquardt
     solves, jointly with them, smooth corrective displacements: the lowest
     manifold harmonics of the mean shape along its normals, appended to
     the identity modes with their own prior
     (`face_model.with_smooth_displacements`), so that detail the identity
     space lacks (bumps) need not bend the identity;
  2. final: per-vertex corrective displacements along the base normals (mm)
     on top of the smooth ones, reflectance offsets and the final light, by
     Adam (decaying rates) under the stage-2 loss, whose smoothness,
     stabilization and reflectance-sparsity terms regularise them as in
     training (the correctives here are per image instead of coming from the
     learned corrective space).
Without a regressor's prediction (`initial`), the fit starts from the mean
face at the pose that best explains the landmarks
(`pose_start.landmark_pose`).
"""

import dataclasses
import functools
from typing import Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.learning import network
from mofa_ml.learning import objective
from mofa_ml.fitting import gauss_newton
from mofa_ml.fitting import pose_start
from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh


def final_phase_loss(**overrides) -> objective.LossConfig:
  """Stage 2's loss with the prior on the base coefficients at stage 1's
  strength.

  In the paper's weights, w_reg multiplies both the statistical prior and
  the corrective regularisers, and stage 2 raises it 100-fold. Fitting one
  image, that pulled the base shape towards the mean (on clean synthetic
  faces from 1.10 to 2.08 mm off the truth over the final phase): here the
  prior keeps stage 1's weight and every term that `reg` scales keeps its
  stage-2 effective weight, except the global reflectance constancy, which
  keeps its stage-1 effective weight (w_glo times stage 1's w_reg): at the
  stage-2 weight it flattened the skin's per-vertex reflectance, so that on
  the synthetic benchmark's validation split (8 faces, from the mean) the
  final level's albedo was farther from the truth than the base level's
  (0.062 vs 0.033 after a per-channel gain); at stage 1's 0.027, the
  photometric error 0.031 -> 0.018, geometry unchanged.
  """
  stage1 = objective.paper_weights('stage1')
  stage2 = objective.paper_weights('stage2')
  ratio = stage2['reg'] / stage1['reg']
  weights = dict(stage2, reg=stage1['reg'])
  for term in objective.TERMS:
    if term.scaled_by == 'reg' and term.weight not in ('rstd', 'glo'):
      weights[term.weight] = stage2[term.weight] * ratio
  weights.update({k: overrides.pop(k) for k in list(overrides)
                  if k in weights})
  return objective.LossConfig.for_stage('stage2', **weights, **overrides)


# Fitting compares only what the photo shows (depth test, footprint on the
# face); the base
# level is compared through the rendered picture's colours, so that its
# optimum on a face the model can render is that face. The final level's
# per-vertex reflectance is compared point by point: a picture would blur
# the detail its correctives are there to take. See docs/results.md.
FIT_LOSS_OPTIONS = dict(visibility='raster')


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Solvers, steps and step sizes of the two phases (hashable: static for
  jit).

  Base phase, `base_solver`:
    'gauss_newton' (default): Levenberg-Marquardt (`gauss_newton.solve`).
      From the mean face, `landmark_iterations` on landmarks and prior with
      the prior's weight times `continuation[0]`, then every base term with
      the prior relaxed over the (scale, iterations) pairs of
      `continuation[1:]`; then, also from a prediction, `base_steps`
      iterations (default 12) at the loss's own weights.
    'adam': `base_steps` Adam steps (default 200).
  With Levenberg-Marquardt, `corrective_harmonics` smooth displacement
  modes (default 20; none for Adam or `fixed_identity`) are solved with the
  base, their prior such that together they move a vertex by
  `corrective_rms_mm` RMS (`face_model.with_smooth_displacements`); their
  displacement starts the final level's geometry.
  Final phase: `final_steps` Adam steps on the correctives and the final
  light (started at the base light); the base parameters stay fixed unless
  `refit_base`.

  Adam's rates decay (cosine) from their start to `final_rate_fraction` of
  it, so its normalised steps settle instead of wandering at the optimum;
  its photometric supports (`objective.supports`) are recomputed every
  `support_every` steps and held fixed in between.
  """
  base_solver: str = 'gauss_newton'
  landmark_iterations: int = 5
  # Starting the photometric stages at 100 times the prior rather than 30
  # (validation renders with detected landmarks, docs/results.md): the pose
  # and light settle on the photo before the shape moves.
  continuation: tuple = (300.0, (100.0, 4), (30.0, 4), (10.0, 4), (3.0, 4))
  base_steps: Optional[int] = None
  irls_epsilon: float = 1e-3
  hessian_vertices: int = 1024
  final_steps: int = 60
  learning_rate: float = 0.03           # normalised parameters
  geometry_learning_rate: float = 0.05  # mm per step
  reflectance_learning_rate: float = 0.005
  final_rate_fraction: float = 0.01
  support_every: int = 25
  # Calibrated on the synthetic benchmark's validation split
  # (docs/results.md): the expression prior at 0.3 sigma (with the model's
  # own sigmas, those of its extreme blendshapes, the expression took up
  # what the shape and the out-of-space detail should explain); the shape
  # prior at 1.4 sigma (at 1 sigma the worst-fitted faces kept a fifth to a
  # half of their identity's energy, sum (alpha / sigma)^2); the
  # photometric term weighted by how well the reflectance model explains
  # each vertex (beards, make-up).
  base_loss: objective.LossConfig = objective.LossConfig.for_stage(
      'stage1', raster_correction=True, shape_prior_std=1.4,
      expression_prior_std=0.3, outlier_sigmas=1.5, **FIT_LOSS_OPTIONS)
  final_loss: objective.LossConfig = final_phase_loss(**FIT_LOSS_OPTIONS)
  refit_base: bool = False
  # Keep identity (shape and reflectance coefficients, corrective fields)
  # at `initial`; fit pose, expression and light only (video frames).
  fixed_identity: bool = False
  # Calibrated on the validation split (docs/results.md): 20 modes at 1.1
  # mm RMS (times the base loss's shape_prior_std); 30 modes took identity
  # from the base.
  corrective_harmonics: Optional[int] = None
  corrective_rms_mm: float = 1.1
  # Levenberg-Marquardt's landmark term loses weight as (1.5 px / mean
  # landmark error)^2 where that error exceeds 1.5 px (a crop of 240 px):
  # noisy landmarks no longer pull the fit far past the mean face.
  # Calibrated on validation renders with the detector's landmarks
  # (docs/results.md); 0: fixed weight.
  landmark_noise_px: float = 1.5

  def __post_init__(self):
    if self.base_solver not in BASE_STEPS:
      raise ValueError(f'base_solver is gauss_newton or adam, not '
                       f'{self.base_solver!r}')
    if self.base_solver == 'adam' and self.corrective_harmonics:
      raise ValueError('corrective_harmonics are solved by gauss_newton '
                       'only; use corrective_harmonics=0 with adam')
    if self.corrective_rms_mm <= 0:
      raise ValueError(f'corrective_rms_mm is positive, not '
                       f'{self.corrective_rms_mm}')

  @property
  def base_step_count(self) -> int:
    """`base_steps`, or the solver's default."""
    return (BASE_STEPS[self.base_solver] if self.base_steps is None else
            self.base_steps)

  @property
  def harmonic_count(self) -> int:
    """Smooth corrective modes solved with the base (0 with Adam or a
    fixed identity, which they are part of)."""
    if self.base_solver == 'adam' or self.fixed_identity:
      return 0
    return (DEFAULT_HARMONICS if self.corrective_harmonics is None else
            self.corrective_harmonics)


# Base-phase iterations at the loss's weights by default, per solver; 12
# Levenberg-Marquardt iterations rather than 8 (validation split, 24 faces,
# every nuisance): 1.53 / 1.40 -> 1.51 / 1.37 mm, ~0.2 s a face more.
BASE_STEPS = {'gauss_newton': 12, 'adam': 200}
# Smooth corrective modes of the Levenberg-Marquardt fit by default.
DEFAULT_HARMONICS = 20


class FitResult(NamedTuple):
  """A fitted face (a pytree).

  Attributes:
    params: FaceParams (no corrective coefficients: C = 0).
    geometry_offsets: (N, 3) mm.
    reflectance_offsets: (N, 3).
    start: objective terms at the initial estimate (final-level loss).
    end: objective terms at the result (final-level loss).
  """
  params: layout_lib.FaceParams
  geometry_offsets: jax.Array
  reflectance_offsets: jax.Array
  start: Dict[str, jax.Array]
  end: Dict[str, jax.Array]


def fit_layout(model: fm.FaceModel) -> layout_lib.ParameterLayout:
  """The layout fitted per image: base parameters and both lights."""
  return layout_lib.ParameterLayout.for_model(model, num_correctives=0)


def fit_face(model: fm.FaceModel, intrinsics: camera.Intrinsics,
             image: jax.Array, landmarks: jax.Array, confidence: jax.Array,
             config: FitConfig = FitConfig(),
             initial: Optional[network.Prediction] = None) -> FitResult:
  """Fits one face in a crop.

  Args:
    model: the face model.
    intrinsics: the crop's camera.
    image: (H, W, 3) float crop in [0, 1].
    landmarks: (68, 2) pixels in the crop.
    confidence: (68,) landmark confidences.
    config: steps and rates.
    initial: an unbatched regressor Prediction to start from, or None for
      the mean face.

  Returns:
    FitResult.
  """
  scaling = layout_lib.parameter_scaling(model, fit_layout(model))
  return _fit(model, scaling, intrinsics, image, landmarks, confidence,
              config, initial)


@functools.partial(jax.jit, static_argnames=('config',))
def _fit(model, scaling, intrinsics, image, landmarks, confidence, config,
         initial):
  layout = fit_layout(model)
  zeros = jnp.zeros((model.num_vertices, 3))
  if initial is None:
    rotation, translation = pose_start.landmark_pose(model, intrinsics,
                                                     landmarks, confidence)
    mean = layout.split(scaling.offset)._replace(rotation=rotation,
                                                 translation=translation)
    raw = (layout.join(mean) - scaling.offset) / scaling.scale
    geometry, reflectance = zeros, zeros
  else:
    p = initial.params
    start = layout.join(p._replace(
        correctives_geometry=jnp.zeros(0),
        correctives_reflectance=jnp.zeros(0),
        sh_final=levels.final_light(p)))
    raw = (start - scaling.offset) / scaling.scale
    geometry = initial.geometry_offsets
    reflectance = initial.reflectance_offsets
  key = jax.random.PRNGKey(0)

  def terms(params, geometry, reflectance, loss, support=None):
    return objective.face_objective(model, intrinsics, loss, params,
                                    geometry, reflectance, image, landmarks,
                                    confidence, key, support)

  free_groups = tuple(name for name in layout.offsets
                      if not (config.fixed_identity and
                              name in ('shape', 'reflectance')))

  def run(variables, steps, optimizer, loss, groups,
          geometry_of=lambda field: field):
    """Adam on the raw parameters of `groups` (static) and the corrective
    fields, the geometry offsets being `geometry_of` its field.

    The other groups enter the objective as constants, so that terms which
    depend only on them drop out of the compiled gradient (in the final
    phase the base terms: half of a step's time when they were a traced
    vector's unused columns).
    """
    raw, fields = variables[0], variables[1:]
    columns = np.concatenate([np.arange(*layout.offsets[name])
                              for name in groups])
    fixed = scaling.params(layout, raw)

    def params_of(free_raw):
      values, at = {}, 0
      for name in groups:
        start, stop = layout.offsets[name]
        value = (scaling.offset[start:stop] + scaling.scale[start:stop] *
                 free_raw[at:at + stop - start])
        values[name] = value.reshape(getattr(fixed, name).shape)
        at += stop - start
      return fixed._replace(**values)

    def objective_of(free, loss, support=None):
      return terms(params_of(free[0]), geometry_of(free[1]), free[2], loss,
                   support)

    free = (raw[columns],) + fields
    state = optimizer.init(free)

    def chunk(carry, length):
      free, state = carry
      support = objective.supports(model, intrinsics, loss,
                                   params_of(free[0]), geometry_of(free[1]),
                                   free[2], image)

      def step(carry, _):
        free, state = carry
        gradient = jax.grad(
            lambda f: objective_of(f, loss, support)['total'])(free)
        updates, state = optimizer.update(gradient, state, free)
        return (optax.apply_updates(free, updates), state), None

      return jax.lax.scan(step, (free, state), None, length=length)[0]

    every = max(1, config.support_every)
    carry = (free, state)
    if steps >= every:
      carry, _ = jax.lax.scan(lambda c, _: (chunk(c, every), None), carry,
                              None, length=steps // every)
    if steps % every:
      carry = chunk(carry, steps % every)
    free = carry[0]
    return raw.at[columns].set(free[0]), geometry_of(free[1]), free[2]

  def adam(rate, steps):
    if steps < 1 or config.final_rate_fraction >= 1.0:
      return optax.adam(rate)
    return optax.adam(optax.cosine_decay_schedule(
        rate, steps, alpha=config.final_rate_fraction))

  start_terms = terms(scaling.params(layout, raw), geometry, reflectance,
                      config.final_loss)
  base_only = lambda steps: optax.multi_transform(
      {'train': adam(config.learning_rate, steps),
       'fixed': optax.set_to_zero()}, ('train', 'fixed', 'fixed'))
  if config.base_solver == 'gauss_newton':
    count = config.harmonic_count
    joint = fm.with_smooth_displacements(model, count,
                                         config.corrective_rms_mm)
    shapes = model.num_shape
    # The joint vectors: the smooth modes' entries after the identity's.
    widen = lambda x, extra: jnp.concatenate([x[:shapes], extra, x[shapes:]])
    joint_raw = gauss_newton.solve(
        joint, intrinsics, config.base_loss, fit_layout(joint),
        layout_lib.ParameterScaling(
            widen(scaling.offset, jnp.zeros(count)),
            widen(scaling.scale, joint.shape_sigma[shapes:])),
        gauss_newton.Problem(image, landmarks, confidence),
        widen(raw, jnp.zeros(count)),
        # From a prediction the landmark-only start would only drift.
        (('landmarks', config.continuation[0]),) * (
            config.landmark_iterations * (initial is None)) +
        tuple(('all', scale) for scale, n in config.continuation[1:]
              for _ in range(n * (initial is None))) +
        (('all', 1.0),) * config.base_step_count, config.fixed_identity,
        config.irls_epsilon, config.hessian_vertices,
        config.landmark_noise_px)
    smooth = joint_raw[shapes:shapes + count] * joint.shape_sigma[shapes:]
    geometry = geometry + jnp.einsum('k,knd->nd', smooth,
                                     joint.shape_basis[shapes:])
    raw = jnp.concatenate([joint_raw[:shapes], joint_raw[shapes + count:]])
    variables = (raw, geometry, reflectance)
  else:
    variables = run((raw, geometry, reflectance), config.base_step_count,
                    base_only(config.base_step_count), config.base_loss,
                    free_groups)
  corrective = lambda rate: (optax.set_to_zero() if config.fixed_identity
                             else adam(rate, config.final_steps))
  everything = optax.multi_transform(
      {'base': adam(config.learning_rate, config.final_steps),
       'geometry': corrective(config.geometry_learning_rate),
       'reflectance': corrective(config.reflectance_learning_rate)},
      ('base', 'geometry', 'reflectance'))
  # The final light starts at the base one; the base parameters stay where
  # the base phase left them unless `refit_base` (the final terms would
  # otherwise trade base accuracy for corrective freedom).
  raw = variables[0]
  start, stop = layout.offsets['sh_final']
  base_start, base_stop = layout.offsets['sh_base']
  raw = raw.at[start:stop].set(raw[base_start:base_stop])
  final_groups = free_groups if config.refit_base else ('sh_final',)
  # The geometry correctives move each vertex along its base normal: one
  # photo constrains a displacement through the shading, while a tangential
  # one only slides the vertex to another pixel (free 3-D offsets made the
  # final level's geometry worse than the base; docs/results.md).
  base = levels.surfaces(model, scaling.params(layout, raw))[0]
  normals = mesh.vertex_normals(base.vertices, model.triangles)
  start_geometry = variables[1]
  variables = run((raw, jnp.zeros(model.num_vertices), variables[2]),
                  config.final_steps, everything, config.final_loss,
                  final_groups,
                  lambda heights: start_geometry + heights[:, None] * normals)
  raw, geometry, reflectance = variables
  params = scaling.params(layout, raw)
  return FitResult(
      params=params, geometry_offsets=geometry,
      reflectance_offsets=reflectance, start=start_terms,
      end=terms(params, geometry, reflectance, config.final_loss))
