"""MediaPipe's 468-point face mesh as a dense landmark detector.

The network (`assets/mediapipe/face_landmark.tflite`, Apache-2.0, from the
mediapipe 0.10.21 wheel) is run with LiteRT (`ai-edge-litert`), not the
`mediapipe` package, which pins numpy<2 and protobuf<5.

It sees a 192 x 192 RGB crop in [0, 1] (inputs in [-1, 1] gave 15% larger
errors on the bundled photos), a square region of interest (ROI)
rotated so the eye line is horizontal, and returns 468 points (x, y in
crop pixels, z relative depth on the same scale) and a face-presence logit.
As in MediaPipe, the ROI is placed twice: first on a face's dlib 68
landmarks, then on the network's own 468 points (its tracking mode), and
the second pass is returned.

Coordinates follow mofa_ml's pixel-centre convention: the centre of pixel
(row i, column j) is at (x=j, y=i).
"""

from importlib import resources
from typing import NamedTuple, Optional

import cv2
import numpy as np

from mofa_ml.facemodel import landmarks as lm

NUM_POINTS = 468
INPUT_SIZE = 192
# MediaPipe face-mesh indices of the outer eye corners (subject's right,
# left): the ROI's rotation in the tracking pass.
RIGHT_EYE_CORNER = 33
LEFT_EYE_CORNER = 263
# ROI side over the face's extent (the larger side of the points' box in
# the eye-aligned frame): MediaPipe's 1.5 on its own 468 points. On the 68
# points, which stop at the brows, the first pass's box is 1.6 times their
# extent, its centre moved up (towards the forehead) by 0.1 of it. Measured
# on the bundled photos (mean error of the test points over the outer-eye
# distance, both passes): 0.060 there, 0.060-0.066 over the plateau of
# factors 1.5-1.7 and shifts 0-0.15, 0.068-0.086 at factors 1.3 and 2.0.
MESH_ROI_SCALE = 1.5
IBUG_ROI_SCALE = 1.6
IBUG_ROI_SHIFT = 0.1
# The face-presence probability below which the network sees no face and
# its points are not used (its own threshold in MediaPipe).
MIN_PRESENCE = 0.5


class Roi(NamedTuple):
  """A square, rotated region of interest.

  Attributes:
    centre: (2,) float, image pixels.
    size: side, image pixels.
    angle: rotation, radians: the crop's x axis is the image's x axis
      rotated by `angle` (clockwise on screen, as y points down).
  """
  centre: np.ndarray
  size: float
  angle: float

  def crop_to_image(self, input_size: int = INPUT_SIZE) -> np.ndarray:
    """(2, 3) affine map of crop pixel centres to image pixel centres."""
    scale = self.size / input_size
    cos, sin = np.cos(self.angle) * scale, np.sin(self.angle) * scale
    linear = np.array([[cos, -sin], [sin, cos]])
    # Crop pixel centre u lies u + 0.5 from the crop's edge, whose middle
    # is input_size / 2.
    offset = np.asarray(self.centre, np.float64) - linear @ np.full(
        2, (input_size - 1) / 2.0)
    return np.concatenate([linear, offset[:, None]], axis=1)

  def image_to_crop(self, input_size: int = INPUT_SIZE) -> np.ndarray:
    """(2, 3) affine map of image pixel centres to crop pixel centres."""
    return cv2.invertAffineTransform(self.crop_to_image(input_size))


class DenseLandmarks(NamedTuple):
  """One face's 468 MediaPipe points.

  Attributes:
    points: (468, 2) float32, image pixels.
    depth: (468,) float32, the network's relative depth (larger: farther
      from the camera), image pixels.
    presence: face-presence probability in [0, 1].
    roi: the region the network saw.
  """
  points: np.ndarray
  depth: np.ndarray
  presence: float
  roi: Roi

  @property
  def shows_face(self) -> bool:
    return self.presence >= MIN_PRESENCE


def _check_points(points: np.ndarray, count: int, name: str) -> np.ndarray:
  points = np.asarray(points, np.float64)
  if points.shape != (count, 2):
    raise ValueError(f'{name} must be ({count}, 2), got {points.shape}')
  if not np.all(np.isfinite(points)):
    raise ValueError(f'{name} must be finite')
  return points


def _roi_around(points: np.ndarray, right_eye: np.ndarray,
                left_eye: np.ndarray, scale: float,
                shift: float = 0.0) -> Roi:
  """The square ROI of `points` (P, 2) in the frame whose x axis runs from
  the subject's right eye to the left one (to the right on screen)."""
  direction = left_eye - right_eye
  angle = float(np.arctan2(direction[1], direction[0]))
  cos, sin = np.cos(angle), np.sin(angle)
  # Rows of `to_aligned` are the aligned frame's axes in image coordinates.
  to_aligned = np.array([[cos, sin], [-sin, cos]])
  aligned = points @ to_aligned.T
  low, high = aligned.min(axis=0), aligned.max(axis=0)
  extent = float(np.max(high - low))
  centre = (low + high) / 2 - [0.0, shift * extent]
  return Roi(centre=centre @ to_aligned, size=scale * extent, angle=angle)


