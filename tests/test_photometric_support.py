"""Which vertices the photometric term compares, and how much each counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.learning import objective
from mofa_ml.learning import photometric_support
from mofa_ml.rendering import camera
from mofa_ml.rendering import shading

TOLERANCE_SIGMAS = 1.5


def _frontal_lit_face(model):
  layout = layout_lib.ParameterLayout.for_model(model, 0, False)
  sh = jnp.zeros((9, 3)).at[0].set(0.9).at[1].set(0.3).at[3].set(-0.2)
  params = layout.split(jnp.zeros(layout.size))._replace(
      translation=jnp.asarray([0.0, 0.0, 1100.0]), sh_base=sh)
  surface, _ = levels.surfaces(model, params)
  return levels.render(model, surface, params,
                       camera.default_intrinsics()), sh


def test_outlier_weights_keep_what_the_model_explains(ict_model):
  rendering, sh = _frontal_lit_face(ict_model)
  visible = rendering.visible

  def weights(albedo):
    observed = shading.shade(albedo, rendering.normals, sh)
    found = photometric_support.reflectance_outlier_weights(
        ict_model, rendering, observed, visible, sh, TOLERANCE_SIGMAS)
    return np.asarray(found)[np.asarray(visible) > 0]

  mean = ict_model.mean_reflectance
  np.testing.assert_allclose(weights(mean), 1.0, atol=1e-5)
  # A darker skin or a dimmer, coloured light: one gain per channel.
  np.testing.assert_allclose(weights(mean * jnp.asarray([0.5, 0.35, 0.3])),
                             1.0, atol=1e-3)
  # One sigma along a reflectance mode is at most one marginal sigma per
  # channel: weight >= 1 / (1 + (1 / k)^4) up to the gain's adjustment.
  for mode in (0, 5):
    albedo = mean + (ict_model.reflectance_sigma[mode] *
                     ict_model.reflectance_basis[mode])
    assert weights(albedo).min() > 0.8 / (1 + TOLERANCE_SIGMAS**-4)


def test_outlier_weights_mute_a_beard(ict_model):
  rendering, sh = _frontal_lit_face(ict_model)
  visible = np.asarray(rendering.visible) > 0
  # Dark hair on the lower face (below the mouth corners' height).
  corners = ict_model.landmark_vertices[np.array([48, 54])]
  mouth = ict_model.mean_shape[corners, 1]
  beard = np.asarray(ict_model.mean_shape[:, 1] < mouth.mean())
  hair = jnp.broadcast_to(jnp.asarray([0.1, 0.08, 0.07]),
                          ict_model.mean_reflectance.shape)
  albedo = jnp.where(beard[:, None], hair, ict_model.mean_reflectance)
  found = np.asarray(photometric_support.reflectance_outlier_weights(
      ict_model, rendering, shading.shade(albedo, rendering.normals, sh),
      rendering.visible, sh, TOLERANCE_SIGMAS))
  assert (beard & visible).sum() > 300
  assert np.median(found[beard & visible]) < 0.1
  assert found[~beard & visible].min() > 0.99


def test_a_negative_tolerance_is_refused():
  with pytest.raises(ValueError, match='outlier_sigmas'):
    objective.LossConfig.for_stage('stage1', outlier_sigmas=-1.0)
