"""Parameter layout and the compact code."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofa_ml.facemodel import layout as layout_lib

PAPER = dict(num_shape=80, num_expression=64, num_reflectance=80)


@pytest.mark.parametrize('correctives', [0, 100, 500])
def test_paper_dimensions_give_257_plus_2c(correctives):
  shared = layout_lib.ParameterLayout(**PAPER, num_correctives=correctives,
                                      separate_final_sh=False)
  assert shared.base_size == 257
  assert shared.size == 257 + 2 * correctives
  separate = layout_lib.ParameterLayout(**PAPER, num_correctives=correctives)
  assert separate.size == 257 + 2 * correctives + 27


def test_split_join_round_trip_with_batch_axes():
  layout = layout_lib.ParameterLayout(80, 53, 80, 7)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, layout.size))
  params = layout.split(x)
  chex.assert_shape(params.shape, (2, 3, 80))
  chex.assert_shape(params.expression, (2, 3, 53))
  chex.assert_shape(params.reflectance, (2, 3, 80))
  chex.assert_shape([params.rotation, params.translation], (2, 3, 3))
  chex.assert_shape([params.sh_base, params.sh_final], (2, 3, 9, 3))
  chex.assert_shape([params.correctives_geometry,
                     params.correctives_reflectance], (2, 3, 7))
  np.testing.assert_array_equal(layout.join(params), x)
  # Offsets are contiguous and in the documented order.
  start, stop = layout.offsets['translation']
  np.testing.assert_array_equal(params.translation, x[..., start:stop])
  assert list(layout.offsets) == list(layout_lib.FaceParams._fields)
  # gamma is stored coefficient-major: entry 3 b + c is coefficient b of c.
  np.testing.assert_array_equal(params.sh_base[..., 4, 2],
                                x[..., layout.offsets['sh_base'][0] + 14])


def test_shared_final_sh_has_none_and_errors_are_clear():
  layout = layout_lib.ParameterLayout(10, 5, 10, 2, separate_final_sh=False)
  params = layout.split(jnp.arange(layout.size, dtype=jnp.float32))
  assert params.sh_final is None
  with pytest.raises(ValueError, match='needs'):
    layout.split(jnp.zeros(layout.size + 1))
  with pytest.raises(ValueError, match='non-negative'):
    layout_lib.ParameterLayout(-1, 5, 10)
  separate = layout_lib.ParameterLayout(10, 5, 10, 2)
  with pytest.raises(ValueError, match='sh_final is None'):
    separate.join(params)


def test_compact_code_round_trip_and_size(ict_model):
  layout = layout_lib.ParameterLayout.for_model(ict_model, 500)
  x = np.random.default_rng(0).normal(size=layout.size).astype(np.float32)
  code = layout_lib.encode(x, layout, ict_model.name)
  assert len(code) == 18 + 4 * layout.size == 5110
  assert len(code) < 5 * 1024
  decoded, decoded_layout = layout_lib.decode(code, ict_model.name)
  np.testing.assert_array_equal(decoded, x)
  assert decoded_layout == layout
  # The paper's 257 + 2C layout also fits in 5 KiB.
  paper = layout_lib.ParameterLayout(**PAPER, num_correctives=500,
                                     separate_final_sh=False)
  assert len(layout_lib.encode(np.zeros(paper.size), paper, 'bfm')) < 5 * 1024


def test_compact_code_rejects_foreign_or_damaged_data(ict_model):
  layout = layout_lib.ParameterLayout.for_model(ict_model, 3)
  code = layout_lib.encode(np.zeros(layout.size), layout, ict_model.name)
  with pytest.raises(ValueError, match='another face model'):
    layout_lib.decode(code, 'bfm09_front')
  with pytest.raises(ValueError, match='bytes'):
    layout_lib.decode(code[:-4])
  with pytest.raises(ValueError, match='magic'):
    layout_lib.decode(b'PNG' + code[3:])
  with pytest.raises(ValueError, match='expected'):
    layout_lib.encode(np.zeros(layout.size - 1), layout, ict_model.name)
