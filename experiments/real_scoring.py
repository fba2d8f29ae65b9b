"""Scoring of the real-data benchmark: NoW-style scan distances and NME.

Scan distances (Sanyal et al. 2019, the NoW protocol, with a similarity
ICP): the scan is cropped to `CROP_MM` around its nose tip, the
reconstruction is moved onto it by the similarity that best maps its
landmark vertices onto the scan's landmarks (`umeyama`), then by
similarity ICP that alternates "each cropped scan point's closest point on
the reconstruction's surface" with the Umeyama fit of those pairs. The
reported distances are scan point to mesh surface (exact point-to-triangle,
`closest_points_on_mesh`), in the scan's units (mm here). The
reconstruction moves, never the scan, so every method is measured on the
same points.

Landmark NME: mean point distance over sqrt(w h) of the truth's bounding
box (AFLW2000-3D's usual normaliser), on the points the truth has.

Appearance (RGB in [0, 1] units): the fitted reflectance against the
scan's true albedo at the same closest points the distances use
(`albedo_errors`), raw and after one least-squares gain per channel (the
product of albedo and light is what a photo fixes, so a brightness or
colour scale between them is not seen; the gain's spread over the channels
is the colour part of it); the light's colour cast (`light_colour`: the
spread of its constant SH term over the channels, 0 for a white light);
and the share of vertices whose reflectance leaves [0, 1] (`out_of_range`).
"""

from typing import Dict, NamedTuple, Optional

import numpy as np
import scipy.spatial

from mofa_ml import metrics

# NoW's crop radius around the nose tip.
CROP_MM = 95.0
# Triangles tried per scan point: those whose centroids are nearest. The
# true closest triangle is among them unless triangles are much larger
# than their spacing, which neither face mesh has (on a regular sheet this
# finds what all triangles do: tests/test_real_benchmark.py).
_CANDIDATES = 16
# Albedo is compared only at scan points this close to the aligned mesh:
# farther ones (ears, neck, scalp) are where the face model does not reach.
ALBEDO_COVER_MM = 10.0


def nme(points: np.ndarray, truth: np.ndarray) -> float:
  """Mean distance of (K, 2) points to the truth over
  `metrics.box_size(truth)`."""
  points, truth = np.asarray(points, np.float64), np.asarray(truth,
                                                            np.float64)
  if points.shape != truth.shape:
    raise ValueError(f'shapes differ: {points.shape} vs {truth.shape}')
  return float(np.linalg.norm(points - truth, axis=1).mean() /
               metrics.box_size(truth))


def _closest_on_triangles(points, a, b, c):
  """Closest points of (P, 3) points on (P, 3, 3)-cornered triangles
  (a, b, c each (P, 3)); the region tests of Ericson, "Real-Time Collision
  Detection" 5.1.5. Returns (P, 3) barycentric weights."""
  ab, ac, ap = b - a, c - a, points - a
  d1, d2 = np.einsum('pi,pi->p', ab, ap), np.einsum('pi,pi->p', ac, ap)
  bp = points - b
  d3, d4 = np.einsum('pi,pi->p', ab, bp), np.einsum('pi,pi->p', ac, bp)
  cp = points - c
  d5, d6 = np.einsum('pi,pi->p', ab, cp), np.einsum('pi,pi->p', ac, cp)
  va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
  with np.errstate(divide='ignore', invalid='ignore'):
    # Inside the face by default, then each region overrides in turn
    # (later, more specific regions win).
    total = va + vb + vc
    v, w = vb / total, vc / total
    weights = np.stack([1 - v - w, v, w], axis=1)
    edge_bc = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
    t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    weights[edge_bc] = np.stack([0 * t, 1 - t, t], 1)[edge_bc]
    edge_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    t = d2 / (d2 - d6)
    weights[edge_ac] = np.stack([1 - t, 0 * t, t], 1)[edge_ac]
    edge_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    t = d1 / (d1 - d3)
    weights[edge_ab] = np.stack([1 - t, t, 0 * t], 1)[edge_ab]
  for index, region in ((0, (d1 <= 0) & (d2 <= 0)),
                        (1, (d3 >= 0) & (d4 <= d3)),
                        (2, (d6 >= 0) & (d5 <= d6))):
    weights[region] = 0.0
    weights[region, index] = 1.0
  # Degenerate (zero-area) triangles: their first corner.
  bad = ~np.all(np.isfinite(weights), axis=1)
  weights[bad] = [1.0, 0.0, 0.0]
  return weights


class Closest(NamedTuple):
  """Closest surface points of query points.

  Attributes:
    distances: (P,) point to surface.
    points: (P, 3) the closest surface points.
    triangles: (P,) int, the triangle each lies on.
    barycentric: (P, 3) its weights on that triangle's corners.
  """
  distances: np.ndarray
  points: np.ndarray
  triangles: np.ndarray
  barycentric: np.ndarray


