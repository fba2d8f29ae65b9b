"""Registers MediaPipe's 468 face-mesh points onto the ICT front face.

    python -m mofa_ml.data.build_dense_registration \
        [--output=PATH] [--overwrite] [--renders=300] [--seed=0]

Data-driven, so it registers what the network predicts on this mesh rather
than a hand-made correspondence: heads of the model (`data.synthetic` with
the rest of the ICT head: hair, ears, eyes) are rendered with random
identity, mild expression, yaw within +-25 degrees, pitch within +-10 and
random light; `data.dense_landmarks` runs on each render from its true 68
landmarks. Each predicted point's pixel gives the visible triangle and the
perspective-correct barycentrics of the point in it; the same triangle and
weights on the mean face give one hit in mean-face space (the topology is
shared). A point's registration is the per-coordinate median of its hits,
snapped to the closest point of the mean face's surface. Writes
`assets/mediapipe_ict.npz` (see `dense_registration`).
"""

import functools
import io
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml import image_io
from mofa_ml.data import dense_landmarks
from mofa_ml.data import head as head_lib
from mofa_ml.data import synthetic
from mofa_ml.facemodel import dense_registration
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.rendering import camera
from mofa_ml.rendering import raster

FLAGS = flags.FLAGS


def _define_flags():
  """Only when run as a script: importing this module (tests) must not add
  flags to the `mofa` commands' process."""
  flags.DEFINE_string(
      'output', None,
      "Where to write the asset; default: the package's assets folder.")
  flags.DEFINE_bool('overwrite', False, 'Replace an existing output file.')
  flags.DEFINE_integer('renders', 300, 'Faces rendered.')
  flags.DEFINE_integer('seed', 0, 'PRNG seed of the renders.')

_BATCH = 8
# The face (its 68 landmarks' larger extent) spans 200-240 of 384 pixels,
# leaving room for MediaPipe's ROI (about 1.6 times that) mostly inside.
# No out-of-space bumps: the render's surface must be the model's.
_CONFIG = synthetic.SyntheticConfig(
    image_size=384, expression_std=0.15, max_yaw=25.0, max_pitch=10.0,
    max_roll=8.0, landmark_extent_range=(0.52, 0.62), max_shift=0.3,
    out_of_space=False)
_MIN_PRESENCE = 0.5
_MIN_HITS = 5


@functools.partial(jax.jit, static_argnames=('config', 'count'))
def _render_batch(key, model, head, intrinsics, config, count):
  """`count` heads with each pixel's visible triangle.

  Returns:
    dict: 'image' (B, S, S, 3) float32; 'landmarks' (B, 68, 2) pixels;
    'triangle' (B, S, S) int32 visible triangle of the whole head (-1:
    background; below F: a face triangle); 'screen' (B, N, 3) the face's
    vertices (u, v pixels, depth mm); 'overflow' (B,) bool.
  """
  layout = layout_lib.ParameterLayout.for_model(model, num_correctives=0,
                                                separate_final_sh=False)

  def one(key):
    face = synthetic.generate_face(key, model, layout, intrinsics, config,
                                   head=head)
    params = layout.split(face['params'])
    # Without out-of-space displacements the geometry is the model's, so
    # the render's surface is rebuilt exactly from its parameters.
    vertices = jnp.concatenate([
        model.geometry(params.shape, params.expression),
        head_lib.geometry(head, params.shape, params.expression)])
    points = camera.rigid_transform(
        vertices, camera.pose_rotation(params.rotation), params.translation)
    screen = jnp.concatenate([camera.project(points, intrinsics),
                              points[:, 2:]], -1)
    size = config.image_size
    fragments = raster.rasterize(screen, head.triangles, height=size,
                                 width=size, capacity=4 * size * size,
                                 cull_backfaces=True)
    return {'image': face['image'], 'landmarks': face['landmarks'],
            'triangle': fragments.triangle,
            'screen': screen[:model.num_vertices],
            'overflow': face['overflow'] | fragments.overflow}

  return jax.vmap(one)(jax.random.split(key, count))


