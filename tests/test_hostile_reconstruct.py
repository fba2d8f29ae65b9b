"""`mofa reconstruct` given hostile inputs, through the real command line in
this process: the line naming the input and the problem, a non-zero status,
no traceback, nothing written; and Ctrl-C while a face is being fitted."""

import os
import pathlib
import shutil
import signal

import numpy as np
import PIL.Image
import pytest
import scipy.io

from mofa_ml import samples
from mofa_ml.data import detection
from mofa_ml.facemodel import face_model
from mofa_ml.reconstruction import reconstruct
from mofa_ml.reconstruction import reconstructor as reconstructor_lib
import cli_harness
import test_face_model

CHECKPOINT = pathlib.Path(__file__).parent / 'data' / 'checkpoint_0_1_0' / '2'
# The largest array file of that checkpoint: truncated, TensorStore fails
# on it and orbax's other reads in flight used to print pages at exit.
ARRAYS = 'state/ocdbt.process_0/d/463598fcd4edf4ec2a627d85fbe39357'


@pytest.fixture(name='hostile', scope='module')
def _hostile(tmp_path_factory):
  """One folder holding each hostile input."""
  root = tmp_path_factory.mktemp('hostile')
  (root / 'thin').mkdir()
  PIL.Image.new('RGB', (1, 20000)).save(root / 'thin' / 'tall.png')
  PIL.Image.new('RGB', (20000, 1)).save(root / 'thin' / 'wide.png')
  (root / 'loop' / 'a').mkdir(parents=True)
  os.symlink('..', root / 'loop' / 'a' / 'loop')
  (root / 'odd').mkdir()
  for name in ('a.avif', 'b.gif', 'c.heic'):
    (root / 'odd' / name).write_bytes(b'')
  # An earlier run's results inside the input folder are not inputs.
  (root / 'own' / 'out' / 'bad').mkdir(parents=True)
  (root / 'own' / 'bad.jpg').write_text('not a photo')
  photo = samples.sample_faces()['takeo'].image_path
  for name in ('overlay.png', 'shading.png'):
    PIL.Image.open(photo).save(root / 'own' / 'out' / 'bad' / name)
  contents = test_face_model.write_synthetic_bfm(str(root / 'words.mat'))
  scipy.io.savemat(root / 'words.mat', dict(contents, tri=np.array(['x', 'y'])))
  for name in ('unfinished', 'truncated'):
    shutil.copytree(CHECKPOINT, root / name / 'checkpoints' / '5')
  (root / 'unfinished' / 'checkpoints' / '5' / 'commit_success.txt').unlink()
  arrays = root / 'truncated' / 'checkpoints' / '5' / ARRAYS
  arrays.write_bytes(arrays.read_bytes()[:arrays.stat().st_size // 2])
  return root


RECONSTRUCT_CASES = [
    # (flags, the line's start, the status, inputs failed); {in} is the
    # hostile folder, --output={tmp}/out unless given.
    (['--input={in}/thin'], '{in}/thin/tall.png: too small to hold a face (1 '
     'x 20000 px)', 1, 2),
    (['--input={in}/loop'], '{in}/loop: no files', 1, 1),
    (['--input={in}/odd'], '{in}/odd: only .avif, .gif, .heic files '
     '(supported: .jpg, .jpeg', 1, 1),
    (['--input={in}/own', '--output={in}/own/out'],
     '{in}/own/bad.jpg: not a readable image', 1, 1),
    (['--input=sample:takeo', '--face_model=bfm09:{in}/words.mat'],
     '{in}/words.mat: tri holds <U1 values, not numbers', 1, 0),
    (['--input=sample:takeo', '--checkpoint={in}/unfinished'],
     '{in}/unfinished/checkpoints: checkpoint step 5 is damaged '
     '(commit_success.txt is missing: the save never finished); no intact '
     'step', 1, 0),
    (['--input=sample:takeo', '--checkpoint={in}/truncated'],
     '{in}/truncated/checkpoints: checkpoint step 5 is damaged (state, array ',
     1, 0),
]


def _tree(folder):
  return sorted(str(path.relative_to(folder)) for path in folder.rglob('*'))


@pytest.mark.parametrize('flags,line,code,failed', RECONSTRUCT_CASES)
def test_reconstruct_names_the_input_and_writes_nothing(
    hostile, tmp_path, capfd, flags, line, code, failed):
  fill = lambda text: text.format(**{'in': hostile, 'tmp': tmp_path})
  flags = [fill(flag) for flag in flags]
  if not any(flag.startswith('--output=') for flag in flags):
    flags.append(f'--output={tmp_path}/out')
  before = _tree(hostile)
  result = cli_harness.run('reconstruct', *flags)
  assert result.code == code, result
  cli_harness.assert_one_line_failure(result)
  lines = [text for text in result.stderr.splitlines()  # not the bars
           if text.strip() and '%|' not in text]
  assert lines[0].startswith(f'mofa reconstruct: {fill(line)}'), lines
  if failed:  # each failed input, then the list of them
    assert lines[-failed - 1:] == [f'mofa reconstruct: {failed} input(s) '
                                   'failed:'] + [
                                       '  ' + text.split(': ', 1)[1]
                                       for text in lines[:failed]], lines
  else:  # refused before any input
    assert len(lines) == 1, lines
  assert 'Traceback' not in capfd.readouterr().err
  assert _tree(hostile) == before  # nothing written, nothing reconstructed
  assert not os.path.exists(tmp_path / 'out')


def _interrupting(signals):
  """reconstruct_inputs that gets `signals` SIGINTs during its first
  face, as a user pressing Ctrl-C that often."""

  def fake(*args, stop, **kwargs):
    del args, kwargs
    for _ in range(signals):
      os.kill(os.getpid(), signal.SIGINT)
    return reconstruct.Summary(0, [], stop())

  return fake


def _exit(code):
  raise SystemExit(code)


@pytest.mark.parametrize('signals,line', [
    (1, 'mofa reconstruct: stopped by SIGINT'),
    (2, 'mofa reconstruct: stopped at once by SIGINT; the input in progress '
     'was not written'),
])
def test_ctrl_c_during_a_face_stops_in_one_line(tmp_path, monkeypatch,
                                                signals, line):
  monkeypatch.setattr(reconstruct, 'reconstruct_inputs',
                      _interrupting(signals))
  # Nothing is fitted: no model, network or detector to load.
  monkeypatch.setattr(face_model, 'load_face_model', lambda spec: None)
  monkeypatch.setattr(reconstructor_lib, 'Reconstructor',
                      lambda *args: None)
  monkeypatch.setattr(detection, 'FaceLandmarker', lambda: None)
  monkeypatch.setattr(os, '_exit', _exit)  # the second signal's, not pytest's
  handlers = {number: signal.getsignal(number)
              for number in (signal.SIGINT, signal.SIGTERM)}
  try:
    result = cli_harness.run('reconstruct', '--input=sample:takeo',
                             f'--output={tmp_path}/out')
  finally:
    for number, handler in handlers.items():
      signal.signal(number, handler)
  assert result.code == 128 + signal.SIGINT, result
  assert 'Traceback' not in result.stderr
  assert result.stderr.splitlines() == [
      'mofa reconstruct: stopping after the current face (again to stop at '
      'once)', line], result.stderr
  assert not os.path.exists(tmp_path / 'out')