def closest_points_on_mesh(points: np.ndarray, vertices: np.ndarray,
                           triangles: np.ndarray,
                           candidates: int = _CANDIDATES) -> Closest:
  """Exact point-to-triangle closest points, over the `candidates`
  triangles whose centroids are nearest each point.

  Args:
    points: (P, 3) queries.
    vertices: (V, 3) mesh vertices, same units.
    triangles: (F, 3) int.
    candidates: triangles tried per point.
  """
  points = np.asarray(points, np.float64)
  vertices = np.asarray(vertices, np.float64)
  triangles = np.asarray(triangles, np.int64)
  candidates = min(candidates, len(triangles))
  corners = vertices[triangles]  # (F, 3, 3)
  _, near = scipy.spatial.cKDTree(corners.mean(axis=1)).query(
      points, k=candidates)
  near = near.reshape(len(points), candidates)
  best = Closest(np.full(len(points), np.inf), np.zeros_like(points),
                 np.zeros(len(points), np.int64), np.zeros_like(points))
  for k in range(candidates):
    chosen = corners[near[:, k]]
    weights = _closest_on_triangles(points, chosen[:, 0], chosen[:, 1],
                                    chosen[:, 2])
    closest = np.einsum('pk,pki->pi', weights, chosen)
    distance = np.linalg.norm(points - closest, axis=1)
    better = distance < best.distances
    best.distances[better] = distance[better]
    best.points[better] = closest[better]
    best.triangles[better] = near[better, k]
    best.barycentric[better] = weights[better]
  return best


