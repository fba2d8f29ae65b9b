"""`experiments/bench.py` end to end on tiny settings (numbers unchecked:
speed targets live in the benchmark's JSON, never in tests)."""

import os
import subprocess
import sys

from experiments import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench(*args):
  """`python -m experiments.bench`, as a user runs it from the root."""
  return subprocess.run(
      [sys.executable, '-m', 'experiments.bench', *args],
      capture_output=True, text=True, check=False, cwd=ROOT)


def test_bench_runs_and_reports_consistent_numbers():
  result = bench.benchmark(['synthetic:light'], batch_sizes=[1, 2],
                           train_batch_sizes=[2], formation_batch_sizes=[1],
                           matmul_size=128, min_seconds=0.01)
  assert result['platform'] == 'cpu' and result['device']
  assert result['matmul']['gflop_per_s'] > 0
  model, = result['models']
  assert model['backbone'] == 'light' and model['num_correctives'] == 64
  for row in model['inference']:
    assert abs(row['encoder_images_per_s'] * row['encoder_ms'] / 1e3 -
               row['batch']) < 1e-6 * row['batch']
    # The light encoder at width 0.5: tens of MFLOP per image, the same
    # for every batch size.
    assert 0.01 < row['encoder_gflop_per_image'] < 0.1
    assert row['end_to_end_over_encoder'] > 0
  flops = [row['encoder_gflop_per_image'] for row in model['inference']]
  assert abs(flops[0] - flops[1]) < 0.01 * flops[0]
  assert model['training'][0]['steps_per_s'] > 0
  assert result['formation']['rasterizer_240px_ms'] > 0


def test_bench_command_refuses_bad_arguments_in_one_line(tmp_path):
  # Both fail before any timing: an existing output, a missing config.
  output = tmp_path / 'bench.json'
  output.write_text('{}')
  again = _bench(f'--output={output}')
  assert again.returncode != 0 and 'pass --overwrite' in again.stderr
  missing = _bench(f'--models={tmp_path / "nope.py"}',
                   f'--output={tmp_path / "other.json"}')
  assert missing.returncode != 0
  assert 'config file not found' in missing.stderr
  assert 'Traceback' not in missing.stderr + again.stderr


def test_the_gpu_script_parses_and_names_its_usage():
  script = os.path.join(ROOT, 'experiments', 'gpu.sh')
  assert subprocess.run(['bash', '-n', script], check=False).returncode == 0
  for args in ([], ['run'], ['train']):
    result = subprocess.run(['bash', script, *args], capture_output=True,
                            text=True, check=False)
    assert result.returncode != 0
    assert 'usage: experiments/gpu.sh' in result.stderr
