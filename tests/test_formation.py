"""Point-based image formation: visibility, sampling, gradients, batching."""

import chex
import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np

from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.rendering import camera
from mofa_ml.rendering import formation
from mofa_ml.rendering import mesh
from mofa_ml.rendering import shading


def numpy_bilinear(image, u, v):
  """Reference bilinear interpolation (pixel centres at integers)."""
  x0, y0 = np.floor(u).astype(int), np.floor(v).astype(int)
  fx, fy = u - x0, v - y0
  top = image[y0, x0] * (1 - fx)[:, None] + image[y0, x0 + 1] * fx[:, None]
  bottom = (image[y0 + 1, x0] * (1 - fx)[:, None] +
            image[y0 + 1, x0 + 1] * fx[:, None])
  return top * (1 - fy)[:, None] + bottom * fy[:, None]


def smooth_image(height=60, width=80, dtype=np.float32):
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  return np.stack([0.5 + 0.4 * np.sin(cols / 9.0) * np.cos(rows / 13.0),
                   0.5 + 0.3 * np.cos(cols / 7.0 + rows / 11.0),
                   0.2 + 0.002 * cols + 0.003 * rows], -1).astype(dtype)


def test_backface_culling_hides_the_far_side_of_a_sphere():
  unit, triangles = mesh.icosphere(4)
  radius, distance = 50.0, 400.0
  points = jnp.asarray(unit * radius + [0.0, 0.0, distance], jnp.float32)
  normals = mesh.vertex_normals(points, jnp.asarray(triangles))
  visible = np.asarray(formation.backface_visibility(points, normals))
  chex.assert_shape(visible, (len(unit),))
  # Exactly visible: (p - c) . p < 0, i.e. unit_z < -radius / distance.
  threshold = -radius / distance
  clear = np.abs(unit[:, 2] - threshold) > 0.02
  np.testing.assert_array_equal(visible[clear] > 0,
                                unit[clear, 2] < threshold)
  assert visible[unit[:, 2] > 0].sum() == 0  # far hemisphere hidden


def test_sample_image_matches_numpy_bilinear():
  image = smooth_image()
  rng = np.random.default_rng(0)
  u = rng.uniform(0, 78.9, 200)
  v = rng.uniform(0, 58.9, 200)
  values, inside = formation.sample_image(
      jnp.asarray(image), jnp.asarray(np.stack([u, v], -1), jnp.float32))
  chex.assert_shape(values, (200, 3))
  np.testing.assert_allclose(values, numpy_bilinear(image, u, v), atol=1e-5)
  np.testing.assert_array_equal(inside, 1.0)
  _, outside = formation.sample_image(
      jnp.asarray(image), jnp.asarray([[-0.6, 3.0], [10.0, 59.6], [79.4, 0.0]]))
  np.testing.assert_array_equal(outside, [0.0, 0.0, 1.0])


def test_sample_image_gradients_match_finite_differences():
  with jax.enable_x64(True):
    image = jnp.asarray(smooth_image(dtype=np.float64))
    # Away from integer coordinates so the finite differences stay in a cell.
    pixels = jnp.asarray([[10.3, 20.6], [33.7, 5.2], [70.45, 40.55]])
    check_grads(lambda p: formation.sample_image(image, p)[0], (pixels,),
                order=1, modes=('rev',), eps=1e-4)
    check_grads(lambda im: formation.sample_image(im, pixels)[0], (image,),
                order=1, modes=('rev',), eps=1e-4)


def _tiny_face_model(ict_model, modes=6):
  """The bundled model cut to a few modes, to keep float64 checks quick."""
  return ict_model.replace(
      shape_basis=ict_model.shape_basis[:modes],
      shape_sigma=ict_model.shape_sigma[:modes],
      expression_basis=ict_model.expression_basis[:modes],
      expression_sigma=ict_model.expression_sigma[:modes],
      reflectance_basis=ict_model.reflectance_basis[:modes],
      reflectance_sigma=ict_model.reflectance_sigma[:modes])


def _random_params(model, layout, key, dtype):
  keys = jax.random.split(key, 4)
  x = jnp.zeros(layout.size, dtype)
  params = layout.split(x)
  sh = jnp.asarray(shading.directional_light(
      jnp.asarray([0.3, -0.4, -0.866]), jnp.ones(3), 0.6 * jnp.ones(3)), dtype)
  angles = jnp.asarray([0.1, -0.35, 0.05], dtype)
  return params._replace(
      shape=jax.random.normal(keys[0], (model.num_shape,), dtype) *
      model.shape_sigma * 0.5,
      expression=jax.random.normal(keys[1], (model.num_expression,), dtype) *
      model.expression_sigma * 0.1,
      reflectance=jax.random.normal(keys[2], (model.num_reflectance,), dtype) *
      model.reflectance_sigma * 0.5,
      rotation=angles,
      translation=camera.centring_translation(
          model.mean_shape.astype(dtype), model.landmark_vertices, angles),
      sh_base=sh,
      sh_final=sh * 0.9)


