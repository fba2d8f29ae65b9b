"""Per-image fitting (analysis by synthesis) with the training objective.

Two phases, each a jitted `lax.scan` of Adam steps (decaying rates) on one
face:
  1. base: the normalised base parameters (see `layout.parameter_scaling`)
     under the stage-1 loss (landmarks, base photometric term, prior);
  2. final: base parameters plus free per-vertex corrective displacements
     (mm) and reflectance offsets under the stage-2 loss, whose smoothness,
     stabilization and reflectance-sparsity terms regularise them as in
     training (the correctives here are per image instead of coming from
     the learned corrective space).
Without a regressor's prediction (`initial`), the fit starts from the mean
face at the pose that best explains the landmarks (`landmark_pose`).
"""

import dataclasses
import functools
from typing import Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.learning import network
from mofa_ml.learning import objective
from mofa_ml.rendering import camera


def final_phase_loss(**overrides) -> objective.LossConfig:
  """Stage 2's loss with the prior on the base coefficients at stage 1's
  strength.

  In the paper's weights, w_reg multiplies both the statistical prior and
  the corrective regularisers, and stage 2 raises it 100-fold. Fitting one
  image, that pulled the base shape towards the mean (on clean synthetic
  faces from 1.10 to 2.08 mm off the truth over the final phase): here the
  prior keeps stage 1's weight and every term that `reg` scales keeps its
  stage-2 effective weight.
  """
  stage1 = objective.paper_weights('stage1')
  stage2 = objective.paper_weights('stage2')
  ratio = stage2['reg'] / stage1['reg']
  weights = dict(stage2, reg=stage1['reg'])
  for term in objective.TERMS:
    if term.scaled_by == 'reg' and term.weight != 'rstd':
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
  """Steps and step sizes of the two phases (hashable: static for jit).

  Rates decay (cosine) from their start to `final_rate_fraction` of it, so
  Adam's normalised steps settle instead of wandering at the optimum. The
  photometric supports (`objective.supports`) are recomputed every
  `support_every` steps and held fixed in between.
  """
  base_steps: int = 200
  final_steps: int = 150
  learning_rate: float = 0.03           # normalised parameters
  geometry_learning_rate: float = 0.05  # mm per step
  reflectance_learning_rate: float = 0.005
  final_rate_fraction: float = 0.01
  support_every: int = 25
  base_loss: objective.LossConfig = objective.LossConfig.for_stage(
      'stage1', raster_correction=True, **FIT_LOSS_OPTIONS)
  final_loss: objective.LossConfig = final_phase_loss(**FIT_LOSS_OPTIONS)
  # Keep identity (shape and reflectance coefficients, corrective fields)
  # at `initial`; fit pose, expression and light only (video frames).
  fixed_identity: bool = False


