"""Expression as blendshape weights in [0, 1], refined after `fit`.

`fit.fit_face` fits the expression in PCA coefficients without bounds;
turned into blendshape weights it spreads over many small weights and
borrows what the identity should explain (a wider cheek becomes cheekPuff).
This refinement continues from the fit with the expression parametrised by
the weights themselves (coefficients w S, `arkit.BlendshapeRig`), projected
onto [0, 1] after every Adam step, an L1 pull towards 0 (real expressions
use a few shapes), and the identity free again so that it can take back
what the expression took; pose, light and correctives stay at the fit. It
starts from the bounded conversion (`arkit.weights`) and runs under the
fitter's final-phase loss with the photometric supports of the start.
"""

import dataclasses
import functools
from typing import Dict, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from mofa_ml import compilation_cache
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.learning import objective
from mofa_ml.rendering import camera


@dataclasses.dataclass(frozen=True)
class RefineConfig:
  """Steps, rate and L1 pull of the refinement (hashable: static for jit).

  The rate is per step for the weights and the normalised identity
  (coefficient / sigma) alike; it decays (cosine) to `final_rate_fraction`
  of itself. `sparsity` is in loss units per unit weight.
  """
  steps: int = 60
  learning_rate: float = 0.02
  final_rate_fraction: float = 0.05
  sparsity: float = 0.001


class Refined(NamedTuple):
  """The refined face (a pytree).

  Attributes:
    params: FaceParams with the refined identity and expression w S.
    weights: (K,) blendshape weights in [0, 1].
    change_mm: () RMS over vertices of the base geometry's move from the
      fit (identity and expression), mm: what bounds and sparsity cost.
    terms: objective terms at the result (as `objective.face_objective`).
  """
  params: layout_lib.FaceParams
  weights: jax.Array
  change_mm: jax.Array
  terms: Dict[str, jax.Array]


def refine(model: fm.FaceModel, to_coefficients: jax.Array,
           intrinsics: camera.Intrinsics, loss: objective.LossConfig,
           params: layout_lib.FaceParams, geometry_offsets: jax.Array,
           reflectance_offsets: jax.Array, image: jax.Array,
           landmarks: jax.Array, confidence: jax.Array, start: jax.Array,
           config: RefineConfig = RefineConfig()) -> Refined:
  """Refines one fitted face's expression as blendshape weights.

  Args:
    model: the face model.
    to_coefficients: (K, me) the rig's weights -> coefficients map S.
    intrinsics: the crop's camera.
    loss: the fitter's final-phase loss (`fit.FitConfig().final_loss`).
    params: the fitted FaceParams (unbatched).
    geometry_offsets, reflectance_offsets: (N, 3) the fitted correctives.
    image: (H, W, 3) the crop in [0, 1].
    landmarks: (68, 2) crop pixels; confidence: (68,).
    start: (K,) starting weights in [0, 1] (`arkit.weights` of the fit).
    config: steps, rate, L1 pull.

  Returns:
    Refined.
  """
  return compilation_cache.call_exported(
      'refine', _refine, (model, to_coefficients, intrinsics, params,
                          geometry_offsets, reflectance_offsets, image,
                          landmarks, confidence, start),
      {'loss': loss, 'config': config})


@functools.partial(jax.jit, static_argnames=('loss', 'config'))
def _refine(model, to_coefficients, intrinsics, params, geometry_offsets,
            reflectance_offsets, image, landmarks, confidence, start, loss,
            config) -> Refined:
  """`refine`, compiled (its static arguments last)."""
  chex.assert_shape(to_coefficients, (start.shape[0], model.num_expression))
  key = jax.random.PRNGKey(0)
  sigma = model.shape_sigma

  def face(variables):
    weights, identity = variables
    return params._replace(expression=weights @ to_coefficients,
                           shape=identity * sigma)

  def terms(variables, support):
    return objective.face_objective(
        model, intrinsics, loss, face(variables), geometry_offsets,
        reflectance_offsets, image, landmarks, confidence, key, support)

  variables = (start, params.shape / sigma)
  support = objective.supports(model, intrinsics, loss, face(variables),
                               geometry_offsets, reflectance_offsets,
                               image)
  total = lambda v: terms(v, support)['total'] + config.sparsity * jnp.sum(
      v[0])
  optimizer = optax.adam(optax.cosine_decay_schedule(
      config.learning_rate, max(1, config.steps), config.final_rate_fraction))

  def step(carry, _):
    variables, state = carry
    updates, state = optimizer.update(jax.grad(total)(variables), state,
                                      variables)
    weights, identity = optax.apply_updates(variables, updates)
    return ((jnp.clip(weights, 0.0, 1.0), identity), state), None

  (variables, _), _ = jax.lax.scan(
      step, (variables, optimizer.init(variables)), None, length=config.steps)
  refined = face(variables)
  move = (model.geometry(refined.shape, refined.expression) -
          model.geometry(params.shape, params.expression))
  return Refined(refined, variables[0],
                 jnp.sqrt(jnp.mean(jnp.sum(move**2, -1))),
                 terms(variables, None))
