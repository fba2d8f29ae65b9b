"""Shared fixtures. The bundled model loads once per test session."""

import os
import tempfile

import pytest

from mofa_ml.facemodel import face_model

# `mofa` subprocesses share one compilation cache across tests and runs,
# away from the user's own.
os.environ.setdefault('MOFA_COMPILATION_CACHE',
                      os.path.join(tempfile.gettempdir(), 'mofa_test_jax'))


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