def _barycentric(corners: np.ndarray, point: np.ndarray) -> np.ndarray:
  """(P, 3) perspective-correct barycentrics of (P, 2) pixels in triangles
  with (P, 3, 3) corners (u, v, depth), clipped into the triangle."""
  a, b, c = corners[:, 0, :2], corners[:, 1, :2], corners[:, 2, :2]
  cross = lambda p, q, r: ((q[:, 0] - p[:, 0]) * (r[:, 1] - p[:, 1]) -
                           (q[:, 1] - p[:, 1]) * (r[:, 0] - p[:, 0]))
  area = cross(a, b, c)
  area = np.where(area == 0, 1.0, area)
  screen = np.stack([cross(b, c, point), cross(c, a, point),
                     cross(a, b, point)], -1) / area[:, None]
  # The point's pixel centre is in the triangle, the point itself may lie
  # up to half a pixel outside.
  screen = np.clip(screen, 0.0, None)
  weights = screen / corners[:, :, 2]
  return weights / weights.sum(axis=1, keepdims=True)


def collect_hits(model: fm.FaceModel, count: int, seed: int):
  """Runs the network on `count` renders.

  Returns:
    hits: (R, 468, 3) float64 mean-face positions of the predicted points,
      mm; NaN where a point fell off the face mesh.
    used: renders kept (no rasterizer overflow, face found).
  """
  head = head_lib.load_head(model)
  intrinsics = camera.default_intrinsics(_CONFIG.image_size)
  landmarker = dense_landmarks.DenseLandmarker()
  triangles = np.asarray(model.triangles)
  mean = np.asarray(model.mean_shape, np.float64)
  face_triangles = len(triangles)
  size = _CONFIG.image_size
  hits = []
  key = jax.random.PRNGKey(seed)
  for start in range(0, count, _BATCH):
    batch = jax.device_get(_render_batch(
        jax.random.fold_in(key, start), model, head, intrinsics, _CONFIG,
        min(_BATCH, count - start)))
    for k in range(len(batch['image'])):
      if batch['overflow'][k]:
        continue
      found = landmarker(batch['image'][k], batch['landmarks'][k])
      if found.presence < _MIN_PRESENCE:
        continue
      pixel = np.round(found.points).astype(np.int64)
      inside = np.all((pixel >= 0) & (pixel < size), axis=1)
      pixel = np.clip(pixel, 0, size - 1)
      triangle = batch['triangle'][k][pixel[:, 1], pixel[:, 0]]
      on_face = inside & (triangle >= 0) & (triangle < face_triangles)
      corners = triangles[np.where(on_face, triangle, 0)]
      weights = _barycentric(batch['screen'][k][corners].astype(np.float64),
                             found.points.astype(np.float64))
      points = np.einsum('pk,pkd->pd', weights, mean[corners])
      hits.append(np.where(on_face[:, None], points, np.nan))
  return np.stack(hits), len(hits)


def closest_surface_points(points: np.ndarray, vertices: np.ndarray,
                           triangles: np.ndarray):
  """The closest point of a triangle mesh to each of (P, 3) points.

  Returns:
    triangle: (P,) int32; barycentric: (P, 3) float64; distance: (P,).
  """
  a, b, c = (vertices[triangles[:, k]] for k in range(3))
  ab, ac = b - a, c - a
  # Closest point to p on the plane of each triangle, in the (ab, ac)
  # coordinates, then projected onto the triangle by clamping to each edge.
  gram = np.stack([np.stack([np.sum(ab * ab, 1), np.sum(ab * ac, 1)], -1),
                   np.stack([np.sum(ab * ac, 1), np.sum(ac * ac, 1)], -1)],
                  -2)
  gram_inverse = np.linalg.inv(gram + 1e-12 * np.eye(2))
  best_triangle = np.zeros(len(points), np.int32)
  best_weights = np.zeros((len(points), 3))
  best_distance = np.full(len(points), np.inf)
  for i, p in enumerate(points):
    ap = p - a
    st = np.einsum('fij,fj->fi', gram_inverse,
                   np.stack([np.sum(ap * ab, 1), np.sum(ap * ac, 1)], -1))
    candidates = [st]
    # On each edge: the closest point of the segment.
    for origin, edge, to_weights in (
        (a, ab, lambda t: np.stack([t, 0 * t], -1)),
        (a, ac, lambda t: np.stack([0 * t, t], -1)),
        (b, c - b, lambda t: np.stack([1 - t, t], -1))):
      t = np.clip(np.sum((p - origin) * edge, 1) /
                  np.maximum(np.sum(edge * edge, 1), 1e-12), 0.0, 1.0)
      candidates.append(to_weights(t))
    inside = (st[:, 0] >= 0) & (st[:, 1] >= 0) & (st.sum(1) <= 1)
    distances = []
    for j, candidate in enumerate(candidates):
      q = a + candidate[:, :1] * ab + candidate[:, 1:] * ac
      d = np.linalg.norm(q - p, axis=1)
      distances.append(np.where(inside | (j > 0), d, np.inf))
    distances = np.stack(distances)  # (4, F)
    choice = np.unravel_index(np.argmin(distances), distances.shape)
    s, t = candidates[choice[0]][choice[1]]
    best_triangle[i] = choice[1]
    best_weights[i] = [1 - s - t, s, t]
    best_distance[i] = distances[choice]
  return best_triangle, best_weights, best_distance


