"""Speed benchmark: inference, training, image formation, matmul peak.

    python -m experiments.bench --output=bench.json
    python -m experiments.bench --models=synthetic:light

For every model config (`--models`, training configs by name or path with
an optional `:argument`, as `mofa train --config` takes them):
  * inference ms per batch and images/s for each batch size, of the encoder
    alone (trunk + heads) and end to end (encoder, corrective spaces and
    both levels' image formation: the whole reconstruction from a 240 px
    crop); the encoder's FLOPs per image (XLA's cost analysis of the compiled
    encoder) and the fraction of the matmul's FLOP/s it reaches;
  * training steps/s (a stage-2 step, the heavier one) per batch size;
and once: a per-layer profile of the full AlexNet, the image formation of
both levels (with image sampling, as in training) per batch size, the
rasterizer at 240 x 240, and an n x n float32 matmul as the machine's
attainable FLOP/s in this same run. Timings are medians after compilation
(`block_until_ready`). Writes a JSON with the device named; docs/results.md
is made from it (experiments/results.py).
`benchmark` is the same without flags.
"""

import json
import os
import platform
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml import image_io
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.learning import configs
from mofa_ml.learning import encoder as encoder_lib
from mofa_ml.learning import network
from mofa_ml.learning import regressor
from mofa_ml.learning import train
from mofa_ml.rendering import camera
from mofa_ml.rendering import formation
from mofa_ml.rendering import raster
from mofa_ml.rendering import shading

FLAGS = flags.FLAGS


def _define_flags():
  """The command's flags (defined only when run as a script, so that two
  experiments imported into one process do not both define --output)."""
  flags.DEFINE_string('output', 'bench.json', 'JSON file to write.')
  flags.DEFINE_bool('overwrite', False, 'Replace --output.')
  flags.DEFINE_list('models', ['paper', 'synthetic:light'],
                    'Training configs (name or path, [:argument]) of the '
                    'models to time.')
  flags.DEFINE_list('batch_sizes', ['1', '4', '16', '64', '256'],
                    'Inference batch sizes.')
  flags.DEFINE_list('train_batch_sizes', ['5', '32'],
                    'Training batch sizes.')
  flags.DEFINE_list('formation_batch_sizes', ['1', '5', '32', '128'],
                    'Batch sizes of the image-formation-only timing.')
  flags.DEFINE_integer('matmul_size', 2048, 'n of the n^3 matmul.')
  flags.DEFINE_integer(
      'profile_batch', 32, 'Batch of the per-layer AlexNet profile (run '
      'when a full-width AlexNet is among --models).')
  flags.DEFINE_float(
      'min_seconds', 1.0, 'Repeat each timing until this much time is '
      'spent (at least 3 repeats).')

