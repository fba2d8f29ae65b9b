"""Rigid head pose and the full perspective camera.

Conventions:
  * Model space: y up, z out of the face towards the viewer, mm.
  * Camera space: OpenCV's (x right, y down, z forward into the scene), mm;
    the camera centre is the origin.
  * Pose: three Euler angles (pitch about x, yaw about y, roll about z,
    radians) of the head in model axes, applied as R_euler = Rz Ry Rx, then
    the fixed half-turn about x that takes model axes to camera axes. Zero
    angles therefore mean a frontal face looking at the camera, and the
    regularisation-free pose parameters stay small around that.
  * Pixels: the centre of pixel (row i, column j) is at (u=j, v=i); an image
    of width W covers u in [-0.5, W - 0.5].
"""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

# Model axes (y up, z to viewer) -> camera axes (y down, z away): a proper
# rotation by pi about x.
MODEL_TO_CAMERA = np.diag([1.0, -1.0, -1.0]).astype(np.float32)

DEFAULT_IMAGE_SIZE = 240
# About 12.5 degrees horizontal field of view: a 150 mm wide face at 1 m
# fills ~165 of the 240 pixels, like the paper's tight crops.
DEFAULT_FOCAL_LENGTH = 1100.0
DEFAULT_DISTANCE_MM = 1000.0


class Intrinsics(NamedTuple):
  """Pinhole intrinsics (a pytree).

  Attributes:
    focal_length: () or (2,) float, pixels (fx, fy).
    principal_point: (2,) float, pixels (cx, cy).
  """
  focal_length: jax.Array
  principal_point: jax.Array


def default_intrinsics(image_size: int = DEFAULT_IMAGE_SIZE,
                       focal_length: float = DEFAULT_FOCAL_LENGTH) -> Intrinsics:
  """Square-pixel intrinsics centred on an `image_size` square crop."""
  centre = (image_size - 1) / 2.0
  return Intrinsics(
      focal_length=jnp.asarray(focal_length, jnp.float32),
      principal_point=jnp.asarray([centre, centre], jnp.float32))


def euler_to_rotation(angles: jax.Array) -> jax.Array:
  """Rotation Rz(roll) @ Ry(yaw) @ Rx(pitch).

  Args:
    angles: (..., 3) (pitch, yaw, roll), radians.

  Returns:
    (..., 3, 3) rotation matrices.
  """
  chex.assert_axis_dimension(angles, -1, 3)
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  one, zero = jnp.ones_like(cos[..., 0]), jnp.zeros_like(cos[..., 0])
  cx, cy, cz = cos[..., 0], cos[..., 1], cos[..., 2]
  sx, sy, sz = sin[..., 0], sin[..., 1], sin[..., 2]
  rx = jnp.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1)
  ry = jnp.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1)
  rz = jnp.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1)
  shape = angles.shape[:-1] + (3, 3)
  return rz.reshape(shape) @ ry.reshape(shape) @ rx.reshape(shape)


def pose_rotation(angles: jax.Array) -> jax.Array:
  """(..., 3, 3) model-to-camera rotation for head-pose Euler angles."""
  return MODEL_TO_CAMERA @ euler_to_rotation(angles)


def rigid_transform(points: jax.Array, rotation: jax.Array,
                    translation: jax.Array) -> jax.Array:
  """v_hat = R v + t.

  Args:
    points: (..., N, 3) model-space points, mm.
    rotation: (..., 3, 3).
    translation: (..., 3), mm, camera space.

  Returns:
    (..., N, 3) camera-space points, mm.
  """
  chex.assert_axis_dimension(points, -1, 3)
  chex.assert_axis_dimension(translation, -1, 3)
  # Three multiply-adds rather than an einsum: XLA's CPU backend turns a
  # contraction over 3 into tiny matmuls, this into one fused loop (27x
  # faster for a batch of 16 faces, measured).
  rotated = sum(points[..., j:j + 1] * rotation[..., None, :, j]
                for j in range(3))
  return rotated + translation[..., None, :]


def project(points: jax.Array, intrinsics: Intrinsics,
            min_depth: float = 1e-3) -> jax.Array:
  """Perspective projection of camera-space points to pixels.

  u = fx x / z + cx,  v = fy y / z + cy.

  Args:
    points: (..., N, 3) camera-space points, mm, z > 0 in front.
    intrinsics: the camera.
    min_depth: depths are clamped to this (mm) so that points behind the
      camera give finite (meaningless) pixels instead of inf/NaN; they are
      never visible (see `formation.backface_visibility`).

  Returns:
    (..., N, 2) pixel coordinates (u, v).
  """
  chex.assert_axis_dimension(points, -1, 3)
  depth = jnp.maximum(points[..., 2:3], min_depth)
  return (points[..., :2] / depth * intrinsics.focal_length +
          intrinsics.principal_point)


def unproject_ray(pixels: jax.Array, intrinsics: Intrinsics) -> jax.Array:
  """Unit directions (..., 3) of the camera rays through (..., 2) pixels."""
  chex.assert_axis_dimension(pixels, -1, 2)
  xy = (pixels - intrinsics.principal_point) / intrinsics.focal_length
  rays = jnp.concatenate([xy, jnp.ones_like(xy[..., :1])], axis=-1)
  return rays / jnp.linalg.norm(rays, axis=-1, keepdims=True)


def centring_translation(vertices: jax.Array, landmark_vertices: jax.Array,
                         rotation_angles: jax.Array = None,
                         distance_mm: float = DEFAULT_DISTANCE_MM) -> jax.Array:
  """Translation that puts the landmarks' centroid on the optical axis.

  Args:
    vertices: (N, 3) model-space positions, mm.
    landmark_vertices: (L,) vertex indices.
    rotation_angles: (3,) pose the face will have; frontal if None.
    distance_mm: depth of the centroid.

  Returns:
    (3,) t such that R c + t = (0, 0, distance_mm) for the centroid c.
  """
  if rotation_angles is None:
    rotation_angles = jnp.zeros(3, vertices.dtype)
  centroid = jnp.mean(vertices[landmark_vertices], axis=0)
  rotated = pose_rotation(rotation_angles) @ centroid
  return jnp.asarray([0.0, 0.0, distance_mm], vertices.dtype) - rotated


def photo_intrinsics(crop_intrinsics: Intrinsics,
                     crop_transform: np.ndarray) -> Intrinsics:
  """The photo's camera given a crop's, for crop = s * photo + t.

  Args:
    crop_intrinsics: the crop's camera.
    crop_transform: (2, 3) similarity without rotation, photo -> crop
      pixels (see `data.crop.crop_transform`).
  """
  scale = crop_transform[0, 0]
  shift = crop_transform[:, 2]
  return Intrinsics(
      focal_length=jnp.asarray(crop_intrinsics.focal_length / scale),
      principal_point=jnp.asarray(
          (np.asarray(crop_intrinsics.principal_point) - shift) / scale))


def crop_intrinsics(photo_camera: Intrinsics,
                    crop_transform: np.ndarray) -> Intrinsics:
  """The crop's camera for a photo camera; inverse of `photo_intrinsics`."""
  scale = crop_transform[0, 0]
  return Intrinsics(
      focal_length=jnp.asarray(photo_camera.focal_length * scale),
      principal_point=jnp.asarray(
          np.asarray(photo_camera.principal_point) * scale +
          crop_transform[:, 2]))