def register(model: fm.FaceModel, hits: np.ndarray):
  """The registration arrays from (R, 468, 3) hits (NaN: missed)."""
  found = ~np.isnan(hits[..., 0])
  hit_rate = found.mean(axis=0)
  if np.any(found.sum(axis=0) < _MIN_HITS):
    missing = np.flatnonzero(found.sum(axis=0) < _MIN_HITS)
    raise RuntimeError(f'{len(missing)} points fell on the face fewer than '
                       f'{_MIN_HITS} times (e.g. {missing[:10]}); render more')
  centre = np.nanmedian(hits, axis=0)
  mean = np.asarray(model.mean_shape, np.float64)
  triangles = np.asarray(model.triangles)
  triangle, weights, _ = closest_surface_points(centre, mean, triangles)
  # Points on an edge come out with weights like -1e-17.
  weights = np.clip(weights, 0.0, None)
  weights /= weights.sum(axis=1, keepdims=True)
  registered = np.einsum('pk,pkd->pd', weights, mean[triangles[triangle]])
  spread = np.nanmedian(np.linalg.norm(hits - registered, axis=-1), axis=0)
  return {
      'triangles': triangle.astype(np.int32),
      'barycentrics': weights.astype(np.float32),
      'spread_mm': spread.astype(np.float32),
      'hit_rate': hit_rate.astype(np.float32),
      'contour': dense_registration.contour_mask(),
  }


def main(argv):
  del argv
  output = FLAGS.output or dense_registration.asset_path()
  # Refused before the work rather than after.
  if os.path.exists(output) and not FLAGS.overwrite:
    raise app.UsageError(f'{output} exists; pass --overwrite to replace it')
  began = time.time()
  model = fm.load_face_model()
  hits, used = collect_hits(model, FLAGS.renders, FLAGS.seed)
  arrays = register(model, hits)
  arrays['source'] = np.asarray(
      f'build_dense_registration: MediaPipe face_landmark.tflite (0.10.21) '
      f'on {used} of {FLAGS.renders} renders of {model.name} (seed '
      f'{FLAGS.seed}, size {_CONFIG.image_size}, yaw +-'
      f'{_CONFIG.max_yaw:g}, pitch +-{_CONFIG.max_pitch:g}, expression '
      f'std {_CONFIG.expression_std:g}); median of hits on the mean face, '
      'snapped to the surface')
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  image_io.atomic_write_bytes(output, buffer.getvalue(),
                              overwrite=FLAGS.overwrite)
  spread, rate = arrays['spread_mm'], arrays['hit_rate']
  fixed = ~arrays['contour']
  print(f'wrote {output} ({len(buffer.getvalue())} bytes) from {used} renders '
        f'in {time.time() - began:.0f} s')
  print(f'spread_mm: median {np.median(spread):.2f} (non-contour '
        f'{np.median(spread[fixed]):.2f}, contour '
        f'{np.median(spread[~fixed]):.2f}), {np.sum(spread > 3)} points > 3 '
        f'mm, max {spread.max():.2f} (point {np.argmax(spread)})')
  print(f'hit_rate: median {np.median(rate):.2f}, min {rate.min():.2f} '
        f'(point {np.argmin(rate)}), {np.sum(rate < 0.5)} points < 0.5')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