def _cpu_model() -> str:
  """The CPU's marketing name where Linux tells it, else the architecture."""
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def median_seconds(function, *args, min_seconds: float = 1.0) -> float:
  """Median wall time of `function(*args)` after a warm-up call, repeated
  until `min_seconds` are spent (at least 3 times)."""
  jax.block_until_ready(function(*args))
  times = []
  while len(times) < 3 or sum(times) < min_seconds:
    start = time.perf_counter()
    jax.block_until_ready(function(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def compiled_flops(function, *args) -> float:
  """FLOPs of one call, from XLA's cost analysis of the compiled program."""
  analysis = function.lower(*args).compile().cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return float(analysis['flops'])


def matmul_peak(size: int, min_seconds: float = 1.0) -> dict:
  a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (size, size), jnp.float32)
  seconds = median_seconds(jax.jit(jnp.matmul), a, b,
                           min_seconds=min_seconds)
  return {'size': size, 'ms': 1e3 * seconds,
          'gflop_per_s': 2 * size**3 / seconds / 1e9}


def time_inference(setup: regressor.Setup, batch_sizes, peak_gflops,
                   min_seconds: float = 1.0) -> list:
  """Encoder alone and end to end, per batch size."""
  size = setup.image_size
  params = setup.init_params(jax.random.PRNGKey(0))
  encode = jax.jit(lambda p, x: setup.network.apply(
      {'params': p}, x, method=network.FaceNetwork.encode))
  encoder_params = params
  model, intrinsics = setup.face_model, setup.intrinsics

  @jax.jit
  def end_to_end(params, images):
    prediction = setup.network.apply({'params': params}, images,
                                     setup.scaling)
    return jax.vmap(lambda p, g, r: levels.render_levels(
        model, p, intrinsics, g, r))(prediction.params,
                                     prediction.geometry_offsets,
                                     prediction.reflectance_offsets)

  rows = []
  for batch in batch_sizes:
    images = jax.random.uniform(jax.random.PRNGKey(batch),
                                (batch, size, size, 3))
    flops = compiled_flops(encode, encoder_params, images)
    encoder_s = median_seconds(encode, encoder_params, images,
                               min_seconds=min_seconds)
    total_s = median_seconds(end_to_end, params, images,
                             min_seconds=min_seconds)
    rows.append({
        'batch': batch,
        'encoder_ms': 1e3 * encoder_s,
        'encoder_images_per_s': batch / encoder_s,
        'end_to_end_ms': 1e3 * total_s,
        'end_to_end_images_per_s': batch / total_s,
        'end_to_end_over_encoder': total_s / encoder_s,
        'encoder_gflop_per_image': flops / batch / 1e9,
        'encoder_fraction_of_matmul': flops / encoder_s / 1e9 / peak_gflops,
    })
    print(f'  batch {batch}: encoder {1e3 * encoder_s:.2f} ms '
          f'({batch / encoder_s:.0f} images/s, '
          f'{rows[-1]["encoder_fraction_of_matmul"]:.0%} of matmul), '
          f'end to end {1e3 * total_s:.2f} ms ({batch / total_s:.0f} '
          'images/s)')
  return rows


def alexnet_layer_profile(batch: int, peak_gflops: float,
                          min_seconds: float = 1.0) -> list:
  """Each layer of `encoder.AlexNetTrunk` alone (with its ReLU) at `batch`,
  on the input it sees inside the trunk: where the encoder's time goes."""
  trunk = encoder_lib.AlexNetTrunk()
  images = jax.random.uniform(jax.random.PRNGKey(0), (batch, 240, 240, 3))
  variables = trunk.init(jax.random.PRNGKey(0), images)
  layers = []

  def record(call, args, kwargs, context):
    module = context.module
    if context.method_name == '__call__' and isinstance(module,
                                                        (nn.Conv, nn.Dense)):
      layers.append((module.name, module.clone(parent=None), args[0]))
    return call(*args, **kwargs)

  with nn.intercept_methods(record):
    trunk.apply(variables, images)
  rows = []
  for name, module, inputs in layers:
    layer = jax.jit(lambda p, x, m=module: jax.nn.relu(
        m.apply({'params': p}, x)))
    params = variables['params'][name]
    seconds = median_seconds(layer, params, inputs, min_seconds=min_seconds)
    flops = compiled_flops(layer, params, inputs)
    rows.append({'layer': name, 'input_shape': list(inputs.shape),
                 'ms': 1e3 * seconds, 'gflop': flops / 1e9,
                 'fraction_of_matmul': flops / seconds / 1e9 / peak_gflops})
    print(f'  {name} {tuple(inputs.shape)}: {1e3 * seconds:.1f} ms, '
          f'{rows[-1]["fraction_of_matmul"]:.0%} of matmul')
  return rows


def time_training(trainer: train.Trainer, batch_sizes,
                  min_seconds: float = 1.0) -> list:
  """Stage-2 steps/s per batch size (all loss terms, both levels), with
  the batch drawn inside the step for an on-device config."""
  setup = trainer.setup
  model, size = setup.face_model, setup.image_size
  # The mean face where the untrained network puts it.
  start = setup.layout.split(setup.scaling.offset)
  pixels = camera.project(
      camera.rigid_transform(model.mean_shape, jnp.eye(3), start.translation),
      setup.intrinsics)[model.landmark_vertices]
  stage = 1 if trainer.config.stage2.steps else 0
  rows = []
  for batch in batch_sizes:
    if batch % jax.device_count():
      continue
    timed, data = trainer, None
    if trainer.distribution is not None:
      # On-device data: the step draws (and renders) its own batch, of the
      # config's size.
      config = trainer.config.copy_and_resolve_references()
      config.batch_size = batch
      timed = train.Trainer(config)
    else:
      data = jax.device_put({
          'image': np.full((batch, size, size, 3), 128, np.uint8),
          'landmarks': np.broadcast_to(np.asarray(pixels), (batch, 68, 2)),
          'landmark_confidence': np.ones((batch, 68), np.float32),
      }, trainer.data_sharding)
    state = timed.new_state(setup.init_params(jax.random.PRNGKey(0)),
                            stage, 0)
    step = timed.train_step(stage)
    for _ in range(2):  # compile and warm up
      state, terms = step(state, data, timed.constants)
    jax.block_until_ready(terms)
    count, start = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < min_seconds:
      state, terms = step(state, data, timed.constants)
      jax.block_until_ready(terms)
      count += 1
    seconds = (time.perf_counter() - start) / count
    rows.append({'batch': batch, 'stage': stage + 1,
                 'data': 'on_device' if data is None else 'fixed batch',
                 'steps_per_s': 1 / seconds,
                 'images_per_s': batch / seconds})
    print(f'  training stage {stage + 1}, batch {batch}: {1 / seconds:.2f} '
          f'steps/s ({batch / seconds:.0f} images/s)')
  return rows


def time_formation(model: fm.FaceModel, batch_sizes,
                   min_seconds: float = 1.0) -> dict:
  """Both levels with image sampling (the training loss's rendering)."""
  layout = layout_lib.ParameterLayout.for_model(model, 0)
  params = layout.split(jnp.zeros(layout.size))._replace(
      translation=camera.centring_translation(model.mean_shape,
                                              model.landmark_vertices),
      sh_base=jnp.asarray(shading.AMBIENT_WHITE),
      sh_final=jnp.asarray(shading.AMBIENT_WHITE))
  intrinsics = camera.default_intrinsics()
  offsets = jnp.zeros((model.num_vertices, 3))

  def both_levels(params, image):
    base, final = levels.render_levels(model, params, intrinsics, offsets,
                                       offsets)
    base_seen, _ = formation.sample_image(image, base.pixels)
    final_seen, _ = formation.sample_image(image, final.pixels)
    return (jnp.sum(base.visible[:, None] * (base_seen - base.colors)) +
            jnp.sum(final.visible[:, None] * (final_seen - final.colors)))

  batched = jax.jit(jax.vmap(both_levels))
  rows = []
  for batch in batch_sizes:
    stacked = jax.tree_util.tree_map(
        lambda a, b=batch: jnp.broadcast_to(a, (b,) + a.shape), params)
    seconds = median_seconds(batched, stacked,
                             jnp.full((batch, 240, 240, 3), 0.5),
                             min_seconds=min_seconds)
    rows.append({'batch': batch, 'ms': 1e3 * seconds,
                 'images_per_s': batch / seconds})
    print(f'formation, both levels, batch {batch}: {1e3 * seconds:.2f} ms')
  points = camera.rigid_transform(model.mean_shape, jnp.eye(3),
                                  params.translation)
  screen = jnp.concatenate([camera.project(points, intrinsics),
                            points[:, 2:]], -1)
  rasterize = jax.jit(lambda s: raster.rasterize(
      s, model.triangles, height=240, width=240, capacity=4 * 240 * 240))
  raster_ms = 1e3 * median_seconds(rasterize, screen,
                                   min_seconds=min_seconds)
  print(f'rasterizer, 240 x 240: {raster_ms:.2f} ms')
  return {'both_levels': rows, 'rasterizer_240px_ms': raster_ms}


def benchmark(model_specs, batch_sizes=(1, 4, 16, 64, 256),
              train_batch_sizes=(5, 32), formation_batch_sizes=(1, 5, 32, 128),
              matmul_size: int = 2048, profile_batch: int = 32,
              min_seconds: float = 1.0) -> dict:
  """The whole benchmark (module docstring) as the JSON's dict.

  Args:
    model_specs: training configs, 'name[:argument]' or 'path[:argument]'
      (`configs.load_config`).
    batch_sizes, train_batch_sizes, formation_batch_sizes: ints.
    matmul_size: n of the n^3 float32 matmul.
    profile_batch: batch of the per-layer AlexNet profile (run when a
      full-width AlexNet is among the models).
    min_seconds: each timing repeats until this much time is spent.

  Raises:
    ValueError: a config that does not load (before any timing).
  """
  model_configs = {spec: configs.load_config(spec) for spec in model_specs}
  device = jax.devices()[0]
  results = {
      'device': device.device_kind, 'platform': device.platform,
      'device_count': jax.device_count(),
      'cpu': _cpu_model(),
      'cpu_count': os.cpu_count(), 'jax': jax.__version__,
      'date': time.strftime('%Y-%m-%d'),
  }
  results['matmul'] = matmul_peak(matmul_size, min_seconds)
  peak = results['matmul']['gflop_per_s']
  print(f'{results["device"]}: matmul {matmul_size}^3 {peak:.0f} GFLOP/s')
  results['models'] = []
  for spec, config in model_configs.items():
    trainer = train.Trainer(config)
    model = config.model
    print(f'{spec}: {model.get("backbone", "alexnet")} width {model.width}, '
          f'C = {model.num_correctives}')
    results['models'].append({
        'config': spec, 'backbone': model.get('backbone', 'alexnet'),
        'width': model.width, 'dense_size': model.dense_size,
        'num_correctives': model.num_correctives,
        'parameters': int(sum(x.size for x in jax.tree_util.tree_leaves(
            trainer.setup.init_params(jax.random.PRNGKey(0))))),
        'inference': time_inference(trainer.setup, batch_sizes, peak,
                                    min_seconds),
        'training': time_training(trainer, train_batch_sizes, min_seconds),
    })
  if any(m['backbone'] == 'alexnet' and m['width'] == 1.0
         for m in results['models']):
    print(f'AlexNet layers, batch {profile_batch}:')
    results['alexnet_layers'] = {
        'batch': profile_batch,
        'layers': alexnet_layer_profile(profile_batch, peak, min_seconds)}
  results['formation'] = time_formation(fm.load_face_model(),
                                        formation_batch_sizes, min_seconds)
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  output = FLAGS.output
  if os.path.exists(output) and not FLAGS.overwrite:
    raise SystemExit(f'bench: {output} exists; pass --overwrite to replace '
                     'it')
  try:
    parse = lambda values: [int(v) for v in values]
    batch_sizes, train_batches, formation_batches = (
        parse(FLAGS.batch_sizes), parse(FLAGS.train_batch_sizes),
        parse(FLAGS.formation_batch_sizes))
    for spec in FLAGS.models:  # a bad one fails here, before any timing
      configs.load_config(spec)
  except ValueError as e:
    raise SystemExit(f'bench: {e}') from None
  results = benchmark(FLAGS.models, batch_sizes, train_batches,
                      formation_batches, FLAGS.matmul_size,
                      FLAGS.profile_batch, FLAGS.min_seconds)
  try:
    image_io.atomic_write_bytes(output, json.dumps(results, indent=1).encode(),
                                overwrite=FLAGS.overwrite)
  except (FileExistsError, OSError) as e:
    raise SystemExit(f'bench: {e}') from None
  print(f'wrote {output}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
