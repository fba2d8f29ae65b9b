"""A video's first pass: the tracked face, and the frames and mean of the
identity.

`track_faces` detects faces in every sampled frame (landmarks only, no
pixels kept) and follows one: the detection nearest the previous tracked
face. `choose_identity_frames` picks frames spread over the clip,
near-frontal and sharp; `shared_identity` is the robust mean of their
photo fits. `landmark_agreement` measures how far a fit's projected
landmarks lie from the detected ones.
"""

from typing import Callable, Iterable, List, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml import metrics
from mofa_ml.data import crop
from mofa_ml.data import dense_landmarks as dense_lib
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.fitting import pose_start
from mofa_ml.export import outputs
from mofa_ml.rendering import camera

# Frames whose photo fits are averaged into the identity.
IDENTITY_FRAMES = 5
# Identity frames come from those at most this much more turned than the
# most frontal one, degrees; there, 10 degrees of yaw cost as much as half
# the sharpness (`choose_identity_frames`).
YAW_MARGIN_DEGREES = 20.0
YAW_PER_SHARPNESS_HALVING = 10.0


# The tracked face is followed from frame to frame by the landmark
# predictor alone (`FaceLandmarker.follow`: on the benchmark's clips within
# 0.003 face-box widths of a new detection's points, median) and looked for
# by the detector again this many video frames after its last detection
# (a predictor that lost the face keeps answering in its box), where the
# face-mesh network sees no face at the followed points, or where they
# moved or resized by more than these fractions of the face.
REDETECT_FRAMES = 25
MAX_FOLLOWED_SHIFT = 0.25
MAX_FOLLOWED_RESIZE = 0.2


def face_size(landmarks: np.ndarray) -> float:
  """`metrics.box_size` of (68, 2) landmarks, pixels, at least 1e-6 (a
  divisor)."""
  return max(metrics.box_size(landmarks), 1e-6)


def centre_shift(landmarks: np.ndarray, previous: np.ndarray) -> float:
  """How far the centroid of (68, 2) `landmarks` lies from that of
  `previous`, over `face_size(previous)`."""
  return float(np.linalg.norm(np.mean(landmarks, axis=0) -
                              np.mean(previous, axis=0)) / face_size(previous))


def nearest_face(detections: List, previous: Optional[np.ndarray]):
  """The detection with the least `centre_shift` from the (68, 2)
  `previous` face; the detector's first (the largest) where there is no
  previous face."""
  if previous is None:
    return detections[0]
  return min(detections, key=lambda d: centre_shift(d.landmarks, previous))


def followed(landmarker, frame: np.ndarray, previous: np.ndarray):
  """The `Detection` of the face with (68, 2) landmarks `previous` in the
  frame before, by the landmark predictor alone; None where its points
  moved or resized too much to trust (then the detector looks)."""
  face = landmarker.follow(frame, previous)
  resize = abs(face_size(face.landmarks) / face_size(previous) - 1.0)
  return (face if centre_shift(face.landmarks, previous) <= MAX_FOLLOWED_SHIFT
          and resize <= MAX_FOLLOWED_RESIZE else None)


def redetected(landmarker, frame: np.ndarray, previous: np.ndarray):
  """The detections of a frame whose face, with (68, 2) landmarks
  `previous` in the frame before, was being followed: the detector looks
  for faces at least half its size (`detect`'s `min_face_px`, fourteen
  times faster at 720p); [] where none of those lies within
  `MAX_FOLLOWED_SHIFT` of it (then all faces are looked for)."""
  faces = landmarker.detect(frame, min_face_px=0.5 * face_size(previous))
  if not faces or centre_shift(nearest_face(faces, previous).landmarks,
                               previous) > MAX_FOLLOWED_SHIFT:
    return []
  return faces


class Track(NamedTuple):
  """The tracked face of each sampled frame (the first pass): frames (T,),
  found (T,) bool, landmarks (T, 68, 2) photo pixels, confidence (T, 68),
  yaw_degrees (T,) of the mean face at the landmarks' pose and sharpness
  (T,) the variance of the Laplacian of the grey face crop (NaN, or 0
  confidence, where no face was found), face_mesh (T,) the face-mesh
  network's points of each tracked face (None: no face, or no network)."""
  frames: np.ndarray
  found: np.ndarray
  landmarks: np.ndarray
  confidence: np.ndarray
  yaw_degrees: np.ndarray
  sharpness: np.ndarray
  face_mesh: Tuple[Optional[dense_lib.DenseLandmarks], ...]


