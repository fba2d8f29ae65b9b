"""The iBUG 68-point markup: index groups, .pts files, and the fixed and
sliding-contour correspondences between landmarks and model vertices.

Coordinates follow the pixel-centre convention used throughout mofa_ml: the
centre of pixel (row i, column j) is at (x=j, y=i). iBUG .pts files count
from 1 (Matlab origin), so `read_pts` subtracts 1 by default.
"""

import os
from typing import Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.rendering import camera

NUM_LANDMARKS = 68
# Index groups of the 68-point markup (0-based; "right" = the subject's right).
JAW = tuple(range(0, 17))
RIGHT_BROW = tuple(range(17, 22))
LEFT_BROW = tuple(range(22, 27))
NOSE_BRIDGE = tuple(range(27, 31))
NOSTRILS = tuple(range(31, 36))
RIGHT_EYE = tuple(range(36, 42))
LEFT_EYE = tuple(range(42, 48))
OUTER_LIPS = tuple(range(48, 60))
INNER_LIPS = tuple(range(60, 68))
# The jaw outline slides over the mesh with head pose; all others are fixed.
CONTOUR = JAW
FIXED = tuple(range(17, 68))
# Outer eye corners, the NME normaliser of the paper's evaluation.
RIGHT_EYE_OUTER_CORNER = 36
LEFT_EYE_OUTER_CORNER = 45


def outer_eye_distance(points: jax.Array) -> jax.Array:
  """(...) distance between the outer eye corners of (..., 68, 2) points:
  the unit of the NME and of a face's size in pixels."""
  return jnp.linalg.norm(points[..., RIGHT_EYE_OUTER_CORNER, :] -
                         points[..., LEFT_EYE_OUTER_CORNER, :], axis=-1)


def _mirror_permutation():
  pairs = [(k, 16 - k) for k in range(8)]                      # jaw
  pairs += [(17 + k, 26 - k) for k in range(5)]                # brows
  pairs += [(31, 35), (32, 34)]                                # nostrils
  pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
  pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
  pairs += [(60, 64), (61, 63), (65, 67)]                      # inner lips
  order = list(range(68))
  for a, b in pairs:
    order[a], order[b] = b, a
  return tuple(order)


# MIRROR[k]: the index that landmark k takes in a horizontally flipped image.
MIRROR = _mirror_permutation()


