"""`experiments/research/photo_albedo.py`: the albedo the ladder's
`@<photo>` steps render with."""

import jax
import numpy as np

from experiments.research import ladder
from experiments.research import photo_albedo
from mofa_ml import image_io
from mofa_ml.data import synthetic
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.rendering import camera


def test_shading_albedo_divides_out_the_shading_up_to_a_channel_scale():
  rng = np.random.default_rng(0)
  count = 500
  truth = rng.uniform(0.2, 0.6, (count, 3))
  fitted = rng.uniform(0.3, 0.8, (count, 3))  # the fit's own albedo
  shading = rng.uniform(0.5, 1.5, (count, 3))
  gain = np.array([1.3, 0.9, 0.7])  # light and albedo trade per channel
  observed = truth * shading * gain
  fallback = np.full((count, 3), 0.5)
  weight = np.ones(count)
  weight[:50] = 0.0  # not shown: the fallback
  shading[50:60] = 0.01  # far darker than the rest: the fallback too
  albedo = photo_albedo.shading_albedo(observed, fitted * shading, fitted,
                                       weight, fallback)
  assert albedo.shape == (count, 3) and albedo.dtype == np.float32
  np.testing.assert_allclose(albedo[:60], 0.5, atol=1e-6)
  # The rest: the truth, brought to the fallback's median channel by channel
  # (the gain and the shading are gone).
  np.testing.assert_allclose(
      albedo[60:], truth[60:] * 0.5 / np.median(truth[60:], axis=0),
      rtol=1e-5)


def test_photo_albedo_recovers_a_rendered_face_albedo(ict_model):
  """A synthetic face with a known albedo, rendered and passed as a photo:
  where the face turns to the camera, the recovered albedo follows the
  truth's (after the per-channel scale)."""
  layout = layout_lib.ParameterLayout.for_model(ict_model)
  config = synthetic.SyntheticConfig(out_of_space=False, max_yaw=10.0,
                                     max_pitch=5.0, max_roll=5.0)
  face = jax.device_get(synthetic.generate_batch(
      jax.random.PRNGKey(3), ict_model, layout, camera.default_intrinsics(),
      config, 1))
  photo = image_io.to_uint8(np.asarray(face['image'][0]))
  truth = np.asarray(face['albedo'][0], np.float64)
  albedo = photo_albedo.photo_albedo(
      ict_model, photo, np.asarray(face['landmarks'][0], np.float32))
  assert albedo.shape == truth.shape
  assert np.all((albedo >= 0) & (albedo <= 1))
  # The vertices that moved off the model's mean reflectance are the ones
  # the photo showed; there the albedo tracks the truth's variation.
  shown = np.any(np.abs(albedo - np.asarray(ict_model.mean_reflectance))
                 > 1e-4, axis=1)
  assert shown.mean() > 0.3
  luminance = lambda colours: colours[shown].mean(axis=1)
  correlation = np.corrcoef(luminance(albedo), luminance(truth))[0, 1]
  assert correlation > 0.8, correlation


def test_ladder_appearance_steps_render_and_fit_with_the_photo_albedo(
    ict_model):
  """'@<photo>' steps swap the model's mean reflectance for the photo's
  albedo (nothing else), and plain steps keep the model as it is."""
  assert ladder._step_parts('d+4px') == ('d', 4.0, '')
  assert ladder._step_parts('f@takeo') == ('f', 0.0, 'takeo')
  assert ladder.step_config('e@takeo') == ladder.step_config('e')
  albedo = np.random.default_rng(0).uniform(
      0.2, 0.8, (ict_model.num_vertices, 3)).astype(np.float32)
  albedos = {'takeo': albedo}
  assert ladder.appearance_model(ict_model, 'e', albedos) is ict_model
  swapped = ladder.appearance_model(ict_model, 'e@takeo', albedos)
  np.testing.assert_array_equal(swapped.mean_reflectance, albedo)
  np.testing.assert_array_equal(swapped.shape_basis, ict_model.shape_basis)
  np.testing.assert_array_equal(swapped.reflectance_basis,
                                ict_model.reflectance_basis)
  assert list(albedos) == ['takeo']  # reused, not fitted again
