"""Reading photos and writing pictures, with clear errors and atomic writes."""

import io
import os
import tempfile

import numpy as np
import PIL.Image
import PIL.ImageOps


def load_image(path: str) -> np.ndarray:
  """Reads a photo as RGB.

  EXIF orientation is applied and grey or palette images become RGB.

  Args:
    path: any format Pillow reads (JPEG, PNG, PPM, ...).

  Returns:
    (H, W, 3) float32 in [0, 1].

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not a readable image.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'image not found: {path}')
  try:
    with PIL.Image.open(path) as image:
      image = PIL.ImageOps.exif_transpose(image)
      rgb = np.asarray(image.convert('RGB'))
  except (PIL.UnidentifiedImageError, OSError, SyntaxError) as e:
    raise ValueError(f'{path}: not a readable image ({e})') from None
  return rgb.astype(np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Float image in [0, 1] (clipped) or uint8 -> uint8."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def atomic_write_bytes(path: str, data: bytes, overwrite: bool = False) -> None:
  """Writes `data` to `path` through a temporary file and a rename.

  A reader never sees a half-written file, and an existing file is kept
  unless `overwrite`.

  Raises:
    FileExistsError: `path` exists and `overwrite` is False.
  """
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f'{path} exists; pass --overwrite to replace it')
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  handle, temporary = tempfile.mkstemp(dir=directory, prefix='.partial-')
  try:
    with os.fdopen(handle, 'wb') as f:
      f.write(data)
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


def save_image(path: str, image: np.ndarray, overwrite: bool = False) -> None:
  """Saves an (H, W, 3) or (H, W) image atomically; format from the suffix."""
  buffer = io.BytesIO()
  extension = os.path.splitext(path)[1].lower().lstrip('.') or 'png'
  image_format = {'jpg': 'JPEG', 'jpeg': 'JPEG'}.get(extension,
                                                    extension.upper())
  try:
    PIL.Image.fromarray(to_uint8(image)).save(buffer, format=image_format)
  except (KeyError, ValueError) as e:
    raise ValueError(f'{path}: cannot write images of type .{extension} '
                     f'({e})') from None
  atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)
