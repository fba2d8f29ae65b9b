"""Per-image fitting (analysis by synthesis) with the training objective.

A start and two phases on one face, jitted together (and the traced
program kept on disk, `compilation_cache.call_exported`):
  0. start (`_start`): the mean face at the pose that best explains the
     landmarks (`pose_start.landmark_pose`), or a regressor's prediction
     (`initial`);
  1. base (`_levenberg_marquardt_base` or `_adam_base`): the normalised
     base parameters (see `layout.parameter_scaling`) under the stage-1
     loss (landmarks, base photometric term, prior), by
     Levenberg-Marquardt (`gauss_newton`) or Adam (`adam_phase`).
     Levenberg-Marquardt solves, jointly with them, smooth corrective
     displacements: the lowest manifold harmonics of the mean shape along
     its normals, appended to the identity modes with their own prior
     (`face_model.with_smooth_displacements`), so that detail the identity
     space lacks (bumps) need not bend the identity;
  2. final (`_final_phase`): per-vertex corrective displacements along the
     base normals (mm) on top of the smooth ones, reflectance offsets and
     the final light, by Adam (decaying rates) under the stage-2 loss,
     whose smoothness, stabilization and reflectance-sparsity terms
     regularise them as in training (the correctives here are per image
     instead of coming from the learned corrective space).
"""

import dataclasses
import functools
from typing import Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from mofa_ml import compilation_cache
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.fitting import adam_phase
from mofa_ml.fitting import gauss_newton
from mofa_ml.fitting import least_squares
from mofa_ml.fitting import pose_start
from mofa_ml.learning import network
from mofa_ml.learning import objective
from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh

# The Levenberg-Marquardt schedule's stages, for `FitConfig.continuation`.
ContinuationStage = gauss_newton.ContinuationStage


