"""The z-buffer rasterizer: depth test, perspective-correct interpolation."""

import chex
import jax.numpy as jnp
import numpy as np

from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh
from mofa_ml.rendering import raster
from mofa_ml.rendering import viz


def screen_of(points, intrinsics):
  points = jnp.asarray(points, jnp.float32)
  return jnp.concatenate([camera.project(points, intrinsics), points[:, 2:]],
                         axis=-1)


def two_overlapping_triangles(near_first):
  # Two large triangles facing the camera and overlapping in the middle;
  # 'near' at depth 400 mm.
  far = [[0.0, 60.0, 500.0], [60.0, -50.0, 500.0], [-60.0, -50.0, 500.0]]
  near = [[40.0, 30.0, 400.0], [0.0, -40.0, 400.0], [-40.0, 30.0, 400.0]]
  vertices = near + far if near_first else far + near
  triangles = [[0, 1, 2], [3, 4, 5]]
  near_index = 0 if near_first else 1
  return np.asarray(vertices), np.asarray(triangles, np.int32), near_index


def test_depth_test_hides_the_occluded_triangle_in_either_order():
  intrinsics = camera.Intrinsics(jnp.asarray(300.0), jnp.asarray([63.5, 63.5]))
  results = []
  for near_first in (True, False):
    vertices, triangles, near_index = two_overlapping_triangles(near_first)
    fragments = raster.rasterize(screen_of(vertices, intrinsics),
                                 jnp.asarray(triangles), height=128, width=128,
                                 capacity=4 * 128 * 128)
    chex.assert_shape(fragments.triangle, (128, 128))
    chex.assert_shape(fragments.barycentric, (128, 128, 3))
    assert not fragments.overflow
    ids = np.asarray(fragments.triangle)
    depth = np.asarray(fragments.depth)
    # Centre pixel lies in both triangles: the near one wins.
    assert ids[64, 64] == near_index
    np.testing.assert_allclose(depth[64, 64], 400.0, rtol=1e-5)
    far_only = ids == 1 - near_index
    assert far_only.sum() > 500
    np.testing.assert_allclose(depth[far_only], 500.0, rtol=1e-5)
    assert ids[0, 0] == -1 and np.isinf(depth[0, 0])
    results.append(np.where(ids >= 0, depth, 0.0))
  np.testing.assert_array_equal(results[0], results[1])


def test_perspective_correct_interpolation_reproduces_3d_positions():
  # A slanted triangle: interpolating camera-space positions per pixel must
  # give points on the pixel's ray (linear in 3D, not in screen space).
  intrinsics = camera.Intrinsics(jnp.asarray(200.0), jnp.asarray([49.5, 49.5]))
  vertices = jnp.asarray([[-80.0, -60.0, 300.0], [90.0, -50.0, 700.0],
                          [0.0, 80.0, 450.0]])
  fragments = raster.rasterize(screen_of(vertices, intrinsics),
                               jnp.asarray([[0, 1, 2]]), height=100, width=100,
                               capacity=40000)
  positions = np.asarray(raster.interpolate(vertices, jnp.asarray([[0, 1, 2]]),
                                            fragments))
  covered = np.asarray(fragments.triangle) == 0
  assert covered.sum() > 1000
  rows, cols = np.nonzero(covered)
  pixels = camera.project(jnp.asarray(positions[rows, cols]), intrinsics)
  np.testing.assert_allclose(pixels, np.stack([cols, rows], -1), atol=1e-2)
  np.testing.assert_allclose(positions[rows, cols, 2],
                             np.asarray(fragments.depth)[rows, cols],
                             rtol=1e-5)


def test_profile_view_does_not_show_the_far_cheek(ict_model):
  intrinsics = camera.default_intrinsics()
  vertices = ict_model.mean_shape
  for yaw in (np.pi / 2, -np.pi / 2):
    angles = jnp.asarray([0.0, yaw, 0.0])
    points = camera.rigid_transform(vertices, camera.pose_rotation(angles),
                                    camera.centring_translation(
                                        vertices, ict_model.landmark_vertices,
                                        angles))
    fragments = raster.render(screen_of(points, intrinsics),
                              ict_model.triangles, 240, 240)
    model_x = np.asarray(raster.interpolate(vertices[:, :1],
                                            ict_model.triangles, fragments))
    covered = np.asarray(fragments.triangle) >= 0
    assert covered.sum() > 3000
    # Yaw +90 degrees turns the subject's left (+x) cheek away from the
    # camera; it must be hidden behind the nose and the near cheek.
    far_side = model_x[covered, 0] * np.sign(yaw) > 15.0
    assert far_side.mean() < 0.002, far_side.mean()


