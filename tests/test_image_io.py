"""Photo loading and atomic picture writing."""

import os

import numpy as np
import pytest

from mofa_ml import image_io
from mofa_ml import samples


def test_loads_jpeg_and_ppm_as_float_rgb():
  for sample in samples.sample_faces().values():
    image = image_io.load_image(sample.image_path)
    assert image.ndim == 3 and image.shape[2] == 3
    assert image.dtype == np.float32 and 0.0 <= image.min() <= image.max() <= 1
    assert image.std() > 0.05


def test_grey_image_becomes_rgb_and_round_trips(tmp_path):
  grey = (np.arange(64 * 48).reshape(48, 64) % 256).astype(np.uint8)
  path = os.path.join(tmp_path, 'grey.png')
  image_io.save_image(path, grey)
  loaded = image_io.load_image(path)
  assert loaded.shape == (48, 64, 3)
  np.testing.assert_allclose(loaded[..., 1] * 255, grey, atol=0.5)


def test_errors_and_no_silent_overwrite(tmp_path):
  with pytest.raises(FileNotFoundError):
    image_io.load_image(os.path.join(tmp_path, 'nothing.jpg'))
  text = os.path.join(tmp_path, 'notes.jpg')
  with open(text, 'w') as f:
    f.write('not an image')
  with pytest.raises(ValueError, match='not a readable image'):
    image_io.load_image(text)
  path = os.path.join(tmp_path, 'out.png')
  image_io.save_image(path, np.zeros((4, 4, 3)))
  with pytest.raises(FileExistsError, match='--overwrite'):
    image_io.save_image(path, np.ones((4, 4, 3)))
  assert image_io.load_image(path).max() == 0.0  # untouched
  image_io.save_image(path, np.ones((4, 4, 3)), overwrite=True)
  assert image_io.load_image(path).min() == 1.0
  assert sorted(os.listdir(tmp_path)) == ['notes.jpg', 'out.png']