def read_pts(path: str, one_based: bool = True) -> np.ndarray:
  """Reads an iBUG/menpo .pts file with 68 points.

  Args:
    path: file path.
    one_based: the file counts pixels from 1 (the iBUG convention); subtract
      1 to get mofa_ml's 0-based pixel-centre coordinates.

  Returns:
    (68, 2) float32 (x, y) pixel coordinates.

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: the file is not a .pts file or does not hold 68 points.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'landmark file not found: {path}')
  with open(path, 'r', encoding='utf-8', errors='replace') as f:
    text = f.read()
  if '{' not in text or '}' not in text:
    raise ValueError(f'{path}: not a .pts file (no {{ ... }} point block)')
  header, rest = text.split('{', 1)
  body = rest.split('}', 1)[0]
  try:
    values = [float(token) for token in body.split()]
  except ValueError as e:
    raise ValueError(f'{path}: non-numeric point coordinate ({e})') from None
  if len(values) % 2:
    raise ValueError(f'{path}: odd number of coordinates ({len(values)})')
  points = np.asarray(values, dtype=np.float32).reshape(-1, 2)
  for line in header.splitlines():
    if line.strip().startswith('n_points'):
      declared = int(line.split(':', 1)[1])
      if declared != len(points):
        raise ValueError(f'{path}: header declares {declared} points, '
                         f'the block holds {len(points)}')
  if len(points) != NUM_LANDMARKS:
    raise ValueError(f'{path}: expected {NUM_LANDMARKS} landmarks (iBUG '
                     f'68-point markup), found {len(points)}')
  return points - 1.0 if one_based else points


def write_pts(path: str, points: np.ndarray, one_based: bool = True) -> None:
  """Writes (68, 2) pixel coordinates as an iBUG .pts file (inverse of
  `read_pts`)."""
  points = np.asarray(points, dtype=np.float64)
  if points.shape != (NUM_LANDMARKS, 2):
    raise ValueError(f'expected ({NUM_LANDMARKS}, 2) points, got '
                     f'{points.shape}')
  if one_based:
    points = points + 1.0
  lines = ['version: 1', f'n_points: {len(points)}', '{']
  lines += [f'{x:.3f} {y:.3f}' for x, y in points]
  lines.append('}')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')


def contour_candidates(vertices: np.ndarray,
                       contour_vertices: np.ndarray,
                       face_centre: np.ndarray,
                       band_mm: float = 3.0,
                       inward_mm: float = 30.0) -> Tuple[np.ndarray, np.ndarray]:
  """Candidate vertices for each sliding contour landmark.

  Landmark k's candidates form a strip across the jaw outline: the vertices
  within `band_mm` of the line through its frontal vertex p_k that is normal
  to the outline (in the frontal x-y plane), from `inward_mm` inside the
  outline to the mesh border. When the head turns, the silhouette moves
  along this strip (inwards on the far side, outwards on the near side), so
  the vertex nearest the back-projected ray stays on landmark k's strip and
  the order of the 17 outline points is kept.

  Args:
    vertices: (N, 3) mean-face positions, mm, y up, z towards the viewer.
    contour_vertices: (17,) vertex index of each outline landmark.
    face_centre: (2,) x-y point inside the face that defines "inwards".
    band_mm: half-width of each strip.
    inward_mm: how far inside the outline the strip reaches.

  Returns:
    candidates: (17, K) int32 vertex indices, padded with the landmark's own
      vertex.
    mask: (17, K) bool, True for real candidates.
  """
  xy = np.asarray(vertices, dtype=np.float64)[:, :2]
  anchors = xy[contour_vertices]
  count = len(contour_vertices)
  strips = []
  for k in range(count):
    previous, following = anchors[max(k - 1, 0)], anchors[min(k + 1, count - 1)]
    tangent = following - previous
    tangent /= np.linalg.norm(tangent)
    normal = np.array([tangent[1], -tangent[0]])
    if np.dot(anchors[k] - face_centre, normal) < 0:
      normal = -normal
    offsets = xy - anchors[k]
    along = offsets @ tangent
    outward = offsets @ normal
    strip = np.flatnonzero((np.abs(along) <= band_mm) & (outward >= -inward_mm))
    strip = np.union1d(strip, [contour_vertices[k]])
    strips.append(strip)
  width = max(len(s) for s in strips)
  candidates = np.empty((count, width), dtype=np.int32)
  mask = np.zeros((count, width), dtype=bool)
  for k, strip in enumerate(strips):
    candidates[k] = contour_vertices[k]
    candidates[k, :len(strip)] = strip
    mask[k, :len(strip)] = True
  return candidates, mask


def sliding_contour_vertices(points: jax.Array, detected: jax.Array,
                             intrinsics: camera.Intrinsics,
                             candidates: jax.Array,
                             candidate_mask: jax.Array) -> jax.Array:
  """Per contour landmark, the candidate vertex closest to its camera ray.

  The 3D line through the camera centre and the back-projected detection
  is d = unproject(f); a point p lies at squared distance |p|^2 - (p.d)^2
  from it. The choice is discrete, so no gradient flows through it.

  Args:
    points: (N, 3) camera-space vertices, mm.
    detected: (K, 2) detected contour landmarks, pixels.
    intrinsics: the camera.
    candidates: (K, C) int candidate vertex indices.
    candidate_mask: (K, C) bool.

  Returns:
    (K,) int32 vertex indices.
  """
  chex.assert_equal_shape([candidates, candidate_mask])
  points = jax.lax.stop_gradient(points)
  rays = camera.unproject_ray(jax.lax.stop_gradient(detected), intrinsics)
  candidate_points = points[candidates]  # (K, C, 3)
  along = jnp.einsum('kcd,kd->kc', candidate_points, rays)
  squared = jnp.sum(candidate_points**2, -1) - along**2
  squared = jnp.where(candidate_mask, squared, jnp.inf)
  choice = jnp.argmin(squared, axis=1)
  return jnp.take_along_axis(candidates, choice[:, None], axis=1)[:, 0]
