"""MediaPipe's 468 face-mesh points as fixed points on the ICT front face.

Each point is a triangle of the model (an index into `model.triangles`)
and barycentric weights, so it follows any identity and expression of the
model: a fitter compares the projected surface points with the 468 points
`data.dense_landmarks` detects. The asset `assets/mediapipe_ict.npz` is
built from renders of the model by `data.build_dense_registration`,
which also measures how consistently the network places each point on the
surface (`spread_mm`, `hit_rate`).
"""

from importlib import resources
from typing import NamedTuple, Optional, Tuple

import numpy as np

from mofa_ml import metrics

ASSET = 'mediapipe_ict.npz'
NUM_POINTS = 468
# MediaPipe's FACEMESH_FACE_OVAL, in order around the face from the top of
# the forehead (10) through the subject's left side to the chin (152) and
# back: entry k and entry 36 - k are mirror images.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397,
             365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58,
             132, 93, 234, 127, 162, 21, 54, 103, 67, 109)


class DenseRegistration(NamedTuple):
  """Where the 468 points lie on the model's surface.

  Attributes:
    triangles: (468,) int32 index into the model's (F, 3) triangles.
    barycentrics: (468, 3) float32 weights of the triangle's corners,
      non-negative, summing to 1.
    spread_mm: (468,) float32 median distance of the per-render hits from
      the registered point on the mean face, mm (large: the network places
      the point inconsistently on the surface).
    hit_rate: (468,) float32 fraction of renders where the point fell on
      the face mesh.
    contour: (468,) bool, the face-oval points: their surface point moves
      with the view (silhouette), so a fitter should let them slide or
      weigh them less.
    source: how the asset was made.
  """
  triangles: np.ndarray
  barycentrics: np.ndarray
  spread_mm: np.ndarray
  hit_rate: np.ndarray
  contour: np.ndarray
  source: str

  def surface_points(self, vertices, model_triangles):
    """(..., 468, 3) the points on a mesh of the model's topology.

    Args:
      vertices: (..., N, 3) positions (numpy or JAX).
      model_triangles: (F, 3) the model's triangles.
    """
    corners = np.asarray(model_triangles)[self.triangles]  # (468, 3)
    return (vertices[..., corners, :] *
            self.barycentrics[:, :, None]).sum(axis=-2)


def contour_mask() -> np.ndarray:
  """(468,) bool, True on the FACE_OVAL points."""
  mask = np.zeros(NUM_POINTS, bool)
  mask[list(FACE_OVAL)] = True
  return mask


def asset_path() -> str:
  return str(resources.files('mofa_ml') / 'assets' / ASSET)


def load_dense_registration(path: Optional[str] = None) -> DenseRegistration:
  """Reads the registration (default: the bundled asset for the ICT model).

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file lacks an array or has a wrong shape.
  """
  path = path or asset_path()
  with np.load(path, allow_pickle=False) as data:
    try:
      registration = DenseRegistration(
          triangles=data['triangles'].astype(np.int32),
          barycentrics=data['barycentrics'].astype(np.float32),
          spread_mm=data['spread_mm'].astype(np.float32),
          hit_rate=data['hit_rate'].astype(np.float32),
          contour=data['contour'].astype(bool),
          source=str(data['source']))
    except KeyError as e:
      raise ValueError(f'{path}: not a dense registration ({e})') from None
  expected = {'triangles': (NUM_POINTS,), 'barycentrics': (NUM_POINTS, 3),
              'spread_mm': (NUM_POINTS,), 'hit_rate': (NUM_POINTS,),
              'contour': (NUM_POINTS,)}
  for name, shape in expected.items():
    if getattr(registration, name).shape != shape:
      raise ValueError(f'{path}: {name} must be {shape}, got '
                       f'{getattr(registration, name).shape}')
  return registration


# The spread (mm) at which a point's weight halves: the network places a
# point this inconsistently on the surface across renders.
SPREAD_HALF_WEIGHT_MM = 2.0
# Points that fell off the face mesh in more renders than this are not used.
MIN_HIT_RATE = 0.5


def point_weights(registration: DenseRegistration) -> np.ndarray:
  """(468,) float32 each point's weight in a fit: 1 / (1 + (spread /
  SPREAD_HALF_WEIGHT_MM)^2), 0 on the face oval (its surface point moves
  with the view; the 68-point term's sliding contour covers the outline)
  and where the hit rate is below MIN_HIT_RATE."""
  weight = 1.0 / (1.0 + (registration.spread_mm / SPREAD_HALF_WEIGHT_MM)**2)
  used = ~registration.contour & (registration.hit_rate >= MIN_HIT_RATE)
  return (weight * used).astype(np.float32)


# A dense point stands in for one of the 68 inner landmarks where it lies
# this close to the landmark's vertex on the mean face: 30 of the 51 do
# (eye corners and lids, nose, lips).
PAIR_MAX_MM = 2.5


def landmark_pairs(registration: DenseRegistration, mean_shape: np.ndarray,
                   triangles: np.ndarray, landmark_vertices: np.ndarray,
                   inner: np.ndarray, max_mm: float = PAIR_MAX_MM
                   ) -> Tuple[np.ndarray, np.ndarray]:
  """(landmark indices, dense point indices) of the 68 inner landmarks that
  a dense point stands in for (the nearest one, within `max_mm` on the
  (N, 3) `mean_shape`, mm).

  Args:
    registration, mean_shape, triangles: the registration on the model.
    landmark_vertices: (68,) the model's landmark vertices.
    inner: indices of the inner (non-contour) landmarks.
  """
  surface = registration.surface_points(np.asarray(mean_shape, np.float64),
                                        triangles)
  landmarks = np.asarray(mean_shape, np.float64)[np.asarray(
      landmark_vertices)[np.asarray(inner)]]
  distance = np.linalg.norm(landmarks[:, None] - surface[None], axis=-1)
  nearest = distance.argmin(axis=1)
  close = distance[np.arange(len(nearest)), nearest] <= max_mm
  return np.asarray(inner)[close], nearest[close]


def detector_disagreement(landmarks: np.ndarray, dense_points: np.ndarray,
                          pairs: Tuple[np.ndarray, np.ndarray]) -> float:
  """Median distance between the 68-point detector's landmarks and the
  dense points that stand in for them (`landmark_pairs`), in face-box
  units (the square root of the (68, 2) `landmarks`' box area).

  The two networks were trained apart; where one has put its points on
  the wrong structure they disagree by a tenth of the face or more (one
  render measured 0.19), where both hold 0.01-0.07.
  """
  landmarks = np.asarray(landmarks, np.float64)
  box = max(metrics.box_size(landmarks), 1e-6)
  landmark_index, dense_index = pairs
  gaps = np.linalg.norm(landmarks[landmark_index] -
                        np.asarray(dense_points)[dense_index, :2], axis=-1)
  return float(np.median(gaps) / box)
