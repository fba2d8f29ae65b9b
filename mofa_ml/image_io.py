"""Reading photos and writing pictures, with clear errors and atomic writes."""

import io
import os
import tempfile
from typing import Optional

import numpy as np
import PIL.Image
import PIL.ImageOps


def _rgb8(image: PIL.Image.Image) -> np.ndarray:
  """(H, W, 3) uint8 of any Pillow mode, high bit depths scaled (not
  clipped): 16-bit to 8-bit, float images by their range."""
  mode = image.mode
  if mode.startswith('I;16') or mode in ('I', 'F'):
    values = np.asarray(image, np.float64)
    if mode.startswith('I;16'):
      top = 65535.0
    elif mode == 'I':  # 32-bit integers: 16-bit PNGs arrive like this too
      top = 65535.0 if values.max() > 255 else 255.0
    else:  # float: [0, 1] as is, anything larger by its maximum
      values = np.nan_to_num(values)
      top = max(1.0, float(values.max()))
    grey = np.round(np.clip(values / top, 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)
  if mode != 'RGB':
    image = image.convert('RGB')
  # Strip by strip: np.asarray(image) would hold two more full copies
  # (Pillow's tobytes), 270 MB for 50 megapixels.
  width, height = image.size
  rgb = np.empty((height, width, 3), np.uint8)
  for top in range(0, height, 512):
    bottom = min(height, top + 512)
    rgb[top:bottom] = np.asarray(image.crop((0, top, width, bottom)))
  return rgb


def load_photo(path: str) -> np.ndarray:
  """Reads a photo as 8-bit RGB (the form detection and cropping take).

  EXIF orientation is applied; grey, palette, alpha, CMYK, 16-bit and float
  images become RGB (alpha is dropped, high bit depths are scaled).

  Args:
    path: any format Pillow reads (JPEG, PNG, TIFF, PPM, ...).

  Returns:
    (H, W, 3) uint8.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not a readable image.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'image not found: {path}')
  try:
    with PIL.Image.open(path) as image:
      # In place and without a conversion where the photo is RGB already:
      # each copy of a 50-megapixel photo costs 150-200 MB.
      image.load()
      PIL.ImageOps.exif_transpose(image, in_place=True)
      rgb = _rgb8(image)
  except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError,
          PIL.Image.DecompressionBombError) as e:
    raise ValueError(f'{path}: not a readable image ({e})') from None
  if rgb.ndim != 3 or min(rgb.shape[:2]) < 1:
    raise ValueError(f'{path}: not a readable image (shape {rgb.shape})')
  return rgb


def load_image(path: str) -> np.ndarray:
  """`load_photo` as (H, W, 3) float32 in [0, 1]."""
  return load_photo(path).astype(np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Float image in [0, 1] (clipped) or uint8 -> uint8."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def current_umask() -> int:
  """The process's umask (read by setting and restoring it)."""
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def atomic_write_bytes(path: str, data: bytes, overwrite: bool = False) -> None:
  """Writes `data` to `path` through a temporary file and a rename.

  A reader never sees a half-written file, and an existing file is kept
  unless `overwrite`.

  Raises:
    FileExistsError: `path` exists and `overwrite` is False.
    IsADirectoryError: `path` is a folder.
  """
  if os.path.isdir(path):  # else found only after the work, by the rename
    raise IsADirectoryError(f'{path} is a folder, not a file')
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f'{path} exists; pass --overwrite to replace it')
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  handle, temporary = tempfile.mkstemp(dir=directory, prefix='.partial-')
  try:
    with os.fdopen(handle, 'wb') as f:
      f.write(data)
    # mkstemp makes the file private (0600); give it the mode a plain open()
    # would have, as the umask says (0644 under umask 022).
    os.chmod(temporary, 0o666 & ~current_umask())
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


def _image_format(path: str) -> str:
  extension = os.path.splitext(path)[1].lower().lstrip('.') or 'png'
  return {'jpg': 'JPEG', 'jpeg': 'JPEG'}.get(extension, extension.upper())


def check_image_target(path: str, overwrite: bool = False) -> None:
  """Refuses, before any work, a path `save_image` could not write.

  Raises:
    FileExistsError: `path` exists and not `overwrite`.
    ValueError: `path` is a folder, lies under a file, or has a suffix
      that names no image type Pillow writes.
  """
  if os.path.isdir(path) or path.endswith(os.sep) or not path:
    raise ValueError(f'{path or "(empty)"} is a folder; name an image file, '
                     'e.g. face.png')
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f'{path} exists; pass --overwrite to replace it')
  PIL.Image.init()
  if _image_format(path) not in PIL.Image.SAVE:
    raise ValueError(f'{path}: cannot write images of type '
                     f'{os.path.splitext(path)[1]} (use .png or .jpg)')
  blocking = file_above(path)
  if blocking:
    raise ValueError(f'{path}: {blocking} is a file, not a folder')


def file_above(path: str) -> Optional[str]:
  """The file among `path`'s existing ancestors, under which `path` can
  never be made (os.makedirs would say only 'Not a directory'), or None."""
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.lexists(parent):
    parent = os.path.dirname(parent)
  return None if os.path.isdir(parent) else parent


def save_image(path: str, image: np.ndarray, overwrite: bool = False) -> None:
  """Saves an (H, W, 3) or (H, W) image atomically; format from the suffix."""
  buffer = io.BytesIO()
  extension = os.path.splitext(path)[1].lower().lstrip('.') or 'png'
  image_format = _image_format(path)
  try:
    PIL.Image.fromarray(to_uint8(image)).save(buffer, format=image_format)
  except (KeyError, ValueError) as e:
    raise ValueError(f'{path}: cannot write images of type .{extension} '
                     f'({e})') from None
  atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)
