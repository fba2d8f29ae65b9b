"""The fit's start: the head pose of the mean face from the landmarks."""

import functools

import jax
import jax.numpy as jnp

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.rendering import camera


@functools.partial(jax.jit, static_argnames=('iterations',))
def landmark_pose(model: fm.FaceModel, intrinsics: camera.Intrinsics,
                  landmarks: jax.Array, confidence: jax.Array,
                  iterations: int = 15):
  """Head rotation and translation of the mean face that best explain the
  inner 51 landmarks (Gauss-Newton on six numbers).

  The start is frontal at the depth where the mean face's landmark spread
  matches the photo's; a fit that starts at the default 1 m instead lands
  in a wrong basin (a smaller head too close to the camera).

  Returns:
    (rotation (3,) radians, translation (3,) mm).
  """
  inner = jnp.asarray(lm.FIXED)
  points = model.mean_shape[model.landmark_vertices[inner]]
  weights = confidence[inner]
  target = landmarks[inner]
  centred = points - points.mean(0)
  image_spread = jnp.sqrt(jnp.mean(jnp.sum(
      (target - target.mean(0))**2, -1)))
  model_spread = jnp.sqrt(jnp.mean(jnp.sum(centred[:, :2]**2, -1)))
  depth = jnp.mean(intrinsics.focal_length) * model_spread / image_spread
  ray = camera.unproject_ray(target.mean(0)[None], intrinsics)[0]
  translation = ray / ray[2] * depth - camera.pose_rotation(
      jnp.zeros(3)) @ points.mean(0)
  pose = jnp.concatenate([jnp.zeros(3), translation])

  def residual(pose):
    projected = camera.project(camera.rigid_transform(
        points, camera.pose_rotation(pose[:3]), pose[3:]), intrinsics)
    return (jnp.sqrt(weights)[:, None] * (projected - target)).reshape(-1)

  def step(pose, _):
    jacobian = jax.jacfwd(residual)(pose)
    normal = jacobian.T @ jacobian
    gradient = jacobian.T @ residual(pose)
    damping = 1e-3 * jnp.diag(jnp.diag(normal)) + 1e-9 * jnp.eye(6)
    return pose - jnp.linalg.solve(normal + damping, gradient), None

  pose, _ = jax.lax.scan(step, pose, None, length=iterations)
  return pose[:3], pose[3:]
