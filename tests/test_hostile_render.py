"""`mofa render` and the usage errors of every subcommand, given hostile
flags: one line naming the problem, a non-zero status, no traceback, and
nothing written (all refused before the seconds of rendering)."""

import os

import pytest

from mofa_ml import compilation_cache
import cli_harness


@pytest.fixture(name='folder')
def _folder(tmp_path):
  (tmp_path / 'a_file').write_text('not a folder')
  return tmp_path


RENDER_CASES = [
    # (flags, the line it must print, the status)
    (['--random_seed=99999999999999999999999'],
     'mofa render: --random_seed must be 0 to 2**63 - 1, got '
     '99999999999999999999999', 2),
    (['--random_seed=-1'], '--random_seed must be 0 to 2**63 - 1', 2),
    (['--image_size=-5'],
     'mofa render: --image_size must be 16 to 2048 pixels, got -5', 2),
    (['--image_size=5000'], '--image_size must be 16 to 2048 pixels, got '
     '5000', 2),
    (['--yaw_degrees='],
     'mofa render: --yaw_degrees must be numbers, got nothing', 2),
    (['--yaw_degrees=0,nan'], '--yaw_degrees must be numbers, got 0,nan', 2),
    (['--image_size=big'], "flag --image_size=big: invalid literal for "
     "int() with base 10: 'big'", 2),
    (['surplus'], 'mofa render: unexpected arguments: surplus', 2),
    (['--output={folder}', '--overwrite'],
     'mofa render: {folder} is a folder; name an image file', 1),
    (['--output={folder}/a_file/face.png'],
     'mofa render: {folder}/a_file/face.png: {folder}/a_file is a file, '
     'not a folder', 1),
    (['--output={folder}/face.heic'], 'mofa render: {folder}/face.heic: '
     'cannot write images of type .heic (use .png or .jpg)', 1),
    (['--output={folder}/a_file'],
     'mofa render: {folder}/a_file exists; pass --overwrite', 1),
]


@pytest.mark.parametrize('flags,line,code', RENDER_CASES)
def test_render_refuses_before_rendering(folder, flags, line, code):
  before = sorted(os.listdir(folder))
  flags = [flag.format(folder=folder) for flag in flags]
  if not any(flag.startswith('--output') for flag in flags):
    flags.append(f'--output={folder}/face.png')
  result = cli_harness.run('render', *flags)
  text = cli_harness.assert_one_line_failure(result, line.format(
      folder=folder))
  assert result.code == code, result
  lines = text.splitlines()
  # A usage error is its line and where the help is, not 40 lines of help.
  assert lines[1:] == (['see mofa render --help'] if code == 2 else []), text
  assert sorted(os.listdir(folder)) == before  # no .partial-* left either


USAGE_CASES = [
    ('reconstruct', ['--frame_step=0', '--input=x', '--output=y'],
     'mofa reconstruct: --frame_step must be at least 1'),
    ('reconstruct', ['--fit_steps=a,b', '--input=x', '--output=y'],
     'mofa reconstruct: --fit_steps must be two counts, e.g. 12,60'),
    ('reconstruct', ['--input=x', '--output=y', 'photo.jpg'],
     'mofa reconstruct: unexpected arguments: photo.jpg'),
    ('reconstruct', ['--faces=most', '--input=x', '--output=y'],
     'mofa reconstruct: flag --faces=most: value should be one of'),
    ('reconstruct', ['--smooth_frames=nan', '--input=x', '--output=y'],
     'mofa reconstruct: --smooth_frames must be 0 to 100 frames, got nan'),
    ('reconstruct', ['--smooth_frames=-1', '--input=x', '--output=y'],
     'mofa reconstruct: --smooth_frames must be 0 to 100 frames, got -1.0'),
    ('reconstruct', ['--fit_steps=1000000,1', '--input=x', '--output=y'],
     'mofa reconstruct: --fit_steps must be at most 240,1200 with '
     '--fit_solver=gauss_newton, got 1000000,1'),
    ('reconstruct', ['--input=', '--output=y'],
     'mofa reconstruct: --input is empty; name a photo, folder, video or '
     'list'),
    ('eval', ['--batch_size=0', '--output=y'],
     'mofa eval: --batch_size and --limit must be positive'),
    ('prepare', ['--input=x'],
     'mofa prepare: flag --output=None: Flag --output must have a value'),
    ('prepare', ['--input=x', '--output=y', '--nosuch'],
     "mofa prepare: Unknown command line flag 'nosuch'"),
]


@pytest.mark.parametrize('command,flags,line', USAGE_CASES)
def test_usage_errors_are_one_line_and_a_pointer_to_help(
    tmp_path, monkeypatch, command, flags, line):
  monkeypatch.chdir(tmp_path)  # the relative x and y must never be created
  result = cli_harness.run(command, *flags)
  text = cli_harness.assert_one_line_failure(result, line)
  assert result.code == 2
  assert text.splitlines()[1:] == [f'see mofa {command} --help'], text
  assert not os.listdir(tmp_path)


def test_help_still_prints_the_flags():
  result = cli_harness.run('render', '--help')
  assert result.code == 0 and '--image_size' in result.stdout


def test_an_unwritable_compilation_cache_costs_one_line(tmp_path, capsys):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  assert compilation_cache.enable(str(blocker / 'jax')) is None
  err = capsys.readouterr().err
  assert err == (f'mofa: compilation cache {blocker}/jax not writable; '
                 'compiling every run\n')


def test_reconstruct_leaves_no_empty_output_when_every_input_fails(
    tmp_path):
  photo = tmp_path / 'not_a_photo.jpg'
  photo.write_text('plain text')
  output = tmp_path / 'results'
  result = cli_harness.run('reconstruct', f'--input={photo}',
                           f'--output={output}')
  assert result.code == 1, result
  assert 'not_a_photo.jpg' in result.stderr
  assert 'Traceback' not in result.stderr
  assert result.stdout.strip().endswith('nothing written; 1 input(s) failed')
  assert not output.exists()


def test_ctrl_c_while_rendering_is_one_line_and_no_image(tmp_path):
  # Before: a KeyboardInterrupt traceback out of XLA's compiler.
  result = cli_harness.interrupted(
      'render', f'--output={tmp_path}/face.png', '--image_size=2048',
      after='mofa_ml.rendering.viz', delay=1.0)  # render's import
  cli_harness.assert_stopped_by_ctrl_c(result, 'render')
  assert not os.listdir(tmp_path)  # no image, no .partial-* either
