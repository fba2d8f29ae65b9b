"""`mofa reconstruct` given hostile inputs, through the real command line in
this process: the line naming the input and the problem, a non-zero status,
no traceback, nothing written; and Ctrl-C while a face is being fitted."""

import os
import pathlib
import re
import shutil
import signal
import types

import numpy as np
import PIL.Image
import pytest
import scipy.io

from mofa_ml import samples
from mofa_ml.data import crop
from mofa_ml.data import detection
from mofa_ml.facemodel import face_model
from mofa_ml.fitting import fit
from mofa_ml.reconstruction import reconstruct
from mofa_ml.reconstruction import reconstructor as reconstructor_lib
from mofa_ml.reconstruction import video as video_lib
from mofa_ml.reconstruction import video_tracking
from mofa_ml.rendering import camera
import cli_harness
import test_face_model
import test_video

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


@pytest.fixture(name='quick_video')
def _quick_video(ict_model, tmp_path, monkeypatch):
  """`mofa reconstruct` of a 3-frame clip in seconds: the tracking, the
  identity and each frame's fit are stand-ins (the mean face, centred);
  the passes over the frames and the files are the real ones. Returns the
  clip and the frames fitted so far."""
  layout = fit.fit_layout(ict_model)
  vector = np.zeros(layout.size, np.float32)
  vertices = ict_model.geometry(np.zeros(ict_model.num_shape),
                                np.zeros(ict_model.num_expression))
  vector[slice(*layout.offsets['translation'])] = camera.centring_translation(
      vertices, ict_model.landmark_vertices, np.zeros(3))
  marks = np.stack(np.meshgrid(np.linspace(16, 48, 9),
                               np.linspace(16, 48, 8)), -1).reshape(-1, 2)[:68]
  offsets = np.zeros((ict_model.num_vertices, 3), np.float32)
  fitted = []

  def track(model, frames, landmarker, progress, face_mesh):
    del model, landmarker, progress, face_mesh
    count = len([index for index, _ in frames])
    return video_tracking.Track(np.arange(count), np.ones(count, bool),
                                np.tile(marks, (count, 1, 1)),
                                np.ones((count, 68)), np.zeros(count),
                                np.ones(count), (None,) * count)

  def fit_frame(*args):
    fitted.append(args[2])
    return vector, 0.01, False, False, crop.crop_transform(marks)

  monkeypatch.setattr(video_tracking, 'track_faces', track)
  monkeypatch.setattr(video_tracking, 'shared_identity',
                      lambda *args: (vector, offsets, offsets, None))
  monkeypatch.setattr(video_lib, '_fit_frame', fit_frame)
  monkeypatch.setattr(face_model, 'load_face_model', lambda spec: ict_model)
  stand_in = types.SimpleNamespace(
      model=ict_model, rig=None, reconstruct_face=lambda *args, **kwargs: None,
      intrinsics=camera.default_intrinsics(crop.CROP_SIZE),
      fit_config=video_lib.FRAME_CONFIG, face_mesh=lambda *args: None,
      texture_map=test_video.small_texture_map(ict_model))
  monkeypatch.setattr(reconstructor_lib, 'Reconstructor',
                      lambda *args: stand_in)
  monkeypatch.setattr(detection, 'FaceLandmarker', lambda: None)
  handlers = {number: signal.getsignal(number)
              for number in (signal.SIGINT, signal.SIGTERM)}
  yield test_video.small_clip(tmp_path / 'clip.mp4', frames=3), fitted
  for number, handler in handlers.items():
    signal.signal(number, handler)


def _lines(stderr):
  """The command's lines as a terminal shows them (a bar's \\r returns to
  the line's start), without the progress bars."""
  return [line for line in re.split('[\r\n]', stderr)
          if line.startswith('mofa ')]


def test_ctrl_c_during_a_video_stops_between_its_frames(quick_video,
                                                        tmp_path):
  # Before: the first Ctrl-C waited for every frame of the video.
  clip, fitted = quick_video
  fit_frame = video_lib._fit_frame  # pylint: disable=protected-access

  def pressed_during_the_first(*args):
    if not fitted:
      os.kill(os.getpid(), signal.SIGINT)
    return fit_frame(*args)

  video_lib._fit_frame = pressed_during_the_first  # undone by monkeypatch
  result = cli_harness.run('reconstruct', f'--input={clip}',
                           f'--output={tmp_path}/out')
  assert result.code == 128 + signal.SIGINT, result
  assert 'Traceback' not in result.stderr
  assert len(fitted) == 1  # not the other 2 frames
  assert _lines(result.stderr) == [
      'mofa reconstruct: stopping after the current face (again to stop at '
      'once)', f'mofa reconstruct: stopped by SIGINT; {clip} was not '
      'written'], result.stderr
  assert result.stderr.endswith(f'\n{_lines(result.stderr)[-1]}\n')
  assert result.stdout.strip().endswith('nothing written; 0 input(s) failed')
  assert sorted(os.listdir(tmp_path)) == ['clip.mp4']  # no out/, no partial


def test_an_overlay_video_missing_frames_is_a_failure_not_a_file(
    quick_video, tmp_path, monkeypatch):
  import cv2  # pylint: disable=g-import-not-at-top
  clip, fitted = quick_video
  monkeypatch.setattr(test_video.DroppingWriter, 'real', cv2.VideoWriter)
  monkeypatch.setattr(cv2, 'VideoWriter', test_video.DroppingWriter)
  result = cli_harness.run('reconstruct', f'--input={clip}',
                           f'--output={tmp_path}/out')
  assert result.code == 1, result
  assert 'Traceback' not in result.stderr
  line = (f'{clip}: the overlay video holds 2 of its 3 frames (is '
          f'{tmp_path}/out full?)')
  assert _lines(result.stderr) == [f'mofa reconstruct: {line}',
                                   'mofa reconstruct: 1 input(s) failed:']
  assert f'\n  {line}\n' in result.stderr
  assert len(fitted) == 3
  assert result.stdout.strip().endswith('nothing written; 1 input(s) failed')
  assert sorted(os.listdir(tmp_path)) == ['clip.mp4']  # no out/, no partial
