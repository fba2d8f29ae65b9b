"""Rotations, rigid transform and perspective projection."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.rendering import camera


def test_rotations_are_proper_and_orthonormal():
  angles = jax.random.uniform(jax.random.PRNGKey(0), (4, 5, 3),
                              minval=-np.pi, maxval=np.pi)
  rotations = camera.euler_to_rotation(angles)
  chex.assert_shape(rotations, (4, 5, 3, 3))
  identity = jnp.einsum('...ji,...jk->...ik', rotations, rotations)
  np.testing.assert_allclose(identity, np.broadcast_to(np.eye(3), identity.shape),
                             atol=1e-5)
  np.testing.assert_allclose(jnp.linalg.det(rotations), 1.0, atol=1e-5)
  pose = camera.pose_rotation(angles)
  np.testing.assert_allclose(jnp.linalg.det(pose), 1.0, atol=1e-5)


def test_euler_angles_rotate_about_the_documented_axes():
  quarter = np.pi / 2
  x, y, z = np.eye(3)
  yaw = camera.euler_to_rotation(jnp.asarray([0.0, quarter, 0.0]))
  np.testing.assert_allclose(yaw @ z, x, atol=1e-6)  # nose turns to +x
  pitch = camera.euler_to_rotation(jnp.asarray([quarter, 0.0, 0.0]))
  np.testing.assert_allclose(pitch @ y, z, atol=1e-6)
  roll = camera.euler_to_rotation(jnp.asarray([0.0, 0.0, quarter]))
  np.testing.assert_allclose(roll @ x, y, atol=1e-6)
  # Order Rz Ry Rx: compare with the product of single-axis rotations.
  angles = jnp.asarray([0.3, -0.7, 1.1])
  single = [camera.euler_to_rotation(jnp.asarray(a)) for a in
            ([0.3, 0, 0], [0, -0.7, 0], [0, 0, 1.1])]
  np.testing.assert_allclose(camera.euler_to_rotation(angles),
                             single[2] @ single[1] @ single[0], atol=1e-6)


def test_zero_pose_looks_at_the_face():
  np.testing.assert_allclose(camera.pose_rotation(jnp.zeros(3)),
                             np.diag([1.0, -1.0, -1.0]))


def test_projection_matches_hand_computation():
  intrinsics = camera.Intrinsics(focal_length=jnp.asarray([1000.0, 800.0]),
                                 principal_point=jnp.asarray([120.0, 100.0]))
  points = jnp.asarray([[0.0, 0.0, 500.0], [50.0, -25.0, 1000.0],
                        [-10.0, 30.0, 200.0]])
  expected = [[120.0, 100.0], [120.0 + 1000 * 0.05, 100.0 - 800 * 0.025],
              [120.0 - 1000 * 0.05, 100.0 + 800 * 0.15]]
  pixels = camera.project(points, intrinsics)
  chex.assert_shape(pixels, (3, 2))
  np.testing.assert_allclose(pixels, expected, rtol=1e-6)


def test_rigid_transform_then_projection_round_trips_through_rays():
  intrinsics = camera.default_intrinsics()
  key1, key2, key3 = jax.random.split(jax.random.PRNGKey(1), 3)
  points = jax.random.normal(key1, (2, 7, 3)) * 60.0
  rotation = camera.pose_rotation(jax.random.normal(key2, (2, 3)) * 0.3)
  translation = jnp.asarray([[5.0, -3.0, 900.0], [0.0, 10.0, 1100.0]])
  camera_points = camera.rigid_transform(points, rotation, translation)
  chex.assert_shape(camera_points, (2, 7, 3))
  np.testing.assert_allclose(
      camera_points[1, 3], rotation[1] @ points[1, 3] + translation[1],
      rtol=1e-5)
  pixels = camera.project(camera_points, intrinsics)
  rays = camera.unproject_ray(pixels, intrinsics)
  directions = camera_points / jnp.linalg.norm(camera_points, axis=-1,
                                               keepdims=True)
  np.testing.assert_allclose(rays, directions, atol=1e-5)
  del key3


def test_centring_translation_puts_the_centroid_on_the_axis():
  vertices = jax.random.normal(jax.random.PRNGKey(2), (30, 3)) * 50.0
  indices = jnp.asarray([1, 4, 9, 20])
  angles = jnp.asarray([0.1, 0.6, -0.2])
  t = camera.centring_translation(vertices, indices, angles, 750.0)
  moved = camera.rigid_transform(vertices[indices], camera.pose_rotation(angles),
                                 t)
  np.testing.assert_allclose(moved.mean(axis=0), [0.0, 0.0, 750.0], atol=1e-3)
