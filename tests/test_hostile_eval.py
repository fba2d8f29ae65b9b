"""`mofa eval` given hostile outputs and damaged datasets: one line naming
the problem, a non-zero status, no traceback, no results written; and the
documented path, evaluating a set that `mofa prepare` made, works."""

import importlib
import os
import shutil
import signal

import numpy as np
import pytest

from mofa_ml import cli
from mofa_ml.data import crop
from mofa_ml.data import faces_dataset
from mofa_ml.data import input_pipeline
import cli_harness

VERSION = os.path.join('mofa_faces', 'faces', '1.0.0')


@pytest.fixture(name='prepared', scope='module')
def _prepared(tmp_path_factory):
  """A two-face `mofa_faces/faces` as `mofa prepare` writes it (its shards
  made here by hand: the faces' content does not matter)."""
  root = tmp_path_factory.mktemp('prepared')
  size = crop.CROP_SIZE
  rng = np.random.default_rng(0)
  np.savez(root / 'shard-00000.npz',
           image=rng.integers(0, 255, (2, size, size, 3), np.uint8),
           landmarks=rng.uniform(60, 180, (2, 68, 2)).astype(np.float32),
           landmark_confidence=np.ones((2, 68), np.float32),
           crop_transform=np.tile(np.eye(2, 3), (2, 1, 1)),
           source=np.array(['/photos/a.jpg', '/photos/b.webp']),
           frame=np.array([-1, -1], np.int32),
           split=np.array(['train', 'train']))
  faces_dataset.build(str(root / 'tfds'), 'faces', str(root))
  return root / 'tfds'


def _damaged(prepared, tmp_path, name, damage):
  copy = tmp_path / 'tfds'
  shutil.copytree(prepared, copy)
  path = copy / VERSION / name
  damage(path)
  return copy


EVAL_REFUSALS = [
    # (--output, how the data is damaged, the line)
    ('{tmp}/file', None, 'mofa eval: --output {tmp}/file is a file; name a '
     'folder'),
    ('{tmp}/file/out', None, 'mofa eval: --output {tmp}/file/out: {tmp}/file '
     'is a file, not a folder'),
    ('{tmp}/out', ('dataset_info.json', lambda path: path.write_text(
        '{"name": "mofa_faces", "splits": [{"name": 5')),
     'mofa eval: dataset mofa_faces/faces (train in {tmp}/tfds) cannot be '
     "read: Failed to load JSON: Expecting ',' delimiter"),
    ('{tmp}/out', ('mofa_faces-train.array_record-00000-of-00001',
                   lambda path: path.write_bytes(
                       path.read_bytes()[:path.stat().st_size // 2])),
     'mofa eval: dataset mofa_faces/faces (train in {tmp}/tfds) cannot be '
     'read: '),  # 'Corrupted Riegeli/records file' or 'should be at least'
]


@pytest.mark.parametrize('output,damage,line', EVAL_REFUSALS)
def test_eval_refuses_before_the_work(prepared, tmp_path, capfd, output,
                                      damage, line):
  (tmp_path / 'file').write_text('')
  data_dir = _damaged(prepared, tmp_path, *damage) if damage else prepared
  fill = lambda text: text.format(tmp=tmp_path)
  result = cli_harness.run('eval', '--dataset=mofa_faces/faces',
                           '--split=train', f'--data_dir={data_dir}',
                           f'--output={fill(output)}')
  text = cli_harness.assert_one_line_failure(result, fill(line))
  assert len(text.splitlines()) == 1 and result.code == 1, text
  assert 'Traceback' not in capfd.readouterr().err
  assert not os.path.exists(tmp_path / 'out')


def test_ctrl_c_while_fitting_is_one_line_and_no_results(prepared, tmp_path):
  # Before: a KeyboardInterrupt traceback out of XLA's compiler.
  result = cli_harness.interrupted(
      'eval', '--dataset=mofa_faces/faces', '--split=train',
      f'--data_dir={prepared}', '--fit_steps=2,2',
      f'--output={tmp_path}/out', after='eval:', delay=0.5)
  cli_harness.assert_stopped_by_ctrl_c(result, 'eval')
  assert not os.listdir(tmp_path)


def test_ctrl_c_waits_for_the_last_of_a_set_of_files():
  handler = signal.getsignal(signal.SIGINT)
  done = []
  with pytest.raises(KeyboardInterrupt):
    with cli.interrupts_held():
      os.kill(os.getpid(), signal.SIGINT)
      done.append('eval.json')
      done.append('eval.md')
  assert done == ['eval.json', 'eval.md']
  assert signal.getsignal(signal.SIGINT) is handler


def test_prepared_sets_reach_the_metrics_as_numbers_only(prepared):
  # The 'source' paths, batched as bytes, made every evaluation of a
  # prepared set fail: "could not convert string to float: ...b.webp".
  source = input_pipeline.load_source('mofa_faces/faces', 'train',
                                      str(prepared))
  try:
    eval_command = importlib.import_module('mofa_ml.commands.eval')
    batches = eval_command._numeric_batches(  # pylint: disable=protected-access
        input_pipeline.evaluation_batches(source, 2), 'here')
  finally:
    cli_harness.forget_commands()  # its flags, for the next `mofa eval`
  batch = next(batches)
  assert sorted(batch) == ['crop_transform', 'frame', 'image',
                           'landmark_confidence', 'landmarks']
  assert {key: np.asarray(value, np.float32).shape
          for key, value in batch.items()}['image'] == (2, 240, 240, 3)
  assert next(batches, None) is None


@pytest.mark.heavy
def test_eval_fits_a_prepared_set(prepared, tmp_path):
  result = cli_harness.run('eval', '--dataset=mofa_faces/faces',
                           '--split=train', f'--data_dir={prepared}',
                           '--fit_steps=2,2', '--limit=1',
                           f'--output={tmp_path}/out')
  assert result.code == 0, result
  assert sorted(os.listdir(tmp_path / 'out')) == ['eval.json', 'eval.md',
                                                 'histograms.png']