def test_full_formation_gradients_match_finite_differences(ict_model):
  with jax.enable_x64(True):
    model = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a,
        _tiny_face_model(ict_model))
    layout = layout_lib.ParameterLayout.for_model(model, num_correctives=0)
    params = _random_params(model, layout, jax.random.PRNGKey(0), jnp.float64)
    intrinsics = camera.default_intrinsics()
    rows, cols = np.meshgrid(np.arange(240), np.arange(240), indexing='ij')
    image = jnp.asarray(np.stack([
        0.5 + 0.3 * np.sin(cols / 17.0) * np.cos(rows / 23.0),
        0.4 + 0.2 * np.cos(cols / 19.0 + rows / 29.0),
        0.3 + 0.001 * cols], -1))
    visible = levels.render_levels(model, params, intrinsics)[0].visible
    count = model.num_vertices

    def photometric(x, offsets):
      params = layout.split(x)
      observed_base = levels.render_levels(model, params, intrinsics)[0]
      observed_final = levels.render_levels(
          model, params, intrinsics, geometry_offsets=offsets[:count],
          reflectance_offsets=offsets[count:])[1]
      loss = 0.0
      for rendering in (observed_base, observed_final):
        observed, _ = formation.sample_image(image, rendering.pixels)
        residual = jnp.sum((observed - rendering.colors)**2, axis=-1)
        loss += jnp.sum(visible * residual) / visible.sum()
      return loss

    x = layout.join(params)
    rng = np.random.default_rng(0)
    offsets = jnp.asarray(np.concatenate([
        rng.normal(size=(count, 3)) * 0.5, rng.normal(size=(count, 3)) * 0.02]))
    gradient_x, gradient_offsets = jax.grad(photometric, (0, 1))(x, offsets)

    def check(function, point, gradient, index, label):
      scale = max(1e-3, abs(float(point[index]))) * 1e-5
      step = jnp.zeros_like(point).at[index].set(scale)
      numeric = (function(point + step) - function(point - step)) / (2 * scale)
      np.testing.assert_allclose(gradient[index], numeric, rtol=2e-3,
                                 atol=1e-9, err_msg=label)

    for name, (start, stop) in layout.offsets.items():
      if stop == start:
        continue  # empty corrective groups (num_correctives=0)
      for index in rng.choice(np.arange(start, stop), size=2, replace=False):
        check(lambda x_: photometric(x_, offsets), x, gradient_x, index,
              f'{name}[{index}]')
    visible_index = np.flatnonzero(np.asarray(visible))
    for vertex in rng.choice(visible_index, size=2, replace=False):
      for row in (vertex, count + vertex):  # geometry, reflectance offsets
        index = (row, int(rng.integers(3)))
        check(lambda o: photometric(x, o), offsets, gradient_offsets, index,
              f'offsets{index}')


def test_final_level_adds_offsets_and_uses_its_own_light(ict_model):
  layout = layout_lib.ParameterLayout.for_model(ict_model, num_correctives=0)
  params = _random_params(ict_model, layout, jax.random.PRNGKey(1),
                          jnp.float32)
  intrinsics = camera.default_intrinsics()
  base = levels.render_levels(ict_model, params, intrinsics)[0]
  offsets = jnp.zeros((ict_model.num_vertices, 3)).at[:, 0].set(2.0)
  final = levels.render_levels(ict_model, params, intrinsics,
                               geometry_offsets=offsets,
                               reflectance_offsets=jnp.zeros_like(offsets))[1]
  rotation = camera.pose_rotation(params.rotation)
  np.testing.assert_allclose(final.points - base.points,
                             np.broadcast_to(rotation @ jnp.asarray(
                                 [2.0, 0.0, 0.0]), base.points.shape),
                             atol=1e-3)
  np.testing.assert_allclose(final.colors, base.colors * 0.9, rtol=1e-4,
                             atol=1e-6)


def test_vmap_and_jit_equal_a_python_loop(ict_model):
  layout = layout_lib.ParameterLayout.for_model(ict_model, num_correctives=0)
  intrinsics = camera.default_intrinsics()
  batch = [_random_params(ict_model, layout, jax.random.PRNGKey(seed),
                          jnp.float32) for seed in range(3)]
  stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *batch)
  batched = jax.jit(jax.vmap(
      lambda p: levels.render_levels(ict_model, p, intrinsics)[0]))(stacked)
  chex.assert_shape(batched.pixels, (3, ict_model.num_vertices, 2))
  chex.assert_shape(batched.colors, (3, ict_model.num_vertices, 3))
  chex.assert_shape(batched.visible, (3, ict_model.num_vertices))
  for index, params in enumerate(batch):
    single = levels.render_levels(ict_model, params, intrinsics)[0]
    for field in single._fields:
      np.testing.assert_allclose(getattr(batched, field)[index],
                                 getattr(single, field), rtol=1e-4, atol=1e-3,
                                 err_msg=field)


def test_frontal_mean_face_projects_into_the_crop(ict_model):
  layout = layout_lib.ParameterLayout.for_model(ict_model)
  params = layout.split(jnp.zeros(layout.size))
  params = params._replace(
      translation=camera.centring_translation(ict_model.mean_shape,
                                              ict_model.landmark_vertices),
      sh_base=jnp.asarray(shading.AMBIENT_WHITE))
  rendering = levels.render_levels(ict_model, params,
                                   camera.default_intrinsics())[0]
  landmarks = rendering.pixels[ict_model.landmark_vertices]
  assert np.all((landmarks > 20) & (landmarks < 220))
  # Ambient white light reproduces the albedo exactly.
  np.testing.assert_allclose(rendering.colors, ict_model.mean_reflectance,
                             rtol=1e-5)
  # Subject's right eye corner (36) appears on the image's left.
  assert landmarks[36, 0] < landmarks[45, 0]
  assert landmarks[8, 1] > landmarks[27, 1]  # chin below the nose bridge
  assert rendering.visible[ict_model.landmark_vertices[30]] == 1.0
