"""Training on batches drawn inside the step, supervised with their truth."""

import dataclasses
import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofa_ml.data import head as head_lib
from mofa_ml.data import on_device
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.learning import configs
from mofa_ml.learning import supervision
from mofa_ml.rendering import camera

SIZE = 96


@pytest.fixture(scope='module')
def model():
  return fm.load_face_model()


def tiny_config(stage1=2, stage2=2):
  """The on-device config at a small crop and network (seconds a step)."""
  config = configs.load_config('on_device')
  config.image_size = SIZE
  config.focal_length = 1100.0 * SIZE / 240
  config.batch_size = 2
  config.model.width = 0.125
  config.model.dense_size = 32
  config.model.num_correctives = 8
  config.stage1.steps = stage1
  config.stage2.steps = stage2
  config.log_every = 1
  config.image_every = 1000
  config.checkpoint_every = 2
  return config


def test_supervision_is_zero_at_the_truth_and_analytic_off_it(model):
  layout = layout_lib.ParameterLayout.for_model(model, 0, False)
  intrinsics = camera.default_intrinsics(240)
  rng = np.random.default_rng(0)
  truth = layout.split(jnp.asarray(rng.normal(0, 0.3, layout.size),
                                   jnp.float32))
  truth = truth._replace(rotation=jnp.asarray([0.1, -0.3, 0.05]),
                         translation=jnp.asarray([3.0, -2.0, 600.0]))
  vertices = model.geometry(truth.shape, truth.expression)
  albedo = model.reflectance(truth.reflectance)
  terms = supervision.face_supervision(model, intrinsics, truth, truth,
                                       vertices, albedo, 10.0, 24.0)
  for name in supervision.TERMS:
    np.testing.assert_allclose(terms[name], 0.0, atol=1e-10)
  # The logged baseline is the geometry term of zero shape and expression.
  zero = truth._replace(shape=0 * truth.shape,
                        expression=0 * truth.expression)
  terms = supervision.face_supervision(model, intrinsics, zero, truth,
                                       vertices, albedo, 10.0, 24.0)
  np.testing.assert_allclose(terms['geometry_mean_face'], terms['geometry'],
                             rtol=1e-5)
  assert terms['geometry'] > 0
  # Known offsets: 1 mm on every vertex (0.01 cm^2), 0.1 on every albedo
  # channel (0.03) and SH coefficient (0.03).
  terms = supervision.face_supervision(
      model, intrinsics, truth._replace(sh_base=truth.sh_base + 0.1), truth,
      vertices + jnp.asarray([0, 1.0, 0]), albedo - 0.1, 10.0, 24.0)
  np.testing.assert_allclose(terms['geometry'], 0.01, rtol=1e-4)
  np.testing.assert_allclose(terms['reflectance'], 0.03, rtol=1e-4)
  np.testing.assert_allclose(terms['light'], 0.03, rtol=1e-4)
  # A shift along x at constant depth moves every vertex by exactly
  # f dx / depth pixels; nothing else changes.
  shift = 2.0
  moved = truth._replace(translation=truth.translation +
                         jnp.asarray([shift, 0.0, 0.0]))
  terms = supervision.face_supervision(model, intrinsics, moved, truth,
                                       vertices, albedo, 10.0, 24.0)
  np.testing.assert_allclose(terms['geometry'], 0.0, atol=1e-10)
  points = camera.rigid_transform(vertices,
                                  camera.pose_rotation(truth.rotation),
                                  truth.translation)
  focal = float(np.mean(intrinsics.focal_length))
  expected = np.mean((focal * shift / points[:, 2] / 24.0)**2)
  np.testing.assert_allclose(terms['projection'], expected, rtol=1e-3)


def test_batch_is_a_function_of_its_key_and_its_truth_projects_onto_it(
    model):
  config = tiny_config()
  config.synthetic.landmark_noise_px = 0.0
  distribution = on_device.Distribution.from_config(config)
  assert distribution.faces.image_size == SIZE
  assert distribution.faces.max_yaw == 60.0
  layout = layout_lib.ParameterLayout.for_model(model, 8)
  intrinsics = camera.default_intrinsics(SIZE, config.focal_length)
  draw = jax.jit(lambda key, head: on_device.batch(
      key, model, layout, intrinsics, head, distribution, 3))
  head = head_lib.load_head(model)
  first = draw(jax.random.PRNGKey(3), head)
  again = draw(jax.random.PRNGKey(3), head)
  other = draw(jax.random.PRNGKey(4), head)
  chex.assert_shape(first['image'], (3, SIZE, SIZE, 3))
  chex.assert_shape([first['vertices'], first['albedo']],
                    (3, model.num_vertices, 3))
  chex.assert_shape(first['params'], (3, layout.base_size))
  chex.assert_trees_all_equal(first, again)
  assert not np.allclose(first['image'], other['image'])
  assert 0.0 <= float(first['image'].min()) and float(
      first['image'].max()) <= 1.0
  # The truth is the drawn face: its vertices at its pose project onto its
  # landmarks (the inner 51, which are fixed vertices).
  truth_layout = dataclasses.replace(layout, num_correctives=0,
                                     separate_final_sh=False)
  inner = np.setdiff1d(np.arange(lm.NUM_LANDMARKS), lm.CONTOUR)
  for index in range(3):
    truth = truth_layout.split(first['params'][index])
    points = camera.rigid_transform(first['vertices'][index],
                                    camera.pose_rotation(truth.rotation),
                                    truth.translation)
    pixels = camera.project(points, intrinsics)[model.landmark_vertices]
    np.testing.assert_allclose(pixels[inner],
                               first['landmarks'][index][inner], atol=1e-2)


