"""Vertex regions derived from the 68 landmarks of the mean face.

The bundled ICT model labels no skin, lips or brows on the face, so these
regions are drawn deterministically in the frontal x-y plane (mm, y up) from
the landmark vertices' positions. They feed the global reflectance constancy
mask (E_glo) and the tints of the mean reflectance.
"""

import numpy as np

from mofa_ml.facemodel import landmarks as lm


def point_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
  """Even-odd rule test of (P, 2) points against a closed (Q, 2) polygon."""
  x, y = points[:, 0:1], points[:, 1:2]
  x0, y0 = polygon[:, 0], polygon[:, 1]
  x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
  crosses = (y0 > y) != (y1 > y)
  with np.errstate(divide='ignore', invalid='ignore'):
    x_at_y = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
  return np.sum(crosses & (x < x_at_y), axis=1) % 2 == 1


def distance_to_polyline(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
  """Euclidean distance of (P, 2) points to an open (Q, 2) polyline."""
  a, b = polyline[:-1], polyline[1:]
  ab = b - a
  t = np.einsum('pqd,qd->pq', points[:, None] - a[None], ab) / np.sum(ab * ab, 1)
  t = np.clip(t, 0.0, 1.0)
  closest = a[None] + t[..., None] * ab[None]
  return np.min(np.linalg.norm(points[:, None] - closest, axis=-1), axis=1)


def _closed(indices):
  return list(indices) + [indices[0]]


def skin_mask(vertices: np.ndarray, landmark_vertices: np.ndarray,
              eye_margin_mm: float = 6.0, brow_margin_mm: float = 8.0,
              forehead_mm: float = 30.0, nostril_margin_mm: float = 5.0,
              side_margin_mm: float = 5.0) -> np.ndarray:
  """Vertices of bare skin, free of facial hair: forehead, nose and cheeks.

  Excludes everything below the nostrils (moustache, lips, beard), the sides
  beyond the outer eye corners (sideburns), the eyes and brows with margins,
  and the forehead above `forehead_mm` over the brows (fringe).

  Args:
    vertices: (N, 3) mean-face positions, mm, y up.
    landmark_vertices: (68,) vertex index per iBUG landmark.

  Returns:
    (N,) bool.
  """
  xy = np.asarray(vertices, dtype=np.float64)[:, :2]
  marks = xy[landmark_vertices]
  brow_top = marks[list(lm.RIGHT_BROW + lm.LEFT_BROW), 1].max()
  nose_base = marks[list(lm.NOSTRILS), 1].max()
  half_width = max(abs(marks[lm.RIGHT_EYE_OUTER_CORNER, 0]),
                   abs(marks[lm.LEFT_EYE_OUTER_CORNER, 0])) + side_margin_mm
  mask = (xy[:, 1] > nose_base + nostril_margin_mm)
  mask &= xy[:, 1] < brow_top + forehead_mm
  mask &= np.abs(xy[:, 0]) < half_width
  for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
    outline = marks[_closed(eye)]
    near = distance_to_polyline(xy, outline) < eye_margin_mm
    mask &= ~(near | point_in_polygon(xy, outline[:-1]))
  for brow in (lm.RIGHT_BROW, lm.LEFT_BROW):
    mask &= distance_to_polyline(xy, marks[list(brow)]) >= brow_margin_mm
  return mask


def lip_weight(vertices: np.ndarray, landmark_vertices: np.ndarray,
               falloff_mm: float = 1.5) -> np.ndarray:
  """(N,) soft membership in [0, 1] of the outer lip outline (48-59)."""
  xy = np.asarray(vertices, dtype=np.float64)[:, :2]
  outline = xy[landmark_vertices][_closed(lm.OUTER_LIPS)]
  inside = point_in_polygon(xy, outline[:-1])
  distance = distance_to_polyline(xy, outline)
  signed = np.where(inside, -distance, distance)
  return 1.0 / (1.0 + np.exp(signed / falloff_mm))


def brow_weight(vertices: np.ndarray, landmark_vertices: np.ndarray,
                half_width_mm: float = 4.0, falloff_mm: float = 1.5) -> np.ndarray:
  """(N,) soft membership in [0, 1] of a band along each brow's landmarks."""
  xy = np.asarray(vertices, dtype=np.float64)[:, :2]
  marks = xy[landmark_vertices]
  distance = np.minimum(
      distance_to_polyline(xy, marks[list(lm.RIGHT_BROW)]),
      distance_to_polyline(xy, marks[list(lm.LEFT_BROW)]))
  return 1.0 / (1.0 + np.exp((distance - half_width_mm) / falloff_mm))
