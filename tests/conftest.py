"""Shared fixtures. The bundled model loads once per test session."""

import os
import tempfile

import pytest

from mofa_ml.facemodel import face_model

# `mofa` subprocesses share one compilation cache across tests and runs,
# away from the user's own.
os.environ.setdefault('MOFA_COMPILATION_CACHE',
                      os.path.join(tempfile.gettempdir(), 'mofa_test_jax'))


def pytest_addoption(parser):
  parser.addoption(
      '--heavy', action='store_true',
      help='Also run the tests marked heavy (minutes each: training, '
      'notebooks, an 8000 x 6000 photo, fresh interpreters, a video, '
      'regressor checkpoints); .ci/run does.')


def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'heavy: minutes on 2 CPU cores; runs only with --heavy.')


def pytest_collection_modifyitems(config, items):
  if config.getoption('--heavy'):
    return
  heavy = [item for item in items if 'heavy' in item.keywords]
  if heavy:
    config.hook.pytest_deselected(items=heavy)
    items[:] = [item for item in items if 'heavy' not in item.keywords]


@pytest.fixture(scope='session')
def ict_model():
  return face_model.load_face_model()


@pytest.fixture(scope='session')
def tiny_data_dir(tmp_path_factory):
  """A TFDS folder holding the prepared 'mofa_synthetic/tiny' corpus."""
  from mofa_ml.data import input_pipeline  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  input_pipeline.load_source('mofa_synthetic/tiny', 'train', data_dir)
  return data_dir
