"""Damaged checkpoints: each is named in one line (folder, step, file) and
the newest intact step is used instead; orbax alone ended in pages of
TensorStore and 'Event loop is closed' tracebacks."""

import logging
import os
import pathlib
import shutil
import sys
import types

import pytest

from mofa_ml.learning import checkpoints
import cli_harness

SMALL = pathlib.Path(__file__).parent / 'data' / 'checkpoint_0_1_0' / '2'
BIG = 'state/ocdbt.process_0/d/463598fcd4edf4ec2a627d85fbe39357'


def _truncate(path):
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])


def _zero(path):
  path.write_bytes(bytes(path.stat().st_size))


def _remove(path):
  if path.is_dir():
    shutil.rmtree(path)
  else:
    path.unlink()


DAMAGES = [
    # (what is done, to which file of step 5, what the line names)
    (_truncate, BIG, 'state, array '),
    (_remove, BIG, 'state, array '),
    (_zero, 'meta/metadata', 'meta/metadata: UnicodeDecodeError'),
    (_truncate, 'state/_METADATA', 'state/_METADATA: JSONDecodeError'),
    (_remove, 'commit_success.txt',
     'commit_success.txt is missing: the save never finished'),
    (_remove, 'state', 'state/commit_success.txt is missing'),
    (_truncate, 'state/manifest.ocdbt', 'state/manifest.ocdbt'),
    (_zero, 'state/d/c238f09c6a566fd253f7a8d567debada',
     'state/d/c238f09c6a566fd253f7a8d567debada'),
]


def _workdir(root: pathlib.Path, steps=(3, 5)) -> pathlib.Path:
  for step in steps:
    shutil.copytree(SMALL, root / 'checkpoints' / str(step))
  return root


@pytest.mark.parametrize('damage,file,named', DAMAGES)
def test_a_damaged_step_gives_way_to_the_newest_intact_one(tmp_path, damage,
                                                            file, named):
  folder = _workdir(tmp_path) / 'checkpoints'
  damage(folder / '5' / file)
  notices = []
  meta = checkpoints.read_meta(
      checkpoints.manager(str(folder), read_only=True), notice=notices.append)
  assert meta['step'] == 3
  assert len(notices) == 1
  assert notices[0].startswith(f'{folder}: checkpoint step 5 is damaged '
                               f'({named}')
  assert notices[0].endswith('; using the newest intact step, 3')
  shutil.rmtree(folder / '3')
  with pytest.raises(ValueError) as raised:
    checkpoints.read_meta(checkpoints.manager(str(folder), read_only=True))
  message = str(raised.value)
  assert message.startswith(f'{folder}: checkpoint step 5 is damaged '
                            f'({named}')
  assert message.endswith('; no intact step') and '\n' not in message


