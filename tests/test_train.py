"""Two-stage training: optimiser groups, freezing, resume, sharding, learning.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from mofa_ml.learning import configs
from mofa_ml.learning import objective
from mofa_ml.learning import train

PACKAGED = os.path.join(os.path.dirname(__file__), '..', 'mofa_ml',
                        'configs')


def load_config(name, argument=''):
  """A packaged config (mofa_ml/configs), loaded by name."""
  return configs.load_config(f'{name}:{argument}' if argument else name)


def tiny_config(data_dir, stage1=4, stage2=4):
  """The smoke config (Adam and its rates), shrunk to seconds."""
  config = load_config('smoke')
  config.dataset = 'mofa_synthetic/tiny'
  config.data_dir = data_dir
  config.model.width = 0.125
  config.model.dense_size = 32
  config.model.num_correctives = 8
  config.stage1.steps = stage1
  config.stage1.learning_rate_base = 1e-3
  config.stage2.steps = stage2
  config.batch_size = 4
  config.num_data_threads = 1
  config.log_every = 2
  config.image_every = 1000
  config.checkpoint_every = 2
  return config


def random_batch(size=4):
  rng = np.random.default_rng(0)
  landmarks = rng.uniform(60, 180, (size, 68, 2)).astype(np.float32)
  return {'image': rng.integers(0, 255, (size, 240, 240, 3), np.uint8),
          'landmarks': landmarks,
          'landmark_confidence': np.ones((size, 68), np.float32)}


def test_default_config_is_the_papers():
  config = load_config('default')
  assert (config.stage1.steps, config.stage2.steps) == (200_000, 190_000)
  assert config.batch_size == 5 and config.optimizer.name == 'adadelta'
  assert config.stage1.learning_rate_base == 0.01
  assert (config.stage1.learning_rate_geometry,
          config.stage1.learning_rate_reflectance) == (0.0, 0.0)
  assert (config.stage2.learning_rate_base, config.stage2.learning_rate_geometry,
          config.stage2.learning_rate_reflectance) == (0.001, 0.005, 0.01)
  assert config.stage1.loss.to_dict() == dict(
      photo=1.9, reg=3e-5, rstd=0.002, smo=0.0, ref=0.0, glo=0.0, sta=0.0)
  assert config.stage2.loss.to_dict() == dict(
      photo=0.2, reg=0.003, rstd=0.002, smo=3.2e4, ref=13.0, glo=80.0,
      sta=0.08)
  assert config.model.num_correctives == 500
  # The config's weights are the loss table's paper values and names.
  for stage in objective.STAGES:
    assert config[stage].loss.to_dict() == objective.paper_weights(stage)
    assert config[stage].final_level == (stage == 'stage2')


def test_every_config_loads_with_the_default_fields():
  reference = load_config('default')
  for name in ('paper', 'paper_stage1', 'paper_stage2', 'smoke'):
    config = load_config(name)
    assert set(config.keys()) == set(reference.keys()), name
  for backbone in ('alexnet', 'light'):
    config = load_config('synthetic', backbone)
    assert config.model.backbone == backbone
    assert config.optimizer.name == 'adam'  # the smoke run's, inherited


def test_configs_load_by_name_or_path_alike(tmp_path, monkeypatch):
  assert configs.names() == ('default', 'on_device', 'paper', 'paper_stage1',
                             'paper_stage2', 'smoke', 'synthetic')
  for spec in ('smoke', 'synthetic:light'):
    name, _, argument = spec.partition(':')
    path = os.path.join(PACKAGED, f'{name}.py')
    by_path = configs.load_config(f'{path}:{argument}' if argument else path)
    assert configs.load_config(spec).to_dict() == by_path.to_dict(), spec
  # A name is never a file in the working directory, a path always one.
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'smoke.py').write_text(
      'from mofa_ml.configs import smoke\n'
      'def get_config():\n'
      '  config = smoke.get_config()\n'
      '  config.batch_size = 7\n'
      '  return config\n')
  assert configs.load_config('smoke').batch_size == 5
  assert configs.load_config('smoke.py').batch_size == 7
  with pytest.raises(ValueError, match=(
      "unknown config 'smok': choose one of default, on_device, paper, "
      'paper_stage1, paper_stage2, smoke, synthetic or give a path to a .py '
      'file')):
    configs.load_config('smok')
  with pytest.raises(ValueError, match='config file not found: nope.py'):
    configs.load_config('nope.py:light')


def test_parameter_groups_cover_heads_and_correctives(tiny_data_dir):
  trainer = train.Trainer(tiny_config(tiny_data_dir))
  params = trainer.setup.init_params(jax.random.PRNGKey(0))
  labels = jax.tree_util.tree_flatten_with_path(
      train.parameter_groups(params))[0]
  by_group = {}
  for path, label in labels:
    by_group.setdefault(label, []).append(jax.tree_util.keystr(path))
  assert all('geometry' in p for p in by_group['geometry'])
  assert any('geometry_correctives' in p for p in by_group['geometry'])
  assert any('geometry_head' in p for p in by_group['geometry'])
  assert any('reflectance_correctives' in p for p in by_group['reflectance'])
  assert any('conv1' in p for p in by_group['base'])
  assert any('sh_final_head' in p for p in by_group['base'])


def test_stage1_leaves_correctives_bit_identical_and_stage2_moves_them(
    tiny_data_dir):
  trainer = train.Trainer(tiny_config(tiny_data_dir))
  params = trainer.setup.init_params(jax.random.PRNGKey(0))
  before = jax.device_get(params)
  batch = jax.device_put(random_batch(), trainer.data_sharding)
  state = trainer.new_state(params, 0, 0)
  for _ in range(3):
    state, terms = trainer.train_step(0)(state, batch, trainer.constants)
  after = jax.device_get(state.params)
  flat_before = dict(jax.tree_util.tree_flatten_with_path(before)[0])
  flat_after = dict(jax.tree_util.tree_flatten_with_path(after)[0])
  for path, value in flat_before.items():
    name = jax.tree_util.keystr(path)
    frozen = any(key in name for key in ('geometry', 'reflectance_head',
                                         'reflectance_correctives'))
    if frozen:
      np.testing.assert_array_equal(flat_after[path], value, err_msg=name)
  assert not np.array_equal(after['encoder']['trunk']['conv1']['kernel'],
                            before['encoder']['trunk']['conv1']['kernel'])
  assert np.isfinite(float(terms['total']))
  stage2 = trainer.new_state(trainer.start_stage2(state.params), 1, 3)
  stage2, _ = trainer.train_step(1)(stage2, batch, trainer.constants)
  moved = jax.device_get(stage2.params)
  for group in ('geometry_correctives', 'reflectance_correctives'):
    assert not np.array_equal(moved[group]['basis']['kernel'],
                              after[group]['basis']['kernel'])


def test_stage2_starts_with_the_final_light_equal_to_the_base_light(
    tiny_data_dir):
  trainer = train.Trainer(tiny_config(tiny_data_dir))
  params = trainer.start_stage2(
      trainer.setup.init_params(jax.random.PRNGKey(0)))
  images = jax.random.uniform(jax.random.PRNGKey(1), (2, 240, 240, 3))
  prediction = trainer.setup.predict(params, images)
  np.testing.assert_allclose(prediction.params.sh_final,
                             prediction.params.sh_base, rtol=1e-5, atol=1e-6)


def test_resume_repeats_an_uninterrupted_run(tiny_data_dir, tmp_path):
  config = tiny_config(tiny_data_dir, stage1=3, stage2=3)
  straight = train.train(config, str(tmp_path / 'straight'))
  interrupted = str(tmp_path / 'interrupted')
  first = train.train(config, interrupted, stop_at=3)
  assert int(first.step) == 3
  assert sorted(os.listdir(os.path.join(interrupted, 'checkpoints'))) == [
      '2', '3']
  resumed = train.train(config, interrupted)
  assert int(resumed.step) == int(straight.step) == 6
  for a, b in zip(jax.tree_util.tree_leaves(jax.device_get(straight.params)),
                  jax.tree_util.tree_leaves(jax.device_get(resumed.params))):
    np.testing.assert_array_equal(a, b)
  records = [json.loads(line) for line in
             open(os.path.join(interrupted, 'metrics.jsonl'))]
  assert [r['step'] for r in records] == [2, 3, 4, 6]
  assert os.listdir(os.path.join(interrupted, 'tensorboard'))


def test_incompatible_checkpoint_is_refused(tiny_data_dir, tmp_path):
  config = tiny_config(tiny_data_dir, stage1=2, stage2=0)
  train.train(config, str(tmp_path))
  config.model.num_correctives = 9
  with pytest.raises(ValueError, match='parameter layout'):
    train.train(config, str(tmp_path))


def write_config(path, data_dir, **overrides):
  lines = ['import sys', f'sys.path.insert(0, {os.path.dirname(__file__)!r})',
           'import test_train', 'def get_config():',
           f'  config = test_train.tiny_config({data_dir!r})']
  lines += [f'  config.{key} = {value!r}' for key, value in overrides.items()]
  lines.append('  return config')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')


def test_killed_run_resumes_from_its_last_checkpoint(tiny_data_dir, tmp_path):
  config_path = str(tmp_path / 'config.py')
  write_config(config_path, tiny_data_dir, **{'stage1.steps': 400,
                                              'stage2.steps': 0,
                                              'checkpoint_every': 5})
  workdir = str(tmp_path / 'run')
  command = [sys.executable, '-m', 'mofa_ml.cli', 'train',
             f'--config={config_path}', f'--workdir={workdir}']
  process = subprocess.Popen(command, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
  checkpoints = os.path.join(workdir, 'checkpoints')
  deadline = time.time() + 240
  while time.time() < deadline:
    done = [d for d in os.listdir(checkpoints)
            if d.isdigit()] if os.path.isdir(checkpoints) else []
    if done:
      break
    time.sleep(0.2)
  process.send_signal(signal.SIGKILL)
  process.wait()
  saved = max(int(d) for d in os.listdir(checkpoints) if d.isdigit())
  assert 0 < saved < 400
  result = subprocess.run(command + [f'--stop_at={saved + 5}'],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  assert f'resumed from step {saved}' in result.stdout + result.stderr
  final = max(int(d) for d in os.listdir(checkpoints) if d.isdigit())
  assert final == saved + 5


def test_data_parallel_on_four_cpu_devices_matches_one(tiny_data_dir,
                                                       tmp_path):
  script = tmp_path / 'parallel.py'
  script.write_text('\n'.join([
      'import json, sys', f'sys.path.insert(0, {os.path.dirname(__file__)!r})',
      'import jax, numpy as np', 'import test_train',
      'from mofa_ml.learning import train',
      f'trainer = train.Trainer(test_train.tiny_config({tiny_data_dir!r}))',
      'state = trainer.new_state(',
      '    trainer.setup.init_params(jax.random.PRNGKey(0)), 0, 0)',
      'batch = jax.device_put(test_train.random_batch(), trainer.data_sharding)',
      'losses = []',
      'for _ in range(2):',
      '  state, terms = trainer.train_step(0)(state, batch, trainer.constants)',
      '  losses.append(float(terms["total"]))',
      'print(json.dumps({"devices": jax.device_count(), "losses": losses, '
      '"sharding": str(batch["image"].sharding.spec)}))']))
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, str(script)], capture_output=True,
                          text=True, env=env, timeout=300)
  assert result.returncode == 0, result.stderr
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report['devices'] == 4 and "'data'" in report['sharding']
  env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=1'
  single = subprocess.run([sys.executable, str(script)], capture_output=True,
                          text=True, env=env, timeout=300)
  assert single.returncode == 0, single.stderr
  one = json.loads(single.stdout.strip().splitlines()[-1])
  assert one['devices'] == 1
  np.testing.assert_allclose(report['losses'], one['losses'], rtol=1e-4)


@pytest.mark.heavy
def test_smoke_config_learns_both_levels(tmp_path_factory):
  """A few hundred CPU steps: losses fall and the final level wins."""
  config = load_config('smoke')
  config.data_dir = str(tmp_path_factory.mktemp('tfds_smoke'))
  workdir = str(tmp_path_factory.mktemp('smoke_run'))
  train.train(config, workdir)
  records = [json.loads(line) for line in
             open(os.path.join(workdir, 'metrics.jsonl'))]
  stage1 = [r for r in records if r['stage'] == 1]
  stage2 = [r for r in records if r['stage'] == 2]
  mean = lambda rows, key: float(np.mean([r[key] for r in rows]))
  assert mean(stage1[-2:], 'total') < 0.75 * mean(stage1[:2], 'total')
  assert (mean(stage1[-2:], 'landmark_error_px') <
          mean(stage1[:2], 'landmark_error_px') - 3.0)
  assert (mean(stage2[-3:], 'photometric_error_final') <
          mean(stage2[-3:], 'photometric_error_base') - 0.005)
  assert (mean(stage2[-2:], 'landmark_error_px') <
          mean(stage1[:2], 'landmark_error_px') - 5.0)


def test_sigterm_saves_a_checkpoint_and_exits_143(tiny_data_dir, tmp_path):
  config_path = str(tmp_path / 'config.py')
  write_config(config_path, tiny_data_dir, **{'stage1.steps': 400,
                                              'stage2.steps': 0,
                                              'checkpoint_every': 1000})
  workdir = tmp_path / 'run'
  process = subprocess.Popen(
      [sys.executable, '-m', 'mofa_ml.cli', 'train', f'--config={config_path}',
       f'--workdir={workdir}'], stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  metrics = workdir / 'metrics.jsonl'
  while time.time() < deadline and not (
      metrics.exists() and metrics.read_text().count('\n') >= 2):
    time.sleep(0.2)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=300)
  assert process.returncode == 143, stderr
  assert 'stopped by SIGTERM' in stderr and 'Traceback' not in stderr
  saved = [int(d) for d in os.listdir(workdir / 'checkpoints') if d.isdigit()]
  assert saved and 4 <= max(saved) < 400  # saved where it stopped


def test_a_resumed_log_equals_an_uninterrupted_one(tiny_data_dir, tmp_path):
  config = tiny_config(tiny_data_dir, stage1=3, stage2=3)
  config.log_every, config.checkpoint_every = 1, 2
  train.train(config, str(tmp_path / 'straight'))
  interrupted = tmp_path / 'interrupted'
  train.train(config, str(interrupted), stop_at=5)
  # A kill after step 5's log line but before its checkpoint: the run
  # resumes from step 4 and logs step 5 again.
  shutil.rmtree(interrupted / 'checkpoints' / '5')
  train.train(config, str(interrupted))
  read = lambda folder: [json.loads(line) for line in
                         open(folder / 'metrics.jsonl')]
  straight, resumed = read(tmp_path / 'straight'), read(interrupted)
  assert [r['step'] for r in resumed] == [r['step'] for r in straight] == [
      1, 2, 3, 4, 5, 6]
  np.testing.assert_allclose([r['total'] for r in resumed],
                             [r['total'] for r in straight], rtol=1e-5)
