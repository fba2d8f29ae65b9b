"""Pictures of faces: shaded renders, overlays and panels."""

from typing import Optional, Sequence, Tuple

import jax.numpy as jnp
import numpy as np

from mofa_ml import camera
from mofa_ml import formation
from mofa_ml import mesh
from mofa_ml import raster
from mofa_ml import shading


def render_shaded(vertices: jnp.ndarray, reflectance: jnp.ndarray,
                  triangles: jnp.ndarray, rotation_angles: jnp.ndarray,
                  translation: jnp.ndarray, sh: jnp.ndarray,
                  intrinsics: camera.Intrinsics, height: int, width: int,
                  background: Optional[np.ndarray] = None
                  ) -> Tuple[np.ndarray, np.ndarray]:
  """Rasterizes one face with per-pixel SH shading.

  Normals and albedo are interpolated per pixel (then the normal is
  renormalised and shaded), which looks smoother than shading vertices.

  Args:
    vertices: (N, 3) model-space positions, mm.
    reflectance: (N, 3) albedo in [0, 1].
    triangles: (F, 3) int.
    rotation_angles: (3,) pose Euler angles, radians.
    translation: (3,) mm.
    sh: (9, 3) irradiance coefficients, camera frame.
    intrinsics: the camera.
    height, width: image size, pixels.
    background: (H, W, 3) image behind the face; black if None.

  Returns:
    image: (H, W, 3) float32 in [0, 1].
    mask: (H, W) bool, True where the face covers the pixel.
  """
  points = camera.rigid_transform(
      vertices, camera.pose_rotation(rotation_angles), translation)
  normals = mesh.vertex_normals(points, triangles)
  screen = jnp.concatenate(
      [camera.project(points, intrinsics), points[:, 2:]], axis=-1)
  fragments = raster.render(screen, triangles, height, width)
  attributes = jnp.concatenate([normals, reflectance], axis=-1)
  per_pixel = raster.interpolate(attributes, triangles, fragments)
  colour = shading.shade(per_pixel[..., 3:],
                         mesh.safe_normalize(per_pixel[..., :3]), sh)
  mask = np.asarray(fragments.triangle >= 0)
  if background is None:
    background = np.zeros((height, width, 3), np.float32)
  image = np.where(mask[..., None], np.clip(np.asarray(colour), 0.0, 1.0),
                   background)
  return image.astype(np.float32), mask


def side_by_side(images: Sequence[np.ndarray], gap: int = 4,
                 gap_value: float = 1.0) -> np.ndarray:
  """Concatenates equally tall (H, W, 3) images horizontally."""
  height = images[0].shape[0]
  spacer = np.full((height, gap, 3), gap_value, np.float32)
  pieces = []
  for index, image in enumerate(images):
    if index:
      pieces.append(spacer)
    pieces.append(np.asarray(image, np.float32))
  return np.concatenate(pieces, axis=1)


def overlay(image: np.ndarray, model, params, intrinsics: camera.Intrinsics,
            geometry_offsets=None, reflectance_offsets=None,
            sh=None) -> np.ndarray:
  """The shaded reconstruction of one face drawn over its photo.

  Args:
    image: (H, W, 3) photo in [0, 1].
    model: the face model.
    params: unbatched FaceParams.
    intrinsics: the photo's camera.
    geometry_offsets, reflectance_offsets: (N, 3) final-level correctives,
      or None for the base level.
    sh: (9, 3) light; default: the level's own (`formation.level_surface`).

  Returns:
    (H, W, 3) float32.
  """
  vertices, albedo, sh = formation.level_surface(
      model, params, geometry_offsets, reflectance_offsets, sh)
  height, width = image.shape[:2]
  rendered, _ = render_shaded(vertices, jnp.clip(albedo, 0.0, 1.0),
                              model.triangles, params.rotation,
                              params.translation, sh, intrinsics, height,
                              width, background=np.asarray(image, np.float32))
  return rendered
