"""Tight face crops: a similarity transform from the landmarks.

Convention shared by real and synthetic data: the crop is `size` x `size`
(240), axis-aligned (no rotation: the network regresses roll), centred on
the landmarks' bounding box, which spans `extent` (0.65) of the crop side.
The synthetic corpus draws this fraction in [0.55, 0.75].
"""

import cv2
import numpy as np

CROP_SIZE = 240
LANDMARK_EXTENT = 0.65


def crop_transform(landmarks: np.ndarray, size: int = CROP_SIZE,
                   extent: float = LANDMARK_EXTENT) -> np.ndarray:
  """(2, 3) affine map from photo pixels to crop pixels.

  Args:
    landmarks: (L, 2) pixel positions in the photo.
    size: crop side, pixels.
    extent: fraction of the crop side that the landmarks' box spans.

  Returns:
    A = [[s, 0, tx], [0, s, ty]]: crop = s * photo + t (pixel centres at
    integer coordinates in both images).
  """
  landmarks = np.asarray(landmarks, np.float64)
  low, high = landmarks.min(axis=0), landmarks.max(axis=0)
  side = float(np.max(high - low))
  if not np.isfinite(side) or side <= 0:
    raise ValueError('landmarks span no area; cannot crop')
  scale = extent * size / side
  centre = (low + high) / 2.0
  shift = (size - 1) / 2.0 - scale * centre
  return np.array([[scale, 0.0, shift[0]], [0.0, scale, shift[1]]])


def apply_transform(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
  """(N, 2) points mapped by a (2, 3) affine transform."""
  points = np.asarray(points, np.float64)
  return points @ transform[:, :2].T + transform[:, 2]


def invert_transform(transform: np.ndarray) -> np.ndarray:
  """The (2, 3) inverse of an invertible affine transform."""
  return cv2.invertAffineTransform(np.asarray(transform, np.float64))


def warp_crop(image: np.ndarray, transform: np.ndarray,
              size: int = CROP_SIZE) -> np.ndarray:
  """Resamples the crop (OpenCV: area-averaged when shrinking, bilinear
  otherwise; borders replicate the edge so no black frame appears).

  Args:
    image: (H, W, 3) uint8 photo.
    transform: (2, 3) photo -> crop map.

  Returns:
    (size, size, 3) uint8.
  """
  scale = abs(transform[0, 0])
  if scale < 1.0:
    # Pre-shrink by an integer factor with area averaging against aliasing.
    factor = int(1.0 / scale)
    if factor > 1:
      small = cv2.resize(image, (max(1, image.shape[1] // factor),
                                 max(1, image.shape[0] // factor)),
                         interpolation=cv2.INTER_AREA)
      shrink = np.array([[image.shape[1] / small.shape[1], 0, 0],
                         [0, image.shape[0] / small.shape[0], 0]])
      # Map small-image pixel centres back to the full image, then on.
      to_full = np.array([[shrink[0, 0], 0, (shrink[0, 0] - 1) / 2],
                          [0, shrink[1, 1], (shrink[1, 1] - 1) / 2]])
      transform = np.vstack([transform, [0, 0, 1]]) @ np.vstack(
          [to_full, [0, 0, 1]])
      transform, image = transform[:2], small
  return cv2.warpAffine(image, transform, (size, size),
                        flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
