"""Per-image fitting (analysis by synthesis) with the training objective.

Two phases, each a jitted `lax.scan` of Adam steps on one face:
  1. base: the normalised base parameters (see `layout.parameter_scaling`)
     under the stage-1 loss (landmarks, base photometric term, prior);
  2. final: base parameters plus free per-vertex corrective displacements
     (mm) and reflectance offsets under the stage-2 loss, whose smoothness,
     stabilization and reflectance-sparsity terms regularise them as in
     training (the correctives here are per image instead of coming from
     the learned corrective space).
A regressor's prediction can seed both (`initial`).
"""

import dataclasses
import functools
from typing import Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.learning import network
from mofa_ml.learning import objective
from mofa_ml.rendering import camera


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Steps and step sizes of the two phases (hashable: static for jit)."""
  base_steps: int = 200
  final_steps: int = 150
  learning_rate: float = 0.03           # normalised parameters
  geometry_learning_rate: float = 0.05  # mm per step
  reflectance_learning_rate: float = 0.005
  base_loss: objective.LossConfig = objective.LossConfig.for_stage('stage1')
  final_loss: objective.LossConfig = objective.LossConfig.for_stage('stage2')
  # Keep identity (shape and reflectance coefficients, corrective fields)
  # at `initial`; fit pose, expression and light only (video frames).
  fixed_identity: bool = False


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
    raw = jnp.zeros(layout.size)
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

  def terms(variables, loss):
    raw, geometry, reflectance = variables
    params = layout.split(scaling.offset + scaling.scale * raw)
    return objective.face_objective(model, intrinsics, loss, params,
                                    geometry, reflectance, image, landmarks,
                                    confidence, key)

  free = jnp.ones(layout.size)
  if config.fixed_identity:
    for name in ('shape', 'reflectance'):
      start, stop = layout.offsets[name]
      free = free.at[start:stop].set(0.0)

  def run(variables, steps, optimizer, loss):
    state = optimizer.init(variables)

    def step(carry, _):
      variables, state = carry
      gradient = jax.grad(lambda v: terms(v, loss)['total'])(variables)
      gradient = (gradient[0] * free,) + gradient[1:]
      updates, state = optimizer.update(gradient, state, variables)
      return (optax.apply_updates(variables, updates), state), None

    (variables, _), _ = jax.lax.scan(step, (variables, state), None,
                                     length=steps)
    return variables

  start_terms = terms((raw, geometry, reflectance), config.final_loss)
  base_only = optax.multi_transform(
      {'train': optax.adam(config.learning_rate),
       'fixed': optax.set_to_zero()}, ('train', 'fixed', 'fixed'))
  variables = run((raw, geometry, reflectance), config.base_steps, base_only,
                  config.base_loss)
  corrective = lambda rate: (optax.set_to_zero() if config.fixed_identity
                             else optax.adam(rate))
  everything = optax.multi_transform(
      {'base': optax.adam(config.learning_rate),
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