def test_saved_steps_carry_checksums_that_catch_a_flipped_bit(tmp_path):
  source = checkpoints.manager(str(SMALL.parent), read_only=True)
  meta = checkpoints.read_meta(source)
  state = checkpoints.restore_state(source, meta.pop('step'))
  folder = tmp_path / 'checkpoints'
  saving = checkpoints.manager(str(folder))
  for step in (3, 5):
    checkpoints.save(saving, step, state, meta)
  assert (folder / '5' / checkpoints.CHECKSUMS).is_file()
  reading = checkpoints.manager(str(folder), read_only=True)
  assert checkpoints.read_meta(reading, notice=pytest.fail)['step'] == 5
  restored = checkpoints.restore_state(reading, 5)
  assert restored['params'].keys() == state['params'].keys()
  # A flipped bit in array data reads back without any error: only the
  # checksums see it.
  data = folder / '5' / BIG.replace('463598fcd4edf4ec2a627d85fbe39357', '')
  largest = max(data.iterdir(), key=lambda path: path.stat().st_size)
  content = bytearray(largest.read_bytes())
  content[len(content) // 2] ^= 1
  largest.write_bytes(bytes(content))
  notices = []
  assert checkpoints.read_meta(reading, notice=notices.append)['step'] == 3
  name = largest.relative_to(folder / '5')
  assert notices == [
      f'{folder}: checkpoint step 5 is damaged ({name}: its contents '
      'changed since the save); using the newest intact step, 3']


def test_commands_name_a_damaged_checkpoint_in_one_line(tmp_path, capfd):
  workdir = _workdir(tmp_path / 'run', steps=(5,))
  _truncate(workdir / 'checkpoints' / '5' / BIG)
  result = cli_harness.run('eval', f'--checkpoint={workdir}',
                           f'--output={tmp_path}/out')
  line = cli_harness.assert_one_line_failure(
      result, f'mofa eval: {workdir}/checkpoints: checkpoint step 5 is '
      'damaged (state, array ', '; no intact step')
  assert len(line.splitlines()) == 1
  assert result.code == 1
  err = capfd.readouterr().err
  assert 'Traceback' not in err and 'Event loop' not in err, err
  assert not os.path.exists(tmp_path / 'out')
  # With an intact step 3 the command goes on from it, saying so once.
  shutil.copytree(SMALL, workdir / 'checkpoints' / '3')
  result = cli_harness.run('eval', f'--checkpoint={workdir}',
                           '--dataset=mofa_faces/absent',
                           f'--data_dir={tmp_path}/tfds',
                           f'--output={tmp_path}/out')
  notice = result.stderr.splitlines()[0]
  # Which array of the truncated file TensorStore reads first varies.
  assert notice.startswith(f'mofa: {workdir}/checkpoints: checkpoint step 5 '
                           'is damaged (state, array opt_state.'), notice
  assert notice.endswith('); using the newest intact step, 3'), notice
  assert result.stderr.splitlines()[1].startswith(
      "mofa eval: dataset 'mofa_faces/absent' not found")
  assert 'Traceback' not in result.stderr + capfd.readouterr().err


def test_a_foreign_folder_is_not_called_damaged(tmp_path):
  (tmp_path / '7' / 'params').mkdir(parents=True)
  with pytest.raises(ValueError, match=r'7 is not a mofa_ml checkpoint '
                     r'\(it holds params, not state and meta\)'):
    checkpoints.read_meta(checkpoints.manager(str(tmp_path), read_only=True))


def test_resuming_sets_aside_the_damaged_steps_after_the_restored_one(
    tmp_path):
  folder = _workdir(tmp_path, steps=(3, 5, 7)) / 'checkpoints'
  _remove(folder / '5' / 'commit_success.txt')  # not even listed by orbax
  _truncate(folder / '7' / BIG)
  manager = checkpoints.manager(str(folder))
  notices = []
  checkpoints.set_aside_steps_after(manager, 3, notices.append)
  assert sorted(os.listdir(folder)) == ['3', '5.damaged', '7.damaged']
  assert len(notices) == 2 and notices[0].startswith(
      'set aside damaged checkpoint step 5 as ')
  assert manager.all_steps() == [3]


def _orbax_code(source: str) -> dict:
  """The functions `source` defines, as if in an orbax file."""
  namespace = {}
  code = compile(source, '/site-packages/orbax/checkpoint/read.py', 'exec')
  exec(code, namespace)  # pylint: disable=exec-used
  return namespace


def test_the_other_reads_in_flight_make_no_noise(monkeypatch, caplog):
  # A truncated step: the reads still in flight reported, at exit, pages of
  # 'Exception ignored in: <coroutine ...>' and 'Future exception was
  # never retrieved' after the one line (in about one run of eight).
  reached = []
  monkeypatch.setattr(sys, 'unraisablehook', reached.append)
  checkpoints._ignore_closed_loop_callbacks()  # pylint: disable=protected-access
  orbax_read = _orbax_code('async def read():\n  pass\n')['read']()

  async def ours():
    pass

  coroutines = [orbax_read, ours()]
  for thing, error in ((orbax_read, Exception('Encountered error while '
                                              'reading array index')),
                       (None, RuntimeError('Event loop is closed')),
                       (coroutines[1], ValueError('ours'))):
    sys.unraisablehook(types.SimpleNamespace(
        exc_type=type(error), exc_value=error, exc_traceback=None,
        err_msg=None, object=thing))
  for coroutine in coroutines:
    coroutine.close()
  assert [str(unraisable.exc_value) for unraisable in reached] == ['ours']
  try:
    _orbax_code('def read():\n  raise ValueError("OUT_OF_RANGE")\n')['read']()
  except ValueError:
    in_orbax = sys.exc_info()
  try:
    raise ValueError('ours')
  except ValueError:
    in_ours = sys.exc_info()
  logger = logging.getLogger('asyncio')
  with caplog.at_level(logging.ERROR, logger='asyncio'):
    for kind, info in (('Task', in_orbax),
                       ('Future', (ValueError, ValueError('DATA_LOSS'), None)),
                       ('Future', in_ours)):
      logger.error(f'{kind} exception was never retrieved\nfuture: <{kind}>',
                   exc_info=info)
  assert [str(record.exc_info[1]) for record in caplog.records] == ['ours']
