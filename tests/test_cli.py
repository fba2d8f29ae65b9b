"""The `mofa` command line, run as a user would."""

import json
import os
import subprocess
import sys

import numpy as np

from mofa_ml import image_io
import mofa_ml.configs
from mofa_ml.learning import configs


def run_mofa(*args, cwd=None):
  return subprocess.run([sys.executable, '-m', 'mofa_ml.cli', *args],
                        capture_output=True, text=True, cwd=cwd, timeout=300)


def test_usage_and_unknown_subcommand():
  listing = run_mofa('--help')
  assert listing.returncode == 0 and 'render' in listing.stdout
  unknown = run_mofa('frobnicate')
  assert unknown.returncode == 2
  assert "unknown subcommand 'frobnicate'" in unknown.stderr


def test_subcommand_help_describes_it_and_lists_its_flags():
  for name, flag in (('eval', '--checkpoint'), ('render', '--output'),
                     ('train', '--workdir')):
    listing = run_mofa(name, '--help')
    assert listing.returncode == 0
    assert f'mofa {name}' in listing.stdout
    assert flag in listing.stdout


def test_render_writes_a_face_and_never_overwrites(tmp_path):
  output = os.path.join(tmp_path, 'face.png')
  result = run_mofa('render', f'--output={output}', '--image_size=160',
                    '--yaw_degrees=0,45')
  assert result.returncode == 0, result.stderr
  image = image_io.load_image(output)
  assert image.shape == (160, 2 * 160 + 4, 3)
  frontal, turned = image[:, :160], image[:, 164:]
  for panel in (frontal, turned):
    face = np.any(np.abs(panel - 0.18) > 0.02, axis=-1)
    assert 0.3 < face.mean() < 0.9
  # The frontal face is left-right symmetric in coverage, the turned one not.
  face = np.any(np.abs(frontal - 0.18) > 0.02, axis=-1)
  assert abs(face[:, :80].sum() - face[:, 80:].sum()) < 0.05 * face.sum()
  before = os.path.getmtime(output)
  again = run_mofa('render', f'--output={output}', '--image_size=160')
  assert again.returncode != 0
  assert 'exists; pass --overwrite' in again.stderr
  assert 'Traceback' not in again.stderr
  assert os.path.getmtime(output) == before
  bad = run_mofa('render', f'--output={output}', '--yaw_degrees=left')
  assert bad.returncode != 0 and 'must be numbers' in bad.stderr


def train_config(*flags, cwd):
  """The config `mofa train <flags>` would train, as JSON (nothing runs)."""
  script = ('import sys\n'
            'from mofa_ml import cli\n'
            'from mofa_ml.commands import train\n'
            'train.main = lambda argv: print(train._CONFIG.value.to_json())\n'
            'sys.exit(cli.main(["mofa", "train", *sys.argv[1:]]))\n')
  result = subprocess.run([sys.executable, '-c', script, *flags,
                           '--workdir=unused'], capture_output=True,
                          text=True, cwd=cwd, timeout=300)
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_train_takes_a_config_by_name_or_path_with_overrides(tmp_path):
  # Outside the repository, as after a pip install.
  packaged = os.path.dirname(mofa_ml.configs.__file__)
  by_name = train_config('--config=smoke', '--config.batch_size=10',
                         cwd=tmp_path)
  by_path = train_config(f'--config={packaged}/smoke.py',
                         '--config.batch_size=10', cwd=tmp_path)
  expected = configs.load_config('smoke')
  expected.batch_size = 10
  assert by_name == by_path == json.loads(expected.to_json())
  light = train_config('--config=synthetic:light', '--config.model.width=0.75',
                       cwd=tmp_path)
  expected = configs.load_config(f'{packaged}/synthetic.py:light')
  expected.model.width = 0.75
  assert light == json.loads(expected.to_json())


def test_train_refuses_an_unknown_config_name_in_one_line(tmp_path):
  result = run_mofa('train', '--config=foo', '--config.batch_size=3',
                    f'--workdir={tmp_path / "run"}', cwd=tmp_path)
  assert result.returncode != 0
  assert result.stderr.strip() == (
      "mofa train: unknown config 'foo': choose one of default, on_device, "
      'paper, paper_stage1, paper_stage2, smoke, synthetic or give a path to '
      'a .py file')
  assert not (tmp_path / 'run').exists()