def final_phase_loss(**overrides) -> objective.LossConfig:
  """Stage 2's loss with the base coefficients' prior at stage 1's strength.

  In the paper's weights, w_reg multiplies both the statistical prior and
  the corrective regularisers, and stage 2 raises it 100-fold. Fitting one
  image, that pulls the base shape towards the mean over the final phase:
  here the prior keeps stage 1's weight and every term that `reg` scales
  keeps its stage-2 effective weight, except the global reflectance
  constancy, which keeps its stage-1 effective weight (w_glo times stage
  1's w_reg): at the stage-2 weight it flattens the skin's per-vertex
  reflectance until the final level's albedo is farther from the truth
  than the base level's (chosen on the synthetic benchmark's validation
  split).
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
# face); the base level through the rendered picture's colours, so that its
# optimum on a face the model can render is that face; the final level's
# reflectance point by point (a picture would blur the correctives' detail).
FIT_LOSS_OPTIONS = dict(visibility='raster')


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Solvers, steps and step sizes of the two phases (hashable: static for
  jit).

  Base phase, `base_solver`:
    'gauss_newton' (default): Levenberg-Marquardt (`gauss_newton.solve`).
      From the mean face, the `continuation` stages: landmarks and prior
      under a strong prior, then every base term with the prior relaxed
      step by step (from a prediction, the shorter `prediction_stages`);
      then `base_steps` iterations (default 12) at the loss's own weights.
    'adam': `base_steps` Adam steps (default 200).
  With Levenberg-Marquardt, `corrective_harmonics` smooth displacement
  modes (default 20; none for Adam or `fixed_identity`) are solved with the
  base, their prior such that together they move a vertex by
  `corrective_rms_mm` RMS (`face_model.with_smooth_displacements`); their
  displacement starts the final level's geometry.
  Final phase: `final_steps` Adam steps on the correctives and the final
  light (started at the base light); the base parameters stay fixed.

  Adam's rates decay (cosine) to `final_rate_fraction` of their start; its
  photometric supports are recomputed every `support_every` steps.
  """
  base_solver: str = 'gauss_newton'
  # The photometric stages start at 100 times the prior, so that the pose
  # and light settle on the photo before the shape moves.
  continuation: Tuple[ContinuationStage, ...] = (
      ContinuationStage('landmarks', prior_scale=300.0, iterations=5),
      ContinuationStage('all', prior_scale=100.0, iterations=4),
      ContinuationStage('all', prior_scale=30.0, iterations=4),
      ContinuationStage('all', prior_scale=10.0, iterations=4),
      ContinuationStage('all', prior_scale=3.0, iterations=4))
  # From a prediction: a regressor's pose is not the landmarks' yet.
  prediction_stages: Tuple[ContinuationStage, ...] = (
      ContinuationStage('landmarks', prior_scale=300.0, iterations=5),
      ContinuationStage('all', prior_scale=10.0, iterations=4))
  base_steps: Optional[int] = None
  irls_epsilon: float = 1e-3
  hessian_vertices: int = 1024
  final_steps: int = 60
  learning_rate: float = 0.03           # normalised parameters
  geometry_learning_rate: float = 0.05  # mm per step
  reflectance_learning_rate: float = 0.005
  final_rate_fraction: float = 0.01
  support_every: int = 25
  # Chosen on the synthetic benchmark's validation split: the expression
  # prior at 0.3 sigma, since with the model's own sigmas (those of its
  # extreme blendshapes) the expression takes up what the shape and the
  # out-of-space detail should explain; the shape prior at 1.4 sigma,
  # since at 1 sigma it holds back the identity of faces far from the
  # mean; the photometric term weighted by how well the reflectance model
  # explains each vertex (beards, make-up). The photometric weight at 1.0
  # (the paper's stage 1: 1.9) was chosen on the real-data benchmark
  # (`experiments.real`) with the dense landmarks: closer to the real scans
  # than 0.5 or 1.9, and the photos' landmarks closer than at 1.9.
  base_loss: objective.LossConfig = objective.LossConfig.for_stage(
      'stage1', photo=1.0, raster_correction=True, shape_prior_std=1.4,
      expression_prior_std=0.3, outlier_sigmas=1.5, **FIT_LOSS_OPTIONS)
  final_loss: objective.LossConfig = final_phase_loss(**FIT_LOSS_OPTIONS)
  # Keep identity (shape and reflectance coefficients, corrective fields)
  # at `initial`; fit pose, expression and light only (video frames).
  fixed_identity: bool = False
  # 20 modes at 1.1 mm RMS (times the base loss's shape_prior_std), chosen
  # on renders: more take over what the identity should explain.
  corrective_harmonics: Optional[int] = None
  corrective_rms_mm: float = 1.1
  # Levenberg-Marquardt's landmark terms lose weight as (1.5 px / mean
  # landmark error)^2 above 1.5 px, so that noisy landmarks do not pull the
  # fit far past the mean face (chosen on renders); 0: fixed weight.
  landmark_noise_px: float = 1.5
  # The dense landmarks' term (`least_squares.DenseTargets`) relative to
  # the 68 points' (both means over points); 1 beat 0 and 3 on real data.
  dense_weight: float = 1.0
  # The appearance priors (`appearance_prior`; 0: off), chosen on real
  # data: a real texture's colour and brightness come out right under a
  # white light, the geometry no worse, the overlays closer to the photos.
  light_colour_prior: float = 1.0
  reflectance_bound: float = 10.0
  report_terms: bool = True  # FitResult's start and end (video: off)

  def __post_init__(self):
    if self.base_solver not in BASE_STEPS:
      raise ValueError(f'base_solver is gauss_newton or adam, not '
                       f'{self.base_solver!r}')
    if self.base_solver == 'adam' and self.corrective_harmonics:
      raise ValueError('corrective_harmonics are solved by gauss_newton '
                       'only; use corrective_harmonics=0 with adam')
    for name in ('dense_weight', 'light_colour_prior', 'reflectance_bound'):
      if getattr(self, name) < 0:
        raise ValueError(f'{name} is 0 or more, not {getattr(self, name)}')
    if self.corrective_rms_mm <= 0:
      raise ValueError(f'corrective_rms_mm is positive, not '
                       f'{self.corrective_rms_mm}')
    if not all(isinstance(stage, ContinuationStage)
               for stage in self.continuation + self.prediction_stages):
      raise TypeError('continuation and prediction_stages are tuples of '
                      'ContinuationStage')

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

  def base_schedule(self, from_mean: bool) -> Tuple[ContinuationStage, ...]:
    """Levenberg-Marquardt's stages: the continuation from the mean face
    (from a prediction, `prediction_stages`), then
    `base_step_count` iterations at the loss's own weights."""
    return (self.continuation if from_mean else self.prediction_stages) + (
        ContinuationStage('all', prior_scale=1.0,
                          iterations=self.base_step_count),)


