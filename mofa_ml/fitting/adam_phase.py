"""Adam on one face's normalised parameters and corrective fields.

The fit's Adam phases (the base phase with `base_solver='adam'`, and the
final phase) run `minimize`: Adam on some parameter groups and the
corrective fields, the photometric supports (`objective.supports`)
recomputed every `support_every` steps and held fixed in between, since
they are constants of the objective that only change as the face moves.
"""

from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import jax
import numpy as np
import optax

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.fitting import appearance_prior
from mofa_ml.fitting import least_squares
from mofa_ml.learning import objective
from mofa_ml.rendering import camera

# (raw parameters (size,), geometry field, reflectance offsets (N, 3)).
Variables = Tuple[jax.Array, jax.Array, jax.Array]


class Setting(NamedTuple):
  """What every phase of one face's fit reads.

  Attributes:
    model: the face model.
    intrinsics: the crop's camera.
    layout, scaling: of the normalised parameter vector (`fit.fit_layout`).
    problem: the face's photo and landmarks.
    light_colour_prior, reflectance_bound: weights of the appearance priors
      (`appearance_prior`; 0: off).
  """
  model: fm.FaceModel
  intrinsics: camera.Intrinsics
  layout: layout_lib.ParameterLayout
  scaling: layout_lib.ParameterScaling
  problem: least_squares.Problem
  light_colour_prior: float = 0.0
  reflectance_bound: float = 0.0


def terms(setting: Setting, loss: objective.LossConfig,
          params: layout_lib.FaceParams, geometry_offsets: jax.Array,
          reflectance_offsets: jax.Array,
          support=None) -> Dict[str, jax.Array]:
  """`objective.face_objective` of the face at an estimate (a fixed key:
  the random skin partners stay the same over the fit), with the dense
  landmarks' term ('dense', base level) where the problem has them and the
  appearance priors ('light_colour', 'reflectance_bound') where weighted."""
  problem = setting.problem
  result = objective.face_objective(
      setting.model, setting.intrinsics, loss, params, geometry_offsets,
      reflectance_offsets, problem.image, problem.landmarks,
      problem.confidence, jax.random.PRNGKey(0), support)
  extra = {}
  if problem.dense is not None:
    extra['dense'] = least_squares.dense_term(
        least_squares.dense_residual(setting.model, setting.intrinsics,
                                     params, problem.dense),
        problem.dense.weight, loss.landmark_unit_px)
  if setting.light_colour_prior:
    extra['light_colour'] = setting.light_colour_prior * sum(
        appearance_prior.light_colour_energy(light)
        for light in (params.sh_base, params.sh_final) if light is not None)
  if setting.reflectance_bound:
    extra['reflectance_bound'] = (
        setting.reflectance_bound * appearance_prior.reflectance_bound_energy(
            setting.model.reflectance(params.reflectance) +
            reflectance_offsets))
  result.update(extra)
  result['total'] = result['total'] + sum(extra.values())
  return result


def decaying_adam(learning_rate: float, steps: int,
                  final_rate_fraction: float
                  ) -> optax.GradientTransformation:
  """Adam whose rate decays (cosine) over `steps` from `learning_rate` to
  `final_rate_fraction` of it, so that its normalised steps settle
  instead of wandering at the optimum; constant for a fraction of 1 or
  more, or without steps."""
  if steps < 1 or final_rate_fraction >= 1.0:
    return optax.adam(learning_rate)
  return optax.adam(optax.cosine_decay_schedule(
      learning_rate, steps, alpha=final_rate_fraction))


def _identity(field):
  return field


def minimize(setting: Setting, variables: Variables, *, steps: int,
             optimizer: optax.GradientTransformation,
             loss: objective.LossConfig, groups: Sequence[str],
             support_every: int,
             geometry_of: Optional[Callable[[jax.Array], jax.Array]] = None
             ) -> Variables:
  """Adam on the raw parameters of `groups` and the corrective fields.

  The other groups enter the objective as constants, so that terms which
  depend only on them drop out of the compiled gradient (in the final
  phase the base terms, which would otherwise cost as much as the rest of
  a step).

  Args:
    setting: the face.
    variables: the start: raw parameters, geometry field, reflectance
      offsets.
    steps: Adam steps (static).
    optimizer: over the (free raw parameters, geometry field, reflectance
      offsets) triple.
    loss: the objective.
    groups: the free parameter groups (static).
    support_every: steps between recomputations of the photometric
      supports (static).
    geometry_of: the geometry offsets (N, 3) mm of a geometry field
      (default: the field itself).

  Returns:
    (raw parameters, geometry offsets (N, 3) mm, reflectance offsets).
  """
  geometry_of = geometry_of or _identity
  model, layout, scaling = setting.model, setting.layout, setting.scaling
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

  def total(free, support):
    return terms(setting, loss, params_of(free[0]), geometry_of(free[1]),
                 free[2], support)['total']

  def chunk(carry, length):
    """`length` steps under the supports at the chunk's start."""
    free, state = carry
    support = objective.supports(model, setting.intrinsics, loss,
                                 params_of(free[0]), geometry_of(free[1]),
                                 free[2], setting.problem.image)

    def step(carry, _):
      free, state = carry
      gradient = jax.grad(lambda f: total(f, support))(free)
      updates, state = optimizer.update(gradient, state, free)
      return (optax.apply_updates(free, updates), state), None

    return jax.lax.scan(step, (free, state), None, length=length)[0]

  free = (raw[columns],) + fields
  every = max(1, support_every)
  carry = (free, optimizer.init(free))
  if steps >= every:
    carry, _ = jax.lax.scan(lambda c, _: (chunk(c, every), None), carry,
                            None, length=steps // every)
  if steps % every:
    carry = chunk(carry, steps % every)
  free = carry[0]
  return raw.at[columns].set(free[0]), geometry_of(free[1]), free[2]
