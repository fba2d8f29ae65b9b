"""Shared fixtures. The bundled model loads once per test session."""

import pytest

from mofa_ml import face_model


@pytest.fixture(scope='session')
def ict_model():
  return face_model.load_face_model()
