"""Benchmark of the image-formation layer and the rasterizer.

    python experiments/bench_formation.py --output=formation_bench.json

Times (after compilation, median of repeats, `block_until_ready`):
  * the point-based formation of both levels (geometry from coefficients,
    pose, normals, SH shading, culling, image sampling) for batch sizes;
  * the z-buffer rasterizer on a 240 x 240 image of the face.
Writes a JSON with the device name.
"""

import json
import os
import platform
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml import camera
from mofa_ml import face_model as fm
from mofa_ml import formation
from mofa_ml import image_io
from mofa_ml import layout as layout_lib
from mofa_ml import raster
from mofa_ml import shading

_OUTPUT = flags.DEFINE_string('output', 'formation_bench.json', 'JSON file.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace --output.')
_BATCHES = flags.DEFINE_list('batch_sizes', ['1', '5', '32', '128'],
                             'Batch sizes to time.')
_REPEATS = flags.DEFINE_integer('repeats', 20, 'Timed repeats per setting.')


def median_seconds(function, *args, repeats):
  jax.block_until_ready(function(*args))  # compile and warm up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(function(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main(argv):
  del argv
  model = fm.load_face_model()
  layout = layout_lib.ParameterLayout.for_model(model, num_correctives=0)
  intrinsics = camera.default_intrinsics()
  params = layout.split(jnp.zeros(layout.size))._replace(
      translation=camera.centring_translation(model.mean_shape,
                                              model.landmark_vertices),
      sh_base=jnp.asarray(shading.AMBIENT_WHITE),
      sh_final=jnp.asarray(shading.AMBIENT_WHITE))
  offsets = jnp.zeros((model.num_vertices, 3))

  def both_levels(params, image):
    base = formation.render_level(model, params, intrinsics)
    final = formation.render_level(model, params, intrinsics, offsets, offsets)
    base_seen, _ = formation.sample_image(image, base.pixels)
    final_seen, _ = formation.sample_image(image, final.pixels)
    return (jnp.sum(base.visible[:, None] * (base_seen - base.colors)) +
            jnp.sum(final.visible[:, None] * (final_seen - final.colors)))

  batched = jax.jit(jax.vmap(both_levels))
  results = {'device': str(jax.devices()[0].device_kind),
             'platform': jax.default_backend(),
             'cpu': platform.processor() or platform.machine(),
             'cpu_count': os.cpu_count(), 'jax': jax.__version__,
             'vertices': model.num_vertices, 'formation': []}
  for batch in [int(b) for b in _BATCHES.value]:
    stacked = jax.tree_util.tree_map(
        lambda a: jnp.broadcast_to(a, (batch,) + a.shape), params)
    images = jnp.full((batch, 240, 240, 3), 0.5)
    seconds = median_seconds(batched, stacked, images,
                             repeats=_REPEATS.value)
    results['formation'].append({
        'batch': batch, 'ms_per_batch': 1e3 * seconds,
        'images_per_s': batch / seconds})
    print(f'formation, both levels, batch {batch}: {1e3 * seconds:.2f} ms '
          f'({batch / seconds:.0f} images/s)')

  points = camera.rigid_transform(model.mean_shape,
                                  camera.pose_rotation(params.rotation),
                                  params.translation)
  screen = jnp.concatenate([camera.project(points, intrinsics),
                            points[:, 2:]], -1)
  rasterize = lambda s: raster.rasterize(s, model.triangles, height=240,
                                         width=240, capacity=4 * 240 * 240)
  seconds = median_seconds(rasterize, screen, repeats=_REPEATS.value)
  results['rasterizer_240px_ms'] = 1e3 * seconds
  print(f'rasterizer, 240 x 240, {model.triangles.shape[0]} triangles: '
        f'{1e3 * seconds:.2f} ms')
  try:
    image_io.atomic_write_bytes(_OUTPUT.value,
                                json.dumps(results, indent=2).encode(),
                                overwrite=_OVERWRITE.value)
  except FileExistsError as e:
    raise SystemExit(f'bench_formation: {e}') from None
  print(f'wrote {_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