def umeyama(source: np.ndarray, target: np.ndarray,
            scale: Optional[float] = None) -> metrics.Similarity:
  """The least-squares similarity source -> target of (N, 3) pairs.

  Umeyama (1991) in float64 on the host (`metrics.similarity_alignment` is
  its float32 device form), with the scale fixed to `scale` if given.
  """
  source, target = np.asarray(source, np.float64), np.asarray(target,
                                                              np.float64)
  source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
  x, y = source - source_mean, target - target_mean
  u, singular, vt = np.linalg.svd(y.T @ x / len(x))
  correction = np.array([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
  rotation = (u * correction) @ vt
  if scale is None:
    scale = float(np.sum(singular * correction) /
                  np.mean(np.sum(x**2, axis=1)))
  translation = target_mean - scale * rotation @ source_mean
  return metrics.Similarity(float(scale), rotation, translation)


def apply(similarity: metrics.Similarity, points: np.ndarray) -> np.ndarray:
  """(N, 3) points moved by a host similarity, float64."""
  return (float(similarity.scale) * np.asarray(points, np.float64) @
          np.asarray(similarity.rotation, np.float64).T +
          np.asarray(similarity.translation, np.float64))


def crop_scan(points: np.ndarray, nose_tip: np.ndarray,
              radius: float = CROP_MM) -> np.ndarray:
  """(P,) bool: the scan points within `radius` of the nose tip."""
  return np.linalg.norm(np.asarray(points) - nose_tip, axis=1) <= radius


class ScanScore(NamedTuple):
  """One mesh scored against one scan.

  Attributes:
    mean_mm, median_mm: scan-to-mesh distance over the cropped scan.
    landmark_rms_mm: landmark residual after the landmark alignment.
    scale: the final similarity's scale (mesh -> scan).
    iterations: ICP iterations run.
    distances: (P,) per cropped scan point.
    similarity: the final mesh -> scan transform.
  """
  mean_mm: float
  median_mm: float
  landmark_rms_mm: float
  scale: float
  iterations: int
  distances: np.ndarray
  similarity: metrics.Similarity

  def summary(self) -> Dict[str, float]:
    return {'mean_mm': self.mean_mm, 'median_mm': self.median_mm,
            'landmark_rms_mm': self.landmark_rms_mm, 'scale': self.scale,
            'icp_iterations': self.iterations}


def score_against_scan(scan_points: np.ndarray, scan_landmarks: np.ndarray,
                       vertices: np.ndarray, triangles: np.ndarray,
                       mesh_landmarks: np.ndarray,
                       max_iterations: int = 40,
                       tolerance: float = 1e-5,
                       with_scale: bool = True) -> ScanScore:
  """Landmark similarity, then similarity ICP, then scan-to-mesh distances.

  Args:
    scan_points: (P, 3) the cropped scan, mm.
    scan_landmarks: (L, 3) the scan's landmarks, mm.
    vertices: (V, 3) the reconstruction's mesh, any similar frame.
    triangles: (F, 3) int.
    mesh_landmarks: (L, 3) the mesh's points matching `scan_landmarks`.
    max_iterations, tolerance: ICP stops when the mean distance improves
      by less than `tolerance` (relative).
    with_scale: similarity (True) or rigid ICP.

  Returns:
    ScanScore.
  """
  similarity = umeyama(mesh_landmarks, scan_landmarks)
  landmark_rms = float(np.sqrt(np.mean(np.sum(
      (apply(similarity, mesh_landmarks) - scan_landmarks)**2, axis=1))))
  vertices = np.asarray(vertices, np.float64)
  triangles = np.asarray(triangles, np.int64)
  scan_points = np.asarray(scan_points, np.float64)
  previous = np.inf
  iterations = 0
  for iterations in range(1, max_iterations + 1):
    closest = closest_points_on_mesh(scan_points, apply(similarity, vertices),
                                     triangles)
    error = closest.distances.mean()
    if previous - error <= tolerance * error:
      break
    previous = error
    # The pairs in the mesh's own frame: the same barycentric points on
    # the untransformed triangles.
    on_mesh = np.einsum('pk,pki->pi', closest.barycentric,
                        vertices[triangles[closest.triangles]])
    similarity = umeyama(on_mesh, scan_points, None if with_scale else
                         float(similarity.scale))
  distances = closest_points_on_mesh(
      scan_points, apply(similarity, vertices), triangles).distances
  return ScanScore(float(distances.mean()), float(np.median(distances)),
                   landmark_rms, float(similarity.scale), iterations,
                   distances, similarity)


def _log_spread(values: np.ndarray) -> Optional[float]:
  """Std over channels of log(values) (0: equal channels); None unless all
  are positive."""
  values = np.asarray(values, np.float64)
  if not np.all(values > 0):
    return None
  return float(np.std(np.log(values)))


def channel_gain(fitted: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """(3,) per-channel g_c minimising sum |g_c fitted - truth|^2 over the
  (P, 3) pairs (0 for an all-zero channel)."""
  fitted, truth = np.asarray(fitted, np.float64), np.asarray(truth,
                                                            np.float64)
  power = np.sum(fitted**2, axis=0)
  return np.sum(fitted * truth, axis=0) / np.where(power > 0, power, np.inf)


def albedo_errors(scan_points: np.ndarray, scan_albedo: np.ndarray,
                  similarity: metrics.Similarity, vertices: np.ndarray,
                  triangles: np.ndarray, reflectance: np.ndarray,
                  cover_mm: float = ALBEDO_COVER_MM) -> Dict:
  """A mesh's reflectance against a scan's albedo.

  Each scan point is paired with its closest point on the mesh moved by
  `similarity` (a `score_against_scan` result), whose reflectance is the
  barycentric blend of the corners'. Pairs farther than `cover_mm` apart
  are left out. The reflectance is taken as fitted (not clipped).

  Args:
    scan_points: (P, 3) the cropped scan, mm.
    scan_albedo: (P, 3) its true albedo, [0, 1].
    similarity: mesh -> scan.
    vertices: (V, 3) the mesh, its own frame; triangles: (F, 3) int.
    reflectance: (V, 3) per-vertex albedo.
    cover_mm: the largest pair distance compared.

  Returns:
    JSON-ready: 'mae' (mean |g_c fitted - truth| over points and channels
    with the least-squares gains), 'mae_raw' (gains 1), 'gain' (3,),
    'gain_chroma' (std of log g_c over channels; None if a gain is <= 0),
    'compared' (the share of scan points within `cover_mm`). The errors
    are None when no point is compared.
  """
  closest = closest_points_on_mesh(scan_points, apply(similarity, vertices),
                                   triangles)
  near = closest.distances <= cover_mm
  result = {'compared': float(near.mean()) if len(near) else 0.0,
            'mae': None, 'mae_raw': None, 'gain': None,
            'gain_chroma': None}
  if not near.any():
    return result
  corners = np.asarray(reflectance, np.float64)[
      np.asarray(triangles)[closest.triangles[near]]]  # (P, 3 corners, 3)
  fitted = np.einsum('pk,pki->pi', closest.barycentric[near], corners)
  truth = np.asarray(scan_albedo, np.float64)[near]
  gain = channel_gain(fitted, truth)
  result.update(mae=float(np.abs(gain * fitted - truth).mean()),
                mae_raw=float(np.abs(fitted - truth).mean()),
                gain=[float(g) for g in gain],
                gain_chroma=_log_spread(gain))
  return result


def light_colour(sh: np.ndarray) -> Dict:
  """The colour cast of a (9, 3) SH light (rows: bands, shading.sh_basis
  order; columns: RGB).

  Returns:
    JSON-ready: 'dc' (3,) the constant (band 0) coefficients, 'chroma' the
    std over channels of their logs (0: white), None with 'negative_dc'
    True when any is <= 0 (no positive ambient light in that channel).
  """
  dc = np.asarray(sh, np.float64)[0]
  return {'dc': [float(x) for x in dc], 'chroma': _log_spread(dc),
          'negative_dc': bool(np.any(dc <= 0))}


def out_of_range(reflectance: np.ndarray) -> float:
  """The share of (V, 3) reflectance rows with a channel outside [0, 1]."""
  reflectance = np.asarray(reflectance, np.float64)
  return float(np.mean(np.any((reflectance < 0) | (reflectance > 1),
                              axis=1)))
