"""The real scans of the benchmark: reading, units, pose and renders.

Readers for legacy VTK polydata (ASCII) and Wavefront OBJ, each returning
vertices and triangles (polygons fan-triangulated). `load_fran` and
`load_flamefit` put a scan into the face model's frame (y up, z towards the
viewer, x to the subject's left, mm); `render_scan` draws it with the
project's rasterizer (`rendering/raster.py`) at a yaw, under an SH light
(`rendering/shading.py`), over a background, as an 8-bit RGB photo.
"""

from typing import Dict, NamedTuple, Optional, Tuple

import jax.numpy as jnp
import numpy as np
from PIL import Image

from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh
from mofa_ml.rendering import raster
from mofa_ml.rendering import shading

RENDER_SIZE = 512
# A 150 mm wide face at 1 m spans 270 of the 512 pixels: a portrait.
FOCAL_PX = 1800.0
DISTANCE_MM = 1000.0
# Camera-frame SH lights: direction towards the light (OpenCV axes: x
# right, y down, z away from the camera), colour, ambient.
LIGHTS = {
    'front_soft': ((0.0, -0.3, -1.0), 0.45, 0.65),
    'side': ((-0.85, -0.25, -0.45), 0.85, 0.25),
}
BACKGROUNDS = ('grey', 'noise')


def _fan(polygon) -> list:
  return [(polygon[0], polygon[k], polygon[k + 1])
          for k in range(1, len(polygon) - 1)]