# Base-phase iterations at the loss's weights by default, per solver
# (Levenberg-Marquardt's chosen on the validation split, against the time
# each iteration costs).
BASE_STEPS = {'gauss_newton': 12, 'adam': 200}
# Smooth corrective modes of the Levenberg-Marquardt fit by default.
DEFAULT_HARMONICS = 20


class FitResult(NamedTuple):
  """A fitted face (a pytree).

  Attributes:
    params: FaceParams (no corrective coefficients: C = 0).
    geometry_offsets: (N, 3) mm.
    reflectance_offsets: (N, 3).
    start, end: objective terms at the initial estimate and the result
      (final-level loss); empty without `FitConfig.report_terms`.
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
             initial: Optional[network.Prediction] = None,
             dense: Optional[least_squares.DenseTargets] = None
             ) -> FitResult:
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
    dense: dense landmarks in the crop (their weights times
      `config.dense_weight`), or None.
  """
  scaling = layout_lib.parameter_scaling(model, fit_layout(model))
  if dense is not None:
    dense = dense._replace(weight=dense.weight * config.dense_weight)
  problem = least_squares.Problem(image, landmarks, confidence, dense)
  return compilation_cache.call_exported(
      'fit', _fit, (model, scaling, intrinsics, problem, initial),
      {'config': config})


@functools.partial(jax.jit, static_argnames=('config',))
def _fit(model: fm.FaceModel, scaling: layout_lib.ParameterScaling,
         intrinsics: camera.Intrinsics, problem: least_squares.Problem,
         initial: Optional[network.Prediction],
         config: FitConfig) -> FitResult:
  """`fit_face`'s start and phases, compiled together."""
  setting = adam_phase.Setting(model, intrinsics, fit_layout(model),
                               scaling, problem, config.light_colour_prior,
                               config.reflectance_bound)
  variables = _start(setting, initial)
  terms = (functools.partial(adam_phase.terms, setting, config.final_loss)
           if config.report_terms else lambda *unused: {})
  raw, geometry, reflectance = variables
  start_terms = terms(scaling.params(setting.layout, raw), geometry,
                      reflectance)
  if config.base_solver == 'gauss_newton':
    variables = _levenberg_marquardt_base(setting, config, variables,
                                          from_mean=initial is None)
  else:
    variables = _adam_base(setting, config, variables)
  raw, geometry, reflectance = _final_phase(setting, config, variables)
  params = scaling.params(setting.layout, raw)
  return FitResult(
      params=params, geometry_offsets=geometry,
      reflectance_offsets=reflectance, start=start_terms,
      end=terms(params, geometry, reflectance))


def _start(setting: adam_phase.Setting,
           initial: Optional[network.Prediction]) -> adam_phase.Variables:
  """(raw parameters, geometry offsets, reflectance offsets) to start from:
  the mean face at the landmarks' pose without correctives, or `initial`
  (its final light, shared or its own, as the final light)."""
  model, layout, scaling = setting.model, setting.layout, setting.scaling
  zeros = jnp.zeros((model.num_vertices, 3))
  if initial is None:
    rotation, translation = pose_start.landmark_pose(
        model, setting.intrinsics, setting.problem.landmarks,
        setting.problem.confidence)
    mean = layout.split(scaling.offset)._replace(rotation=rotation,
                                                 translation=translation)
    return (layout.join(mean) - scaling.offset) / scaling.scale, zeros, zeros
  p = initial.params
  start = layout.join(p._replace(
      correctives_geometry=jnp.zeros(0),
      correctives_reflectance=jnp.zeros(0),
      sh_final=levels.final_light(p)))
  return ((start - scaling.offset) / scaling.scale, initial.geometry_offsets,
          initial.reflectance_offsets)