def track_faces(model: fm.FaceModel, frames: Iterable, landmarker,
                progress: bool = False,
                face_mesh: Optional[Callable] = None) -> Track:
  """Finds the face in every (index, RGB uint8 frame) of `frames` and
  follows one: detected (`nearest_face`) every `REDETECT_FRAMES` frames or
  where `followed` loses it, followed by the landmark predictor between.
  `face_mesh`: (frame, landmarks) -> the face-mesh network's
  `DenseLandmarks` or None; followed points where it sees no face are
  lost, and each tracked face's are kept for the fits."""
  import cv2  # pylint: disable=g-import-not-at-top
  import tqdm  # pylint: disable=g-import-not-at-top
  intrinsics = camera.default_intrinsics(crop.CROP_SIZE)
  # previous: the last tracked face's landmarks (the nearest detection is
  # taken after a gap); following needs a face in the frame before.
  rows, previous, detected_at, seen = [], None, None, False
  for index, frame in tqdm.tqdm(frames, unit='frame', disable=not progress):
    face, mesh = None, None
    if seen and index - detected_at < REDETECT_FRAMES:
      face = followed(landmarker, frame, previous)
      if face is not None and face_mesh is not None:
        mesh = face_mesh(frame, face.landmarks)
        face = face if mesh is None or mesh.shows_face else None
    if face is None:
      faces = redetected(landmarker, frame, previous) if seen else []
      faces = faces or landmarker.detect(frame)
      if not faces:
        rows.append((index, False, np.full((68, 2), np.nan), np.zeros(68),
                     np.nan, np.nan, None))
        seen = False
        continue
      face, detected_at = nearest_face(faces, previous), index
      if face_mesh is not None:
        mesh = face_mesh(frame, face.landmarks)
    previous, seen = np.asarray(face.landmarks, np.float64), True
    transform = crop.crop_transform(previous)
    rotation, _ = pose_start.landmark_pose(
        model, intrinsics, jnp.asarray(crop.apply_transform(
            transform, previous), jnp.float32),
        jnp.asarray(face.point_confidence, jnp.float32))
    grey = cv2.cvtColor(crop.warp_crop(frame, transform), cv2.COLOR_RGB2GRAY)
    rows.append((index, True, previous, face.point_confidence,
                 float(np.degrees(rotation[1])),
                 float(cv2.Laplacian(grey, cv2.CV_64F).var()), mesh))
  if not rows:
    raise ValueError('no frames')
  columns = list(zip(*rows))
  meshes = columns.pop()
  columns = [np.asarray(column) for column in columns]
  return Track(columns[0], columns[1].astype(bool),
               columns[2].astype(np.float32), columns[3].astype(np.float32),
               *columns[4:], meshes)


def choose_identity_frames(yaw_degrees: np.ndarray, sharpness: np.ndarray,
                           count: int = IDENTITY_FRAMES) -> np.ndarray:
  """Positions of up to `count` frames to take the identity from.

  The candidates, frames with a face at most `YAW_MARGIN_DEGREES` more
  turned than the most frontal one, are split in time into `count` runs;
  each run gives its cheapest frame: |yaw| / YAW_PER_SHARPNESS_HALVING
  minus log2 of its sharpness over the candidates' median (clipped to
  [-3, 1]: no very sharp frame outweighs a turn).

  Args:
    yaw_degrees: (T,) NaN where there is no face.
    sharpness: (T,) e.g. the variance of the Laplacian.
  """
  yaw = np.abs(np.asarray(yaw_degrees, np.float64))
  candidates = np.flatnonzero(np.isfinite(yaw))
  if not len(candidates):
    return candidates
  candidates = candidates[yaw[candidates] <= yaw[candidates].min() +
                          YAW_MARGIN_DEGREES]
  sharp = np.maximum(np.asarray(sharpness, np.float64)[candidates], 1e-9)
  cost = yaw[candidates] / YAW_PER_SHARPNESS_HALVING - np.clip(
      np.log2(sharp / np.median(sharp)), -3.0, 1.0)
  runs = np.array_split(np.arange(len(candidates)),
                        min(count, len(candidates)))
  return np.asarray([candidates[run[np.argmin(cost[run])]] for run in runs])


def shared_identity(model: fm.FaceModel, layout: layout_lib.ParameterLayout,
                    faces: List[outputs.Reconstruction]):
  """The robust mean of photo fits of one person.

  With 3 fits or more, those whose shape and reflectance coefficients (in
  prior sigmas) lie more than twice the median distance from their
  median are left out; the rest are averaged (coefficients, lights,
  correctives).

  Returns:
    (size,) vector with expression 0 (its pose is to be replaced), (N, 3)
    geometry offsets, (N, 3) reflectance offsets, (K,) bool kept.
  """
  vectors = np.stack([np.asarray(layout.join(f.params)) for f in faces])
  codes = np.concatenate([
      vectors[:, slice(*layout.offsets[name])] / np.asarray(sigma)
      for name, sigma in (('shape', model.shape_sigma),
                          ('reflectance', model.reflectance_sigma))], 1)
  kept = np.ones(len(faces), bool)
  if len(faces) >= 3:
    distance = np.linalg.norm(codes - np.median(codes, 0), axis=1)
    kept = distance <= 2 * np.median(distance) + 1e-6
  vector = vectors[kept].mean(0)
  vector[slice(*layout.offsets['expression'])] = 0
  mean = lambda name: np.mean([getattr(f, name) for f, k in zip(faces, kept)
                               if k], axis=0).astype(np.float32)
  return (vector, mean('geometry_offsets'), mean('reflectance_offsets'),
          kept)


def landmark_agreement(model: fm.FaceModel, params: layout_lib.FaceParams,
                       geometry_offsets: np.ndarray,
                       photo_camera: camera.Intrinsics,
                       detected: np.ndarray) -> float:
  """Median over the 68 points of the distance (pixels) between the final
  level's projected landmarks and the (68, 2) detected ones, over
  `face_size` of the detected ones."""
  params = jax.tree_util.tree_map(jnp.asarray, params)
  projected = levels.projected_landmarks(
      model, levels.surfaces(model, params, jnp.asarray(geometry_offsets))[
          1].vertices, params, jnp.asarray(detected, jnp.float32),
      photo_camera)
  distance = np.linalg.norm(np.asarray(projected, np.float64) - detected,
                            axis=1)
  return float(np.median(distance) / face_size(detected))
