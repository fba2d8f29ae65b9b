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


def test_high_bit_depth_palette_and_alpha_images_are_scaled_not_clipped(
    tmp_path):
  import PIL.Image  # pylint: disable=g-import-not-at-top
  ramp = np.linspace(0.0, 1.0, 64 * 32).reshape(32, 64)
  cases = {
      'grey16.png': PIL.Image.fromarray((ramp * 65535).astype(np.uint16)),
      'float.tif': PIL.Image.fromarray(ramp.astype(np.float32), mode='F'),
      'float_wide.tif': PIL.Image.fromarray((ramp * 1000).astype(np.float32),
                                            mode='F'),
      'grey_alpha.png': PIL.Image.fromarray(
          np.stack([(ramp * 255).astype(np.uint8),
                    np.full((32, 64), 128, np.uint8)], -1), mode='LA'),
      'palette.png': PIL.Image.fromarray(
          (ramp * 255).astype(np.uint8)).convert('P'),
  }
  for name, image in cases.items():
    path = str(tmp_path / name)
    image.save(path)
    photo = image_io.load_photo(path)
    assert photo.shape == (32, 64, 3) and photo.dtype == np.uint8, name
    # The ramp survives: dark on the left, bright on the right, not clipped.
    np.testing.assert_allclose(photo[..., 0], ramp * 255, atol=3,
                               err_msg=name)


def test_written_files_follow_the_umask(tmp_path):
  old = os.umask(0o022)
  try:
    path = str(tmp_path / 'a.png')
    image_io.save_image(path, np.zeros((4, 4, 3)))
    assert os.stat(path).st_mode & 0o777 == 0o644
    os.umask(0o077)
    image_io.atomic_write_bytes(str(tmp_path / 'b.bin'), b'x')
    assert os.stat(tmp_path / 'b.bin').st_mode & 0o777 == 0o600
  finally:
    os.umask(old)
