"""Corrective spaces, encoder and the network's output map."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.learning import correctives
from mofa_ml.learning import encoder
from mofa_ml.learning import network
from mofa_ml.rendering import camera
from mofa_ml.rendering import shading


@pytest.mark.parametrize('hidden', [(), (16,), (16, 8)])
def test_corrective_space_shapes_and_zero_offset_start(hidden):
  space = correctives.CorrectiveSpace(num_vertices=11, hidden_sizes=hidden)
  delta = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 5))
  variables = space.init(jax.random.PRNGKey(1), delta)
  out = space.apply(variables, delta)
  chex.assert_shape(out, (2, 3, 11, 3))
  basis = variables['params']['basis']
  chex.assert_shape(basis['kernel'], ((hidden[-1] if hidden else 5), 33))
  np.testing.assert_array_equal(basis['bias'], 0.0)
  if not hidden:  # affine: F(0) = b = 0 and F is linear in delta
    zero = space.apply(variables, jnp.zeros((5,)))
    np.testing.assert_array_equal(zero, 0.0)
    a, b = delta[0, 0], delta[1, 2]
    np.testing.assert_allclose(space.apply(variables, a + b),
                               space.apply(variables, a) +
                               space.apply(variables, b), atol=1e-5)


def test_alexnet_trunk_shapes_and_size():
  trunk = encoder.AlexNetTrunk()
  images = jnp.zeros((1, 240, 240, 3))
  variables = jax.eval_shape(trunk.init, jax.random.PRNGKey(0), images)
  shapes = jax.tree_util.tree_map(lambda x: x.shape, variables['params'])
  assert shapes['conv1']['kernel'] == (11, 11, 3, 96)
  assert shapes['fc6']['kernel'] == (6 * 6 * 256, 4096)
  count = sum(np.prod(x.shape) for x in
              jax.tree_util.tree_leaves(variables['params']))
  assert 55e6 < count < 60e6  # AlexNet's ~57M without the classifier


def test_light_trunk_shapes_and_flops():
  trunk = encoder.LightTrunk(width=0.5, dense_size=512)
  images = jnp.zeros((1, 240, 240, 3))
  variables = trunk.init(jax.random.PRNGKey(0), images)
  shapes = jax.tree_util.tree_map(lambda x: x.shape, variables['params'])
  assert shapes['embed']['kernel'] == (4, 4, 3, 16)
  # 240 / 4 = 60, then four stride-2 convolutions: 30, 15, 8, 4.
  assert shapes['fc']['kernel'] == (4 * 4 * 128, 256)
  chex.assert_shape(trunk.apply(variables, images), (1, 256))
  cost = jax.jit(trunk.apply).lower(variables, images).compile()
  cost = cost.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  assert cost['flops'] < 0.02 * 2.18e9  # under 2% of AlexNet's


@pytest.mark.parametrize('backbone', ['alexnet', 'light'])
def test_first_prediction_is_near_the_mean_face(ict_model, backbone):
  layout = layout_lib.ParameterLayout.for_model(ict_model, 16)
  net = network.FaceNetwork(layout, ict_model.num_vertices, width=0.25,
                            dense_size=64, backbone=backbone)
  scaling = layout_lib.parameter_scaling(ict_model, layout)
  images = jax.random.uniform(jax.random.PRNGKey(0), (2, 240, 240, 3))
  variables = net.init(jax.random.PRNGKey(1), images, scaling)
  prediction = net.apply(variables, images, scaling)
  chex.assert_shape(prediction.params.shape, (2, ict_model.num_shape))
  chex.assert_shape(prediction.params.sh_final, (2, 9, 3))
  chex.assert_shape([prediction.geometry_offsets,
                     prediction.reflectance_offsets],
                    (2, ict_model.num_vertices, 3))
  params = prediction.params
  assert np.abs(params.shape / ict_model.shape_sigma).max() < 0.5
  assert np.abs(np.degrees(params.rotation)).max() < 15
  expected_t = camera.centring_translation(ict_model.mean_shape,
                                           ict_model.landmark_vertices)
  np.testing.assert_allclose(params.translation,
                             np.broadcast_to(expected_t, (2, 3)), atol=30)
  np.testing.assert_allclose(params.sh_base[:, 0],
                             shading.AMBIENT_WHITE[0][None].repeat(2, 0),
                             atol=0.6)
  assert np.abs(prediction.geometry_offsets).max() < 2.0  # mm
  # The raw-to-parameter map is offset + scale * raw.
  zero = scaling.offset
  np.testing.assert_allclose(layout.split(zero).translation, expected_t,
                             rtol=1e-6)


def test_unknown_backbone_is_named(ict_model):
  layout = layout_lib.ParameterLayout.for_model(ict_model, 4)
  net = network.FaceNetwork(layout, ict_model.num_vertices,
                            backbone='resnet')
  with pytest.raises(ValueError, match="unknown backbone 'resnet'"):
    net.init(jax.random.PRNGKey(0), jnp.zeros((1, 240, 240, 3)),
             layout_lib.parameter_scaling(ict_model, layout))


def test_a_shared_light_builds_no_final_light_head(ict_model):
  for separate, expected in ((True, True), (False, False)):
    layout = layout_lib.ParameterLayout.for_model(ict_model, 4, separate)
    net = network.FaceNetwork(layout, ict_model.num_vertices, width=0.125,
                              dense_size=16, backbone='light')
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 240, 240, 3)),
                      layout_lib.parameter_scaling(ict_model, layout))
    assert ('sh_final_head' in params['params'][network.ENCODER]) == expected
