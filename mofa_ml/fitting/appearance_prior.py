"""Priors that keep a fitted face's appearance physical.

One photo cannot tell a pink face under white light from a white face under
pink light, nor a bright face under dim light from the reverse: the
photometric terms leave the light's colour and the albedo's brightness to
whatever the shape and reflectance spaces happen to favour. Two weak priors
resolve it as a user expects:
  * light colour: each SH band's three colour coefficients are pulled
    together (a white light of any shape), so that the skin's colour goes to
    the reflectance unless the photo insists;
  * reflectance bound: albedo outside [0, 1] is penalised (hinge squared),
    so that the light, not an impossible albedo, explains the brightness.
"""

import chex
import jax
import jax.numpy as jnp

from mofa_ml.rendering import shading

# The constant band of a white ambient light of irradiance 1: the unit of
# the light's colour deviations.
_AMBIENT_DC = float(shading.AMBIENT_WHITE[0, 0])


def light_colour_energy(sh: jax.Array) -> jax.Array:
  """() sum over bands and colours of the squared deviation of each colour's
  coefficient from the band's mean over colours, in units of a white
  ambient light's constant coefficient (0 for any white light).

  Args:
    sh: (9, 3) SH irradiance coefficients (bands x RGB).
  """
  chex.assert_shape(sh, (shading.NUM_SH_COEFFICIENTS, 3))
  deviation = sh - jnp.mean(sh, axis=-1, keepdims=True)
  return jnp.sum(deviation**2) / _AMBIENT_DC**2


def reflectance_bound_energy(reflectance: jax.Array) -> jax.Array:
  """() mean over vertices of the squared distance of each colour channel
  from [0, 1], summed over channels (0 inside the bound).

  Args:
    reflectance: (N, 3) albedo.
  """
  chex.assert_rank(reflectance, 2)
  outside = jax.nn.relu(reflectance - 1.0) + jax.nn.relu(-reflectance)
  return jnp.sum(outside**2) / reflectance.shape[0]
