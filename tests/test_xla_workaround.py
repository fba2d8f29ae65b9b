"""The XLA:CPU workaround: the miscompiled pattern computes right values
once mofa_ml is imported, and the flag is only added where it belongs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mofa_ml  # pylint: disable=unused-import
from mofa_ml import xla_workaround


def test_broadcast_multiply_reduce_matches_numpy_when_jitted():
  # jax-ml/jax#39103's pattern at the face model's size: wrong values for
  # every field after the first without the workaround on jaxlib 0.10.2.
  normals = np.random.default_rng(0).normal(size=(6706, 3)).astype(np.float32)
  fields = np.random.default_rng(1).normal(size=(2, 6706, 3)).astype(
      np.float32)
  projected = jax.jit(lambda n, d: n * jnp.sum(n * d, -1, keepdims=True))(
      normals, fields)
  expected = normals * np.sum(normals * fields, -1, keepdims=True)
  np.testing.assert_allclose(projected, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('version, added', [((0, 10, 1), False),
                                            ((0, 10, 2), True),
                                            ((0, 11, 0), True),
                                            ((0, 12, 0), False),
                                            (None, False)])
def test_flag_added_only_for_affected_jaxlibs(monkeypatch, version, added):
  monkeypatch.setattr(xla_workaround, 'jaxlib_version', lambda: version)
  monkeypatch.setattr(xla_workaround, '_backend_started', lambda: False)
  environ = {'XLA_FLAGS': '--xla_dump_to=/tmp/x'}
  assert xla_workaround.apply(environ) is added
  assert environ['XLA_FLAGS'] == ('--xla_dump_to=/tmp/x' + (
      f' {xla_workaround.FLAG_NAME}=' if added else ''))


def test_users_own_setting_is_kept(monkeypatch):
  monkeypatch.setattr(xla_workaround, 'jaxlib_version', lambda: (0, 10, 2))
  environ = {'XLA_FLAGS': f'{xla_workaround.FLAG_NAME}=reduce'}
  assert not xla_workaround.apply(environ)
  assert environ['XLA_FLAGS'] == f'{xla_workaround.FLAG_NAME}=reduce'


def test_warns_when_the_backend_already_started(monkeypatch):
  monkeypatch.setattr(xla_workaround, 'jaxlib_version', lambda: (0, 10, 2))
  jnp.ones(2).block_until_ready()
  with pytest.warns(UserWarning, match='import mofa_ml first'):
    assert xla_workaround.apply({})