@functools.partial(jax.jit, static_argnames=('iterations',))
def landmark_pose(model: fm.FaceModel, intrinsics: camera.Intrinsics,
                  landmarks: jax.Array, confidence: jax.Array,
                  iterations: int = 15):
  """Head rotation and translation of the mean face that best explain the
  inner 51 landmarks (Gauss-Newton on six numbers).

  The start is frontal at the depth where the mean face's landmark spread
  matches the photo's; a fit that starts at the default 1 m instead lands
  in a wrong basin (a smaller head too close to the camera).

  Returns:
    (rotation (3,) radians, translation (3,) mm).
  """
  inner = jnp.asarray(lm.FIXED)
  points = model.mean_shape[model.landmark_vertices[inner]]
  weights = confidence[inner]
  target = landmarks[inner]
  centred = points - points.mean(0)
  image_spread = jnp.sqrt(jnp.mean(jnp.sum(
      (target - target.mean(0))**2, -1)))
  model_spread = jnp.sqrt(jnp.mean(jnp.sum(centred[:, :2]**2, -1)))
  depth = jnp.mean(intrinsics.focal_length) * model_spread / image_spread
  ray = camera.unproject_ray(target.mean(0)[None], intrinsics)[0]
  translation = ray / ray[2] * depth - camera.pose_rotation(
      jnp.zeros(3)) @ points.mean(0)
  pose = jnp.concatenate([jnp.zeros(3), translation])

  def residual(pose):
    projected = camera.project(camera.rigid_transform(
        points, camera.pose_rotation(pose[:3]), pose[3:]), intrinsics)
    return (jnp.sqrt(weights)[:, None] * (projected - target)).reshape(-1)

  def step(pose, _):
    jacobian = jax.jacfwd(residual)(pose)
    normal = jacobian.T @ jacobian
    gradient = jacobian.T @ residual(pose)
    damping = 1e-3 * jnp.diag(jnp.diag(normal)) + 1e-9 * jnp.eye(6)
    return pose - jnp.linalg.solve(normal + damping, gradient), None

  pose, _ = jax.lax.scan(step, pose, None, length=iterations)
  return pose[:3], pose[3:]


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
    rotation, translation = landmark_pose(model, intrinsics, landmarks,
                                          confidence)
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

  def terms(variables, loss, support=None):
    raw, geometry, reflectance = variables
    params = layout.split(scaling.offset + scaling.scale * raw)
    return objective.face_objective(model, intrinsics, loss, params,
                                    geometry, reflectance, image, landmarks,
                                    confidence, key, support)

  def support_at(variables, loss):
    raw, geometry, reflectance = variables
    params = layout.split(scaling.offset + scaling.scale * raw)
    return objective.supports(model, intrinsics, loss, params, geometry,
                              reflectance, image.shape)

  free = jnp.ones(layout.size)
  if config.fixed_identity:
    for name in ('shape', 'reflectance'):
      start, stop = layout.offsets[name]
      free = free.at[start:stop].set(0.0)

  def run(variables, steps, optimizer, loss):
    state = optimizer.init(variables)

    def chunk(carry, length):
      variables, state = carry
      support = support_at(variables, loss)

      def step(carry, _):
        variables, state = carry
        gradient = jax.grad(
            lambda v: terms(v, loss, support)['total'])(variables)
        gradient = (gradient[0] * free,) + gradient[1:]
        updates, state = optimizer.update(gradient, state, variables)
        return (optax.apply_updates(variables, updates), state), None

      return jax.lax.scan(step, (variables, state), None, length=length)[0]

    every = max(1, config.support_every)
    carry = (variables, state)
    if steps >= every:
      carry, _ = jax.lax.scan(lambda c, _: (chunk(c, every), None), carry,
                              None, length=steps // every)
    if steps % every:
      carry = chunk(carry, steps % every)
    return carry[0]

  def adam(rate, steps):
    if steps < 1 or config.final_rate_fraction >= 1.0:
      return optax.adam(rate)
    return optax.adam(optax.cosine_decay_schedule(
        rate, steps, alpha=config.final_rate_fraction))

  start_terms = terms((raw, geometry, reflectance), config.final_loss)
  base_only = lambda steps: optax.multi_transform(
      {'train': adam(config.learning_rate, steps),
       'fixed': optax.set_to_zero()}, ('train', 'fixed', 'fixed'))
  variables = run((raw, geometry, reflectance), config.base_steps,
                  base_only(config.base_steps), config.base_loss)
  corrective = lambda rate: (optax.set_to_zero() if config.fixed_identity
                             else adam(rate, config.final_steps))
  everything = optax.multi_transform(
      {'base': adam(config.learning_rate, config.final_steps),
       'geometry': corrective(config.geometry_learning_rate),
       'reflectance': corrective(config.reflectance_learning_rate)},
      ('base', 'geometry', 'reflectance'))
  variables = run(variables, config.final_steps, everything,
                  config.final_loss)
  raw, geometry, reflectance = variables
  return FitResult(
      params=layout.split(scaling.offset + scaling.scale * raw),
      geometry_offsets=geometry, reflectance_offsets=reflectance,
      start=start_terms, end=terms(variables, config.final_loss))
