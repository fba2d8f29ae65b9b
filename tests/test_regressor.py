"""The trained regressor: loading checkpoints (old ones too) for inference."""

import os
import shutil

import jax
import numpy as np
import pytest

from mofa_ml.learning import checkpoints
from mofa_ml.learning import regressor as regressor_lib

DATA = os.path.join(os.path.dirname(__file__), 'data')


def test_a_checkpoint_of_version_0_1_0_loads_and_predicts_the_same():
  regressor = regressor_lib.Regressor.load(
      os.path.join(DATA, 'checkpoint_0_1_0'))
  assert regressor.config.model.face_model == 'ict'  # was bfm_path = ''
  images = np.random.default_rng(0).uniform(
      0, 1, (2, 240, 240, 3)).astype(np.float32)
  prediction = regressor.predict(images)
  with np.load(os.path.join(DATA, 'checkpoint_0_1_0_prediction.npz')) as old:
    vectors = jax.vmap(regressor.layout.join)(prediction.params)
    np.testing.assert_allclose(vectors, old['x'], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(prediction.geometry_offsets, old['g'],
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(prediction.reflectance_offsets, old['r'],
                               rtol=1e-4, atol=1e-6)


def test_old_configs_are_upgraded():
  old = {'model': {'bfm_path': '', 'width': 1.0}, 'seed': 0}
  assert checkpoints.upgrade_config(old)['model'] == {'face_model': 'ict',
                                                      'width': 1.0}
  bfm = {'model': {'bfm_path': '/m/BFM_model_front.mat'}}
  assert checkpoints.upgrade_config(bfm)['model']['face_model'] == (
      'bfm09:/m/BFM_model_front.mat')
  assert 'bfm_path' in old['model']  # the stored dict is left alone


def test_missing_and_foreign_checkpoints_are_named(tmp_path):
  with pytest.raises(ValueError, match='checkpoint folder not found'):
    regressor_lib.Regressor.load(str(tmp_path / 'nowhere'))
  with pytest.raises(ValueError, match='no checkpoint in'):
    regressor_lib.Regressor.load(str(tmp_path))
  broken = tmp_path / 'broken'
  shutil.copytree(os.path.join(DATA, 'checkpoint_0_1_0'), broken)
  for meta in broken.glob('*/meta/*'):
    if meta.is_file() and meta.name != 'commit_success.txt':
      meta.write_text('{"something": "else"}')
  with pytest.raises(ValueError, match='not a mofa_ml checkpoint'):
    regressor_lib.Regressor.load(str(broken))


def test_a_weights_file_predicts_as_its_checkpoint_and_is_checked(tmp_path):
  regressor = regressor_lib.Regressor.load(
      os.path.join(DATA, 'checkpoint_0_1_0'))
  path = str(tmp_path / 'weights.npz')
  regressor.save_weights(path)
  loaded = regressor_lib.Regressor.load(path)
  assert loaded.config.to_dict() == regressor.config.to_dict()
  images = np.random.default_rng(1).uniform(
      0, 1, (2, 240, 240, 3)).astype(np.float32)
  expected, actual = regressor.predict(images), loaded.predict(images)
  # float16 weights: the outputs move by float16's relative precision.
  np.testing.assert_allclose(
      jax.vmap(loaded.layout.join)(actual.params),
      jax.vmap(regressor.layout.join)(expected.params), rtol=0.02, atol=0.02)
  with pytest.raises(FileExistsError):
    regressor.save_weights(path)
  with pytest.raises(ValueError, match='ends in .npz'):
    regressor.save_weights(str(tmp_path / 'weights.bin'))
  with pytest.raises(ValueError, match='weights file not found'):
    regressor_lib.Regressor.load(str(tmp_path / 'missing.npz'))
  garbage = tmp_path / 'garbage.npz'
  garbage.write_bytes(b'not a zip')
  with pytest.raises(ValueError, match='not a weights file of this package'):
    regressor_lib.Regressor.load(str(garbage))
  # Another network's parameters are named, not loaded.
  with np.load(path) as stored:
    arrays = dict(stored)
  name = next(n for n in arrays if n.startswith('params/'))
  arrays[name] = arrays[name][..., :1]
  other = tmp_path / 'other.npz'
  np.savez(other, **arrays)
  with pytest.raises(ValueError, match='shape'):
    regressor_lib.Regressor.load(str(other))
