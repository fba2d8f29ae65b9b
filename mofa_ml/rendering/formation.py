"""Point-based differentiable image formation (paper Sec. 5).

One level's vertices and reflectance -> camera-space points, pixel positions
u_i, camera-space normals, shaded colours c_i and backface visibility. The
photometric loss then compares c_i with the photo sampled at u_i
(`sample_image`). Everything is pure `jnp`, works under `jit`, and batches
with `jax.vmap` (or leading batch axes where stated).
"""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh
from mofa_ml.rendering import shading


class PointRendering(NamedTuple):
  """Per-vertex result of the image formation (a pytree).

  Attributes:
    pixels: (N, 2) projected positions u_i, pixels.
    colors: (N, 3) shaded colours c_i, image units.
    visible: (N,) float32 in {0, 1}, backface culling (constant: no gradient).
    points: (N, 3) camera-space positions, mm.
    normals: (N, 3) camera-space unit normals.
  """
  pixels: jax.Array
  colors: jax.Array
  visible: jax.Array
  points: jax.Array
  normals: jax.Array


def backface_visibility(points: jax.Array, normals: jax.Array) -> jax.Array:
  """1 where the normal faces the camera centre (n . (0 - p) > 0), else 0.

  The paper's visibility: an approximation that holds because faces are
  almost convex. Points behind the camera are never visible.

  Args:
    points: (..., N, 3) camera-space positions.
    normals: (..., N, 3) camera-space normals.

  Returns:
    (..., N) float, without gradient.
  """
  facing = jnp.sum(normals * points, axis=-1) < 0.0
  in_front = points[..., 2] > 0.0
  return jax.lax.stop_gradient((facing & in_front).astype(points.dtype))


def render_points(vertices: jax.Array, reflectance: jax.Array,
                  triangles: jax.Array, rotation_angles: jax.Array,
                  translation: jax.Array, sh: jax.Array,
                  intrinsics: camera.Intrinsics) -> PointRendering:
  """Forms the point-based rendering of one face.

  Args:
    vertices: (N, 3) model-space positions, mm.
    reflectance: (N, 3) albedo, RGB in [0, 1].
    triangles: (F, 3) int, counter-clockwise from outside.
    rotation_angles: (3,) head pose Euler angles, radians.
    translation: (3,) camera-space translation, mm.
    sh: (9, 3) irradiance coefficients, camera frame.
    intrinsics: the camera.

  Returns:
    PointRendering.
  """
  chex.assert_rank([vertices, reflectance, rotation_angles, translation, sh],
                   [2, 2, 1, 1, 2])
  chex.assert_equal_shape([vertices, reflectance])
  rotation = camera.pose_rotation(rotation_angles)
  points = camera.rigid_transform(vertices, rotation, translation)
  normals = mesh.vertex_normals(points, triangles)
  return PointRendering(
      pixels=camera.project(points, intrinsics),
      colors=shading.shade(reflectance, normals, sh),
      visible=backface_visibility(points, normals),
      points=points,
      normals=normals)


def sample_image(image: jax.Array, pixels: jax.Array):
  """Bilinear samples of an image at sub-pixel positions.

  Differentiable w.r.t. the positions (piecewise linear) and the image.
  jax.scipy's `map_coordinates` is used rather than a hand-written gather
  because it already implements order-1 interpolation with these gradients.

  Args:
    image: (H, W, C) float.
    pixels: (N, 2) (u, v) in the pixel-centre convention of `camera`.

  Returns:
    values: (N, C); positions outside the image take the nearest border
      pixel's value (so gradients stay finite).
    inside: (N,) float in {0, 1}, 1 where the position lies within the image.
  """
  chex.assert_rank([image, pixels], [3, 2])
  chex.assert_axis_dimension(pixels, 1, 2)
  height, width = image.shape[0], image.shape[1]
  coordinates = [pixels[:, 1], pixels[:, 0]]
  values = jax.vmap(
      lambda channel: jax.scipy.ndimage.map_coordinates(
          channel, coordinates, order=1, mode='nearest'),
      in_axes=2, out_axes=1)(image)
  u, v = pixels[:, 0], pixels[:, 1]
  inside = (u >= -0.5) & (u <= width - 0.5) & (v >= -0.5) & (v <= height - 0.5)
  return values, jax.lax.stop_gradient(inside.astype(image.dtype))