def roi_from_ibug(landmarks: np.ndarray, scale: float = IBUG_ROI_SCALE,
                  shift: float = IBUG_ROI_SHIFT) -> Roi:
  """The ROI of the first pass, from (68, 2) iBUG landmarks (pixels).

  Rotated by the line through the eye centres (points 36-41, 42-47).

  Raises:
    ValueError: `landmarks` is not (68, 2) or not finite.
  """
  landmarks = _check_points(landmarks, lm.NUM_LANDMARKS, 'landmarks')
  return _roi_around(landmarks, landmarks[list(lm.RIGHT_EYE)].mean(axis=0),
                     landmarks[list(lm.LEFT_EYE)].mean(axis=0), scale, shift)


def roi_from_mesh(points: np.ndarray, scale: float = MESH_ROI_SCALE) -> Roi:
  """The ROI of the tracking pass, from (468, 2) face-mesh points (pixels).

  Rotated by the line through the outer eye corners (points 33, 263).

  Raises:
    ValueError: `points` is not (468, 2) or not finite.
  """
  points = _check_points(points, NUM_POINTS, 'points')
  return _roi_around(points, points[RIGHT_EYE_CORNER],
                     points[LEFT_EYE_CORNER], scale)


def to_crop(points: np.ndarray, roi: Roi) -> np.ndarray:
  """(P, 2) image pixels -> crop pixels of `roi`'s 192 x 192 input."""
  transform = roi.image_to_crop()
  return np.asarray(points, np.float64) @ transform[:, :2].T + transform[:, 2]


def to_image(points: np.ndarray, roi: Roi) -> np.ndarray:
  """(P, 2) crop pixels of `roi`'s input -> image pixels."""
  transform = roi.crop_to_image()
  return np.asarray(points, np.float64) @ transform[:, :2].T + transform[:, 2]


def crop(image: np.ndarray, roi: Roi) -> np.ndarray:
  """(192, 192, 3) float32 in [0, 1]: the network's input for `roi`.

  Bilinear; outside the image the border pixels repeat, as a photo's
  surroundings are more like its border than like black.
  """
  image = _as_uint8(image)
  pixels = cv2.warpAffine(image, roi.image_to_crop(),
                          (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
  return pixels.astype(np.float32) / 255.0


class DenseLandmarker:
  """MediaPipe's face-mesh network, run with LiteRT on one CPU thread.

  Each object loads the model once; it is not thread-safe (one interpreter).
  """

  def __init__(self, model_path: Optional[str] = None, num_threads: int = 1):
    try:
      from ai_edge_litert import interpreter  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(f'dense landmarks need ai-edge-litert (pip install '
                        f'-e .): {e}') from None
    if model_path is None:
      model_path = str(resources.files('mofa_ml') / 'assets' / 'mediapipe' /
                       'face_landmark.tflite')
    # Without the default XNNPACK delegate: it prints an INFO line on every
    # start, and this small network runs in ~5 ms a crop without it.
    self._interpreter = interpreter.Interpreter(
        model_path=model_path, num_threads=num_threads,
        experimental_op_resolver_type=(
            interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    self._interpreter.allocate_tensors()
    self._input = self._interpreter.get_input_details()[0]['index']
    # Outputs by size: 1404 = 468 x 3 landmark values, 1 presence logit.
    outputs = {int(np.prod(detail['shape'])): detail['index']
               for detail in self._interpreter.get_output_details()}
    self._points_output = outputs[NUM_POINTS * 3]
    self._presence_output = outputs[1]

  def run_crop(self, pixels: np.ndarray):
    """Runs the network on one (192, 192, 3) float32 crop in [0, 1].

    Returns:
      points: (468, 3) float32 (x, y crop pixel centres, z on x's scale).
      presence: float in [0, 1].
    """
    if pixels.shape != (INPUT_SIZE, INPUT_SIZE, 3):
      raise ValueError(f'crop must be ({INPUT_SIZE}, {INPUT_SIZE}, 3), got '
                       f'{pixels.shape}')
    self._interpreter.set_tensor(self._input,
                                 np.asarray(pixels, np.float32)[None])
    self._interpreter.invoke()
    points = self._interpreter.get_tensor(self._points_output).reshape(
        NUM_POINTS, 3).copy()
    # The network counts from the crop's edge; pixel centres sit at +0.5.
    points[:, :2] -= 0.5
    logit = self._interpreter.get_tensor(self._presence_output).ravel()[0]
    return points, float(1.0 / (1.0 + np.exp(-float(logit))))

  def in_roi(self, image: np.ndarray, roi: Roi) -> DenseLandmarks:
    """The 468 points of the face in `roi` of `image`."""
    raw, presence = self.run_crop(crop(image, roi))
    scale = roi.size / INPUT_SIZE
    return DenseLandmarks(
        points=to_image(raw[:, :2], roi).astype(np.float32),
        depth=(raw[:, 2] * scale).astype(np.float32),
        presence=presence, roi=roi)

  def __call__(self, image: np.ndarray, landmarks: np.ndarray
               ) -> DenseLandmarks:
    """The 468 points of the face with these 68 landmarks.

    Args:
      image: (H, W, 3) uint8 RGB, or float in [0, 1].
      landmarks: (68, 2) iBUG landmarks, image pixels (e.g. a
        `detection.Detection`'s).

    Returns:
      DenseLandmarks of the tracking pass.

    Raises:
      ValueError: wrong image or landmark shapes.
    """
    image = _as_uint8(image)
    first = self.in_roi(image, roi_from_ibug(landmarks))
    return self.in_roi(image, roi_from_mesh(first.points))


def _as_uint8(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f'image must be (H, W, 3) RGB, got {image.shape}')
  if image.dtype != np.uint8:
    image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
  return image