def read_vtk_polydata(path: str
                      ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
  """Reads an ASCII legacy VTK POLYDATA file.

  Returns:
    points: (N, 3) float64.
    triangles: (F, 3) int64, POLYGONS fan-triangulated.
    uv: (N, 2) float64 TEXTURE_COORDINATES (origin bottom-left), or None.

  Raises:
    ValueError: not ASCII polydata with POINTS and POLYGONS.
  """
  with open(path, 'rb') as f:
    header = [f.readline() for _ in range(4)]
    body = f.read()
  if not header[0].startswith(b'# vtk DataFile'):
    raise ValueError(f'{path}: not a legacy VTK file')
  if header[2].strip().upper() != b'ASCII':
    raise ValueError(f'{path}: only ASCII VTK files are read, not '
                     f'{header[2].strip().decode(errors="replace")}')
  if b'POLYDATA' not in header[3].upper():
    raise ValueError(f'{path}: not POLYDATA')
  tokens = body.split()
  upper = [token.upper() for token in tokens]

  def numbers(keyword, offset, count, dtype):
    if keyword not in upper:
      return None
    start = upper.index(keyword) + offset
    return np.asarray(tokens[start:start + count], dtype=np.float64).astype(
        dtype)

  if b'POINTS' not in upper or b'POLYGONS' not in upper:
    raise ValueError(f'{path}: needs POINTS and POLYGONS')
  count = int(tokens[upper.index(b'POINTS') + 1])
  points = numbers(b'POINTS', 3, 3 * count, np.float64).reshape(count, 3)
  at = upper.index(b'POLYGONS')
  size = int(tokens[at + 2])
  flat = numbers(b'POLYGONS', 3, size, np.int64)
  triangles, k = [], 0
  while k < len(flat):
    triangles += _fan(flat[k + 1:k + 1 + flat[k]])
    k += 1 + flat[k]
  uv = numbers(b'TEXTURE_COORDINATES', 4, 2 * count, np.float64)
  if uv is not None:
    uv = uv.reshape(count, 2)
  return points, np.asarray(triangles, np.int64).reshape(-1, 3), uv


def read_obj(path: str) -> Tuple[np.ndarray, np.ndarray]:
  """(vertices (N, 3) float64, triangles (F, 3) int64) of a Wavefront OBJ
  (`f` entries as v, v/vt, v//vn or v/vt/vn, negative indices allowed;
  polygons fan-triangulated)."""
  vertices, triangles = [], []
  with open(path, 'r', encoding='utf-8', errors='replace') as f:
    for line in f:
      if line.startswith('v '):
        vertices.append([float(x) for x in line.split()[1:4]])
      elif line.startswith('f '):
        corners = [int(item.split('/')[0]) for item in line.split()[1:]]
        corners = [c - 1 if c > 0 else len(vertices) + c for c in corners]
        triangles += _fan(corners)
  if not vertices or not triangles:
    raise ValueError(f'{path}: no vertices or faces')
  return (np.asarray(vertices, np.float64),
          np.asarray(triangles, np.int64).reshape(-1, 3))


class Scan(NamedTuple):
  """A scan in the face model's frame.

  Attributes:
    name: short name.
    vertices: (N, 3) mm; y up, z towards the viewer.
    triangles: (F, 3) int, counter-clockwise seen from outside.
    landmarks: (51, 3) iBUG points 17-67 (no jaw), mm; None until derived.
    uv, texture: per-vertex texture coordinates and (H, W, 3) float32
      texture, or None.
    albedo: (N, 3) per-vertex colour when there is no texture, or None.
    units: how the file's units became mm (for the report).
  """
  name: str
  vertices: np.ndarray
  triangles: np.ndarray
  landmarks: Optional[np.ndarray]
  uv: Optional[np.ndarray]
  texture: Optional[np.ndarray]
  albedo: Optional[np.ndarray]
  units: str

  @property
  def nose_tip(self) -> np.ndarray:
    return self.landmarks[30 - 17]


def outward_winding(vertices: np.ndarray, triangles: np.ndarray
                    ) -> np.ndarray:
  """`triangles`, flipped if most of the area faces away from +z (the
  viewer of a frontal scan): the renderer culls by winding."""
  corners = vertices[triangles]
  normals = np.cross(corners[:, 1] - corners[:, 0],
                     corners[:, 2] - corners[:, 0])
  return triangles if normals[:, 2].sum() >= 0 else triangles[:, ::-1]


def load_fran(folder: str, scale_to_mm: float) -> Scan:
  """fran_cut.vtk + .png: file axes x (towards the viewer), y (up), z
  (to the subject's right), taken to the model's (x left, y up, z front)."""
  points, triangles, uv = read_vtk_polydata(f'{folder}/fran_cut.vtk')
  vertices = np.stack([-points[:, 2], points[:, 1], points[:, 0]], axis=1)
  vertices = vertices * scale_to_mm
  texture = np.asarray(Image.open(f'{folder}/fran_cut.png').convert('RGB'),
                       np.float32) / 255.0
  return Scan('fran', vertices, outward_winding(vertices, triangles), None,
              uv, texture, None, f'file units x {scale_to_mm:g}')


def load_flamefit(folder: str) -> Scan:
  """scan.obj + scan_lmks.npy: metres, FLAME's axes (the model's)."""
  vertices, triangles = read_obj(f'{folder}/scan.obj')
  landmarks = np.load(f'{folder}/scan_lmks.npy').astype(np.float64)
  if landmarks.shape != (51, 3):
    raise ValueError(f'expected (51, 3) landmarks, got {landmarks.shape}')
  return Scan('flamefit', vertices * 1000.0,
              outward_winding(vertices, triangles), landmarks * 1000.0, None,
              None, None, 'metres x 1000')


def background(kind: str, size: int = RENDER_SIZE) -> np.ndarray:
  """(size, size, 3) float32: uniform grey, or a fixed coloured noise of
  blobs and fine grain (seeded: every render of a kind is the same)."""
  if kind == 'grey':
    return np.full((size, size, 3), 0.5, np.float32)
  if kind != 'noise':
    raise ValueError(f'unknown background {kind!r}')
  import cv2  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(7)
  # Muted colours (a wall, a room) rather than saturated ones.
  blobs = 0.6 * rng.uniform(0.15, 0.85, (6, 6, 1)) + 0.4 * rng.uniform(
      0.15, 0.85, (6, 6, 3))
  coarse = cv2.resize(blobs.astype(np.float32), (size, size),
                      interpolation=cv2.INTER_CUBIC)
  fine = cv2.GaussianBlur(rng.normal(0, 0.12, (size, size, 3)).astype(
      np.float32), (0, 0), 2.0)
  return np.clip(coarse + fine, 0.0, 1.0)


def light(kind: str) -> np.ndarray:
  """(9, 3) camera-frame irradiance SH of a `LIGHTS` entry."""
  direction, strength, ambient = LIGHTS[kind]
  direction = np.asarray(direction, np.float32)
  direction /= np.linalg.norm(direction)
  return np.asarray(shading.directional_light(
      jnp.asarray(direction), jnp.full(3, strength, jnp.float32),
      jnp.full(3, ambient, jnp.float32)))


class Render(NamedTuple):
  """A scan render.

  Attributes:
    image: (H, W, 3) uint8.
    surface: (H, W, 3) model-frame surface point per pixel (mm), NaN on
      the background.
    landmarks_2d: (51, 2) the scan's landmarks projected, pixels; None
      without landmarks.
  """
  image: np.ndarray
  surface: np.ndarray
  landmarks_2d: Optional[np.ndarray]


def _sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
  """Bilinear texture lookup at (H, W, 2) uv (origin bottom-left)."""
  import cv2  # pylint: disable=g-import-not-at-top
  height, width = texture.shape[:2]
  x = (uv[..., 0] * width - 0.5).astype(np.float32)
  y = ((1.0 - uv[..., 1]) * height - 0.5).astype(np.float32)
  return cv2.remap(texture, x, y, cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_REPLICATE)


def vertex_albedo(scan: Scan) -> np.ndarray:
  """(N, 3) the albedo the renders paint at each scan vertex, [0, 1]: its
  `albedo`, or its texture at its uv (the render's bilinear lookup)."""
  if scan.albedo is not None:
    return np.asarray(scan.albedo, np.float64)
  return _sample_texture(scan.texture, scan.uv[:, None].astype(
      np.float32))[:, 0].astype(np.float64)


def render_scan(scan: Scan, yaw_degrees: float, light_kind: str,
                background_kind: str, size: int = RENDER_SIZE) -> Render:
  """The scan turned by `yaw_degrees` about the vertical through its
  landmarks' centroid, which sits on the optical axis `DISTANCE_MM` away."""
  intrinsics = camera.default_intrinsics(size, FOCAL_PX)
  rotation = np.asarray(camera.pose_rotation(
      jnp.asarray([0.0, np.radians(yaw_degrees), 0.0], jnp.float32)),
                        np.float64)
  centre = (scan.landmarks.mean(axis=0) if scan.landmarks is not None else
            scan.vertices.mean(axis=0))
  translation = np.array([0.0, 0.0, DISTANCE_MM]) - rotation @ centre
  points = scan.vertices @ rotation.T + translation
  points_jnp = jnp.asarray(points, jnp.float32)
  triangles = jnp.asarray(scan.triangles, jnp.int32)
  screen = jnp.concatenate([camera.project(points_jnp, intrinsics),
                            points_jnp[:, 2:]], axis=-1)
  fragments = raster.render(screen, triangles, size, size,
                            cull_backfaces=True)
  normals = mesh.vertex_normals(points_jnp, triangles)
  attributes = [normals, jnp.asarray(scan.vertices, jnp.float32)]
  attributes.append(jnp.asarray(scan.uv if scan.uv is not None else
                                scan.albedo, jnp.float32))
  per_pixel = np.asarray(raster.interpolate(
      jnp.concatenate(attributes, axis=-1), triangles, fragments))
  covered = np.asarray(fragments.triangle) >= 0
  if scan.uv is not None:
    albedo = _sample_texture(scan.texture, per_pixel[..., 6:8])
  else:
    albedo = per_pixel[..., 6:9]
  colour = np.asarray(shading.shade(
      jnp.asarray(albedo), mesh.safe_normalize(jnp.asarray(
          per_pixel[..., :3])), jnp.asarray(light(light_kind))))
  image = np.where(covered[..., None], np.clip(colour, 0.0, 1.0),
                   background(background_kind, size))
  surface = np.where(covered[..., None], per_pixel[..., 3:6], np.nan)
  marks = None
  if scan.landmarks is not None:
    marks = np.asarray(camera.project(jnp.asarray(
        scan.landmarks @ rotation.T + translation, jnp.float32), intrinsics),
                       np.float64)
  return Render(np.round(image * 255).astype(np.uint8), surface, marks)


def back_project(render: Render, points_2d: np.ndarray) -> np.ndarray:
  """(K, 3) model-frame scan points under (K, 2) pixel positions: the
  surface point of the nearest covered pixel centre (the render's depth
  buffer, through its camera).

  Raises:
    ValueError: a point has no covered pixel within 3 pixels.
  """
  covered = np.isfinite(render.surface[..., 0])
  rows, cols = np.nonzero(covered)
  centres = np.stack([cols, rows], axis=1).astype(np.float64)
  result = []
  for point in np.asarray(points_2d, np.float64):
    distance = np.linalg.norm(centres - point, axis=1)
    nearest = int(np.argmin(distance))
    if distance[nearest] > 3.0:
      raise ValueError(f'landmark {point} is off the scan surface')
    result.append(render.surface[rows[nearest], cols[nearest]])
  return np.asarray(result, np.float64)


def transferred_albedo(closest_distance: np.ndarray,
                       closest_albedo: np.ndarray, skin: np.ndarray
                       ) -> np.ndarray:
  """(N, 3) scan colours from a face model's albedo at the closest model
  surface points, fading to `skin` between 10 and 20 mm away (the scalp,
  ears and neck, which the face model does not cover)."""
  weight = np.clip((20.0 - closest_distance) / 10.0, 0.0, 1.0)[:, None]
  return weight * np.clip(closest_albedo, 0, 1) + (1 - weight) * skin


def paint_eyes_and_hair(vertices: np.ndarray, landmarks: np.ndarray,
                        albedo: np.ndarray, model_distance: np.ndarray
                        ) -> np.ndarray:
  """(N, 3) `albedo` with eyes and hair painted on a frontal scan, for the
  detector: a scan has neither irises nor hair colour, and on a bare
  mannequin render dlib's predictor slid the eyes onto the cheeks.

  Eyes: the vertices in front whose (x, y) lies inside an eye's six
  landmarks get sclera, and a dark iris within 0.22 eye widths of the eye's
  centre. Hair: vertices 45 mm above the brows and more than 10 mm off the
  face model (`model_distance`), dark brown.

  Args:
    vertices: (N, 3) frontal scan, mm, y up, z to the viewer.
    landmarks: (51, 3) iBUG points 17-67.
    albedo: (N, 3).
    model_distance: (N,) distance to the aligned face model's surface, mm.
  """
  from matplotlib import path as mpath  # pylint: disable=g-import-not-at-top
  albedo = np.array(albedo, np.float64)
  for first in (36, 42):
    eye = landmarks[first - 17:first - 11]
    centre = eye.mean(axis=0)
    width = np.linalg.norm(eye[0] - eye[3])
    inside = mpath.Path(eye[:, :2]).contains_points(vertices[:, :2])
    inside &= vertices[:, 2] > centre[2] - 0.5 * width
    iris = np.linalg.norm(vertices[:, :2] - centre[:2], axis=1) < 0.22 * width
    albedo[inside] = (0.78, 0.74, 0.70)
    albedo[inside & iris] = (0.18, 0.11, 0.07)
  brows = landmarks[:10].mean(axis=0)
  hair = (vertices[:, 1] > brows[1] + 45.0) & (model_distance > 10.0)
  albedo[hair] = (0.10, 0.06, 0.035)
  return albedo


def describe(scans: Dict[str, Scan]) -> Dict[str, Dict]:
  """JSON-ready facts of the scans (vertex counts, units)."""
  return {name: {'vertices': int(len(s.vertices)),
                 'triangles': int(len(s.triangles)), 'units': s.units}
          for name, s in scans.items()}
