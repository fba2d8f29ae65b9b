"""Reflectance only where the photo shows the face."""

import io

import jax.numpy as jnp
import numpy as np
import PIL.Image

from mofa_ml.data import synthetic
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.export import meshes
from mofa_ml.fitting import fit
from mofa_ml.reconstruction import reconstructor as reconstructor_lib
from mofa_ml.fitting import visibility
from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh
from mofa_ml.rendering import shading
from mofa_ml.rendering import viz


def test_mirror_vertices_of_a_symmetric_model_are_an_involution(ict_model):
  mirror = visibility.mirror_vertices(ict_model.mean_shape)
  assert np.all(mirror >= 0)
  np.testing.assert_array_equal(mirror[mirror], np.arange(len(mirror)))
  mean = np.asarray(ict_model.mean_shape)
  np.testing.assert_allclose(mean[mirror] * [-1, 1, 1], mean, atol=0.1)
  lopsided = mean + np.where(mean[:, :1] > 0, 5.0, 0.0)
  assert np.mean(visibility.mirror_vertices(lopsided) < 0) > 0.3


def test_trusted_offsets_blend_from_the_seen_mirror():
  offsets = jnp.asarray([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
  weights = jnp.asarray([1.0, 0.0, 0.25])
  mirror = jnp.asarray([1, 0, -1])
  trusted = visibility.trusted_reflectance_offsets(offsets, weights, mirror)
  np.testing.assert_allclose(trusted, [[1, 0, 0], [1, 0, 0], [0, 0, 0.25]])


def test_turned_face_over_green_keeps_green_out_of_the_texture(ict_model):
  size = 240
  layout = layout_lib.ParameterLayout.for_model(ict_model, 0)
  intrinsics = camera.default_intrinsics(size)
  angles = jnp.asarray([0.0, np.radians(45.0), 0.0])
  params = layout.split(jnp.zeros(layout.size))._replace(
      rotation=angles,
      translation=camera.centring_translation(
          ict_model.mean_shape, ict_model.landmark_vertices, angles),
      sh_base=jnp.asarray(shading.AMBIENT_WHITE),
      sh_final=jnp.asarray(shading.AMBIENT_WHITE))
  green = np.zeros((size, size, 3), np.float32)
  green[..., 1] = 1.0
  image, _ = viz.render_shaded(ict_model.mean_shape,
                               ict_model.mean_reflectance, ict_model.triangles,
                               angles, params.translation, params.sh_base,
                               intrinsics, size, size, green)
  points = camera.rigid_transform(ict_model.mean_shape,
                                  camera.pose_rotation(angles),
                                  params.translation)
  outline = synthetic.outline_landmarks(
      ict_model, points, mesh.vertex_normals(points, ict_model.triangles))
  indices = ict_model.landmark_vertices.at[jnp.asarray(lm.CONTOUR)].set(
      outline)
  landmarks = np.asarray(camera.project(points, intrinsics)[indices])
  reconstructor = reconstructor_lib.Reconstructor(
      ict_model, fit_config=fit.FitConfig(final_steps=100))
  photo = (image * 255).round().astype(np.uint8)
  face = reconstructor.reconstruct_face(photo, landmarks, np.ones(68))
  files = reconstructor.files(photo, face)
  texture = np.asarray(PIL.Image.open(io.BytesIO(
      files['textured_final_albedo.png'])).convert('RGB'), np.float32) / 255
  uv = meshes.cylindrical_uv(np.asarray(ict_model.mean_shape))
  height, width = texture.shape[:2]
  texels = texture[np.clip(((1 - uv[:, 1]) * (height - 1)).round().astype(int),
                           0, height - 1),
                   np.clip((uv[:, 0] * (width - 1)).round().astype(int), 0,
                           width - 1)]
  green_dominant = texels[:, 1] > np.maximum(texels[:, 0], texels[:, 2]) + 0.05
  assert green_dominant.sum() == 0, f'{green_dominant.sum()} green texels'