def test_unknown_synthetic_field_is_named():
  config = tiny_config()
  config.synthetic.max_jaw = 3.0
  with pytest.raises(ValueError, match='unknown fields max_jaw'):
    configs.check_config(config)
  config = tiny_config()
  config.stage1.supervision.shape = 1.0
  with pytest.raises(ValueError, match='supervision has unknown terms shape'):
    configs.check_config(config)
  config = tiny_config()
  config.synthetic.image_size = 64
  with pytest.raises(ValueError, match='the crop size is config.image_size'):
    configs.check_config(config)
  # A TFDS set has no truth to supervise with.
  config = tiny_config()
  config.dataset = 'mofa_synthetic/tiny'
  with pytest.raises(ValueError, match='supervision needs the truth'):
    configs.check_config(config)


_RUN = '''
import json, sys
sys.path.insert(0, {tests!r})
# What the GPU machine lacks must not be needed on this path.
for name in ('tensorflow_datasets', 'grain', 'dlib', 'ai_edge_litert'):
  sys.modules[name] = None
import jax
import test_on_device
from mofa_ml.learning import regressor, train
config = test_on_device.tiny_config({stage1}, {stage2})
straight = train.train(config, {straight!r})
report = {{'step': int(straight.step)}}
if {resume}:
  train.train(config, {interrupted!r}, stop_at=1)
  resumed = train.train(config, {interrupted!r})
  report['same'] = all(bool((a == b).all()) for a, b in zip(
      jax.tree_util.tree_leaves(jax.device_get(straight.params)),
      jax.tree_util.tree_leaves(jax.device_get(resumed.params))))
else:
  loaded = regressor.Regressor.load({straight!r})
  report['same'] = all(bool((a == b).all()) for a, b in zip(
      jax.tree_util.tree_leaves(jax.device_get(straight.params)),
      jax.tree_util.tree_leaves(jax.device_get(loaded.params))))
print(json.dumps(report))
'''


def _run(tmp_path, stage1, stage2, resume):
  script = tmp_path / 'run.py'
  script.write_text(_RUN.format(
      tests=os.path.dirname(__file__), stage1=stage1, stage2=stage2,
      resume=resume, straight=str(tmp_path / 'straight'),
      interrupted=str(tmp_path / 'interrupted')))
  result = subprocess.run([sys.executable, str(script)], capture_output=True,
                          text=True, timeout=1200,
                          env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_training_draws_its_data_and_needs_no_tfds(tmp_path):
  # Both stages, their supervised terms logged; the checkpoint loads as the
  # regressor `mofa reconstruct` uses.
  assert _run(tmp_path, 2, 1, False) == {'step': 3, 'same': True}
  records = [json.loads(line) for line in
             open(tmp_path / 'straight' / 'metrics.jsonl')]
  assert [r['stage'] for r in records] == [1, 1, 2]
  for record in records:
    for term in supervision.TERMS:
      assert np.isfinite(record[f'supervised_{term}'])
    assert record['overflow'] == 0.0


@pytest.mark.heavy
def test_a_resumed_on_device_run_repeats_an_uninterrupted_one(tmp_path):
  # Batch s is drawn from (seed, s) alone.
  assert _run(tmp_path, 3, 0, True) == {'step': 3, 'same': True}


def test_a_mixture_takes_every_kth_batch_from_the_real_set_and_resumes(
    tiny_data_dir):
  config = tiny_config()
  config.image_size = 240
  config.real_dataset = 'mofa_synthetic/tiny'
  config.data_dir = tiny_data_dir
  config.real_every = 3
  config.num_data_threads = 1
  configs.check_config(config)
  straight = on_device.host_batches(config, 0)
  batches = [next(straight) for _ in range(9)]
  assert [b is not None for b in batches] == [True, False, False] * 3
  assert not np.array_equal(batches[0]['image'], batches[3]['image'])
  # Resuming at step 4 reads what the uninterrupted run reads from there.
  resumed = on_device.host_batches(config, 4)
  for expected in batches[4:]:
    got = next(resumed)
    assert (got is None) == (expected is None)
    if got is not None:
      np.testing.assert_array_equal(got['image'], expected['image'])
  assert next(iter(on_device.host_batches(tiny_config(), 0))) is None


@pytest.mark.heavy
def test_a_mixture_trains_on_both_kinds_of_batch(tiny_data_dir, tmp_path):
  from mofa_ml.learning import train  # pylint: disable=g-import-not-at-top
  config = tiny_config(stage1=3, stage2=0)
  config.image_size, config.focal_length = 240, 1100.0
  config.real_dataset = 'mofa_synthetic/tiny'
  config.data_dir = tiny_data_dir
  config.num_data_threads = 1
  config.log_every = 3
  state = train.train(config, str(tmp_path / 'run'))
  assert int(state.step) == 3
  records = [json.loads(line) for line in
             open(tmp_path / 'run' / 'metrics.jsonl')]
  # Steps 0 and 2 real (real_every = 2), step 1 drawn on the device; the
  # supervised terms are the drawn step's alone.
  assert len(records) == 1
  np.testing.assert_allclose(records[0]['synthetic'], 1 / 3, rtol=1e-6)
  assert all(np.isfinite(records[0][f'supervised_{term}'])
             for term in supervision.TERMS)