def test_overflow_is_reported_and_render_retries():
  intrinsics = camera.Intrinsics(jnp.asarray(300.0), jnp.asarray([63.5, 63.5]))
  vertices, triangles, _ = two_overlapping_triangles(True)
  screen = screen_of(vertices, intrinsics)
  small = raster.rasterize(screen, jnp.asarray(triangles), height=128,
                           width=128, capacity=1000)
  assert bool(small.overflow) and int(small.needed) > 1000
  full = raster.render(screen, jnp.asarray(triangles), 128, 128)
  exact = raster.rasterize(screen, jnp.asarray(triangles), height=128,
                           width=128, capacity=int(small.needed))
  assert not full.overflow
  np.testing.assert_array_equal(full.triangle, exact.triangle)


def test_backface_culling_option_drops_triangles_facing_away():
  intrinsics = camera.Intrinsics(jnp.asarray(300.0), jnp.asarray([63.5, 63.5]))
  vertices, triangles, near_index = two_overlapping_triangles(True)
  # Flip the near triangle so it faces away from the camera.
  triangles = triangles.copy()
  triangles[near_index] = triangles[near_index][::-1]
  screen = screen_of(vertices, intrinsics)
  kept = raster.render(screen, jnp.asarray(triangles), 128, 128)
  culled = raster.render(screen, jnp.asarray(triangles), 128, 128,
                         cull_backfaces=True)
  assert int(kept.triangle[64, 64]) == near_index
  assert int(culled.triangle[64, 64]) == 1 - near_index


def test_culling_agrees_with_outward_normals_on_a_closed_sphere():
  # On a closed convex mesh only back faces are hidden by the depth test, so
  # culling them changes nothing: this pins the culling sign to the
  # counter-clockwise outward convention of `mesh` and `formation`.
  unit, triangles = mesh.icosphere(3)
  intrinsics = camera.Intrinsics(jnp.asarray(300.0), jnp.asarray([63.5, 63.5]))
  screen = screen_of(unit * 60.0 + [0.0, 0.0, 400.0], intrinsics)
  plain = raster.render(screen, jnp.asarray(triangles), 128, 128)
  culled = raster.render(screen, jnp.asarray(triangles), 128, 128,
                         cull_backfaces=True)
  assert (np.asarray(plain.triangle) >= 0).sum() > 3000
  np.testing.assert_array_equal(plain.triangle, culled.triangle)


def test_vertex_visibility_hides_the_far_side_of_a_sphere():
  unit, triangles = mesh.icosphere(3)
  points = jnp.asarray(unit) * 50.0 + jnp.asarray([0.0, 0.0, 300.0])
  intrinsics = camera.default_intrinsics(240, 300.0)
  screen = jnp.concatenate([camera.project(points, intrinsics),
                            points[:, 2:]], -1)
  fragments = raster.render(screen, jnp.asarray(triangles), 240, 240)
  visible = np.asarray(raster.vertex_visibility(screen, fragments))
  facing = np.sum(np.asarray(unit) * np.asarray(
      points / jnp.linalg.norm(points, axis=-1, keepdims=True)), -1)
  assert visible[facing < -0.2].min() == 1.0   # towards the camera
  assert visible[facing > 0.2].max() == 0.0    # behind the front half
  # Off-image vertices are never visible.
  shifted = screen.at[:, 0].add(1000.0)
  assert float(raster.vertex_visibility(shifted, fragments).max()) == 0.0


def test_a_picture_drawn_in_tiles_is_the_picture_drawn_whole(ict_model,
                                                             monkeypatch):
  # 501 x 331 px: two columns and two rows of 251 x 166 px tiles (at a
  # `TILE_SIDE` of 320), the last ones padded by a pixel; the face
  # crosses every tile border.
  height, width = 331, 501
  intrinsics = camera.Intrinsics(jnp.asarray(900.0),
                                 jnp.asarray([260.0, 150.0]))
  vertices = ict_model.mean_shape
  angles = jnp.asarray([0.1, 0.4, 0.0])
  translation = camera.centring_translation(
      vertices, ict_model.landmark_vertices, angles, 450.0)
  background = np.broadcast_to(
      np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None],
      (height, width, 3))
  light = jnp.zeros((9, 3)).at[0].set(1.0)
  draw = lambda: viz.render_shaded(
      vertices, jnp.full_like(vertices, 0.6), ict_model.triangles, angles,
      translation, light, intrinsics, height, width, background)
  assert viz.TILE_SIDE == 320
  tiled = draw()
  monkeypatch.setattr(viz, 'TILE_SIDE', 10_000)
  whole = draw()
  assert tiled[0].shape == (height, width, 3) and tiled[1].shape == (
      height, width)
  # A tile's camera rounds differently: a silhouette pixel may flip.
  differ = tiled[1] != whole[1]
  assert differ.sum() <= 3, np.argwhere(differ)
  np.testing.assert_allclose(tiled[0][~differ], whole[0][~differ],
                             atol=1e-5)
  covered = whole[1]
  assert covered[:166].any() and covered[166:].any()
  assert covered[:, :251].any() and covered[:, 251:].any()
