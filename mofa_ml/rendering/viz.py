"""Pictures of faces: shaded renders, overlays and panels."""

import functools
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh
from mofa_ml.rendering import raster
from mofa_ml.rendering import shading


# Pictures are drawn in tiles of at most this side, all one size: the
# rasterizer's per-pixel buffers of larger ones spill out of the CPU's
# cache. Measured on 2 cores, one run: 480 px whole 43 ms, as four 240 px
# tiles 32 ms; 640 px whole 80 ms, four 320 px tiles 49 ms, nine 214 px
# tiles 64 ms; 320 px whole 13 ms, four 160 px tiles 17 ms.
TILE_SIDE = 320


@functools.partial(jax.jit, static_argnames=('height', 'width', 'capacity'))
def _shaded_pixels(vertices, reflectance, triangles, rotation_angles,
                   translation, sh, intrinsics, background, height, width,
                   capacity):
  """`render_shaded` as one compiled program (one per picture size: the
  persistent compilation cache keeps it between runs, where op-by-op
  dispatch recompiled some 50 small programs for every new photo size)."""
  points = camera.rigid_transform(
      vertices, camera.pose_rotation(rotation_angles), translation)
  normals = mesh.vertex_normals(points, triangles)
  screen = jnp.concatenate(
      [camera.project(points, intrinsics), points[:, 2:]], axis=-1)
  fragments = raster.rasterize(screen, triangles, height, width, capacity)
  attributes = jnp.concatenate([normals, reflectance], axis=-1)
  per_pixel = raster.interpolate(attributes, triangles, fragments)
  colour = shading.shade(per_pixel[..., 3:],
                         mesh.safe_normalize(per_pixel[..., :3]), sh)
  mask = fragments.triangle >= 0
  image = jnp.where(mask[..., None], jnp.clip(colour, 0.0, 1.0), background)
  return (image, mask), fragments.overflow, fragments.needed


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
  as_float = lambda x: jnp.asarray(x, jnp.float32)
  # One signature per size: a scalar focal length is the same as (f, f).
  focal = jnp.broadcast_to(as_float(intrinsics.focal_length), (2,))
  centre = as_float(intrinsics.principal_point)
  rows, columns = -(-height // TILE_SIDE), -(-width // TILE_SIDE)
  tile_height, tile_width = -(-height // rows), -(-width // columns)
  padded = np.zeros((rows * tile_height, columns * tile_width, 3), np.float32)
  if background is not None:
    padded[:height, :width] = background
  mask = np.zeros(padded.shape[:2], bool)
  mesh_arguments = (as_float(vertices), as_float(reflectance),
                    jnp.asarray(triangles, jnp.int32),
                    as_float(rotation_angles), as_float(translation),
                    as_float(sh))
  for top in range(0, padded.shape[0], tile_height):
    for left in range(0, padded.shape[1], tile_width):
      tile = np.s_[top:top + tile_height, left:left + tile_width]
      # The tile's camera: the picture's, its principal point moved.
      arguments = mesh_arguments + (camera.Intrinsics(
          focal, centre - jnp.asarray([left, top], jnp.float32)),
                                    jnp.asarray(padded[tile]))
      padded[tile], mask[tile] = raster.with_growing_capacity(
          lambda capacity, arguments=arguments: _shaded_pixels(
              *arguments, height=tile_height, width=tile_width,
              capacity=capacity), tile_height, tile_width)
  return (np.ascontiguousarray(padded[:height, :width]),
          np.ascontiguousarray(mask[:height, :width]))


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


def overlay(image: np.ndarray, surface, triangles: jnp.ndarray, params,
            intrinsics: camera.Intrinsics) -> np.ndarray:
  """One face's shaded surface drawn over its photo.

  Args:
    image: (H, W, 3) photo in [0, 1].
    surface: a `levels.Surface` (vertices, reflectance, sh); the albedo is
      clipped to [0, 1].
    triangles: (F, 3) int.
    params: FaceParams (its rotation and translation place the face).
    intrinsics: the photo's camera.

  Returns:
    (H, W, 3) float32.
  """
  height, width = image.shape[:2]
  rendered, _ = render_shaded(
      surface.vertices, jnp.clip(surface.reflectance, 0.0, 1.0), triangles,
      params.rotation, params.translation, surface.sh, intrinsics, height,
      width, background=np.asarray(image, np.float32))
  return rendered


def lit_sphere(sh: jnp.ndarray, size: int = 160) -> np.ndarray:
  """(size, size, 3) a white sphere under an SH light (camera frame)."""
  unit, triangles = mesh.icosphere(4)
  sphere = jnp.asarray(unit * 70.0, jnp.float32)
  image, _ = render_shaded(
      sphere, jnp.full_like(sphere, 0.8), jnp.asarray(triangles),
      jnp.zeros(3), jnp.asarray([0.0, 0.0, 1500.0]), sh,
      camera.default_intrinsics(size), size, size,
      np.full((size, size, 3), 0.15, np.float32))
  return image