def _levenberg_marquardt_base(setting: adam_phase.Setting, config: FitConfig,
                              variables: adam_phase.Variables,
                              from_mean: bool) -> adam_phase.Variables:
  """The base phase by Levenberg-Marquardt on the base parameters and the
  smooth displacement modes; the modes' displacement is added to the
  geometry offsets, the reflectance offsets are kept."""
  model, scaling = setting.model, setting.scaling
  raw, geometry, reflectance = variables
  count = config.harmonic_count
  joint = fm.with_smooth_displacements(model, count, config.corrective_rms_mm)
  shapes = model.num_shape
  # The joint vectors: the smooth modes' entries after the identity's.
  widen = lambda x, extra: jnp.concatenate([x[:shapes], extra, x[shapes:]])
  joint_scaling = layout_lib.ParameterScaling(
      widen(scaling.offset, jnp.zeros(count)),
      widen(scaling.scale, joint.shape_sigma[shapes:]))
  joint_raw = gauss_newton.solve(
      joint, setting.intrinsics, setting.problem,
      widen(raw, jnp.zeros(count)), loss=config.base_loss,
      layout=fit_layout(joint), scaling=joint_scaling,
      schedule=config.base_schedule(from_mean),
      fixed_identity=config.fixed_identity,
      irls_epsilon=config.irls_epsilon,
      sample_size=config.hessian_vertices,
      landmark_noise_px=config.landmark_noise_px,
      light_colour_prior=config.light_colour_prior,
      reflectance_bound=config.reflectance_bound)
  smooth = joint_raw[shapes:shapes + count] * joint.shape_sigma[shapes:]
  geometry = geometry + jnp.einsum('k,knd->nd', smooth,
                                   joint.shape_basis[shapes:])
  raw = jnp.concatenate([joint_raw[:shapes], joint_raw[shapes + count:]])
  return raw, geometry, reflectance


def _adam_base(setting: adam_phase.Setting, config: FitConfig,
               variables: adam_phase.Variables) -> adam_phase.Variables:
  """The base phase by Adam on the base parameters (not the identity's
  with `fixed_identity`); the correctives are held."""
  steps = config.base_step_count
  optimizer = optax.multi_transform(
      {'train': adam_phase.decaying_adam(config.learning_rate, steps,
                                         config.final_rate_fraction),
       'fixed': optax.set_to_zero()}, ('train', 'fixed', 'fixed'))
  groups = tuple(name for name in setting.layout.offsets
                 if not (config.fixed_identity and
                         name in ('shape', 'reflectance')))
  return adam_phase.minimize(
      setting, variables, steps=steps, optimizer=optimizer,
      loss=config.base_loss, groups=groups,
      support_every=config.support_every)


def _final_phase(setting: adam_phase.Setting, config: FitConfig,
                 variables: adam_phase.Variables) -> adam_phase.Variables:
  """The final phase: Adam on corrective heights along the base normals
  (on top of the base phase's geometry offsets), the reflectance offsets
  and the final light, started at the base light.

  The base parameters stay where the base phase left them: the final
  terms would otherwise trade base accuracy for corrective freedom. The
  geometry correctives move each vertex along its base normal: one photo
  constrains a displacement through the shading, while a tangential one
  only slides the vertex to another pixel (with free 3-D offsets the
  final level's geometry ends worse than the base).
  """
  model, layout, scaling = setting.model, setting.layout, setting.scaling
  adam = lambda rate: adam_phase.decaying_adam(rate, config.final_steps,
                                               config.final_rate_fraction)
  corrective = lambda rate: (optax.set_to_zero() if config.fixed_identity
                             else adam(rate))
  optimizer = optax.multi_transform(
      {'light': adam(config.learning_rate),
       'geometry': corrective(config.geometry_learning_rate),
       'reflectance': corrective(config.reflectance_learning_rate)},
      ('light', 'geometry', 'reflectance'))
  raw, start_geometry, reflectance = variables
  start, stop = layout.offsets['sh_final']
  base_start, base_stop = layout.offsets['sh_base']
  raw = raw.at[start:stop].set(raw[base_start:base_stop])
  base = levels.surfaces(model, scaling.params(layout, raw))[0]
  normals = mesh.vertex_normals(base.vertices, model.triangles)
  return adam_phase.minimize(
      setting, (raw, jnp.zeros(model.num_vertices), reflectance),
      steps=config.final_steps, optimizer=optimizer, loss=config.final_loss,
      groups=('sh_final',), support_every=config.support_every,
      geometry_of=lambda heights: start_geometry + heights[:, None] * normals)
