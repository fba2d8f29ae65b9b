"""Bad inputs, interruptions and outputs others can read: every failure is one
line, no result is lost or half-written, checks come before the work."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mofa_ml import image_io
from mofa_ml import samples
from mofa_ml.data import detection
from mofa_ml.export import outputs
from mofa_ml.reconstruction import reconstruct

TAKEO = samples.sample_faces()['takeo'].image_path


def run_mofa(*args, **kwargs):
  return subprocess.run([sys.executable, '-m', 'mofa_ml.cli', *args],
                        capture_output=True, text=True, timeout=900, **kwargs)


class StubLandmarker:
  """One face in every photo; raises for photos named in `broken`."""

  def __init__(self, broken=()):
    self.broken = broken

  def detect(self, photo):
    del photo
    return [detection.Detection(np.array([0, 0, 10, 10], np.float32), 1.0,
                                np.zeros((68, 2), np.float32),
                                np.ones(68, np.float32))]


class StubReconstructor:
  """Writes one small file per face; fails on chosen calls."""

  def __init__(self, fail_on=()):
    self.calls = 0
    self.fail_on = fail_on
    self.model = None

  def reconstruct_face(self, photo, landmarks, confidence):
    del photo, landmarks, confidence
    self.calls += 1
    if self.calls in self.fail_on:
      raise RuntimeError('XlaRuntimeError: something deep inside JAX')
    return outputs.Reconstruction(
        None, None, None, None, None, None,
        {'landmark_error_px': 1.0, 'photometric_error_base': 0.1,
         'photometric_error_final': 0.05}, 0.1)

  def files(self, photo, face):
    del photo, face
    return {'mesh_final.ply': b'ply', 'reconstruction.json': b'{}'}

  def is_face(self, photo, landmarks):
    del photo, landmarks
    return True


def _photos(folder, names):
  for name in names:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(TAKEO, path)
  return folder


def _run(tmp_path, entries, reconstructor=None, **kwargs):
  lines = {'report': [], 'fail': []}
  summary = reconstruct.reconstruct_inputs(
      reconstructor or StubReconstructor(), StubLandmarker(), entries,
      str(tmp_path / 'out'), report=lines['report'].append,
      fail=lines['fail'].append, **kwargs)
  return summary, lines


def test_same_stems_get_their_own_folders(tmp_path):
  photos = _photos(tmp_path / 'photos', ['a/face.jpg', 'b/face.jpg',
                                         'face.jpg', 'face.png'])
  summary, lines = _run(tmp_path, [str(photos)])
  assert summary.written == 4 and not summary.failed, lines
  out = tmp_path / 'out'
  assert {str(p.relative_to(out)) for p in out.rglob('mesh_final.ply')} == {
      'a/face/mesh_final.ply', 'b/face/mesh_final.ply',
      'face_jpg/mesh_final.ply', 'face_png/mesh_final.ply'}
  # Two files given by name with the same stem and type: a path hash.
  jobs = reconstruct.resolve_inputs([str(photos / 'a' / 'face.jpg'),
                                     str(photos / 'b' / 'face.jpg')]).jobs
  assert len({job.name for job in jobs}) == 2
  assert all(job.name.startswith('face_') for job in jobs)


def test_every_failure_is_one_line_and_the_run_goes_on(tmp_path):
  photos = _photos(tmp_path / 'photos', ['one.jpg', 'two.jpg', 'three.jpg',
                                         'four.jpg'])
  (photos / 'notes.jpg').write_text('not an image')
  (tmp_path / 'out').mkdir()
  (tmp_path / 'out' / 'two').write_text('a file where a folder should go')
  # The third face's fitting raises an unexpected error.
  summary, lines = _run(tmp_path, [str(photos), str(tmp_path / 'gone.jpg')],
                        reconstructor=StubReconstructor(fail_on=(2,)))
  assert summary.written == 2
  assert len(summary.failed) == 4 and lines['fail'] == summary.failed
  text = '\n'.join(summary.failed)
  assert 'gone.jpg: file not found' in text
  assert 'notes.jpg: not a readable image' in text
  assert 'two exists and is not a folder' in text
  assert 'RuntimeError: XlaRuntimeError' in text
  assert all('\n' not in line for line in summary.failed)


def test_existing_results_are_refused_before_the_work(tmp_path):
  photos = _photos(tmp_path / 'photos', ['one.jpg'])
  _run(tmp_path, [str(photos)])
  stub = StubReconstructor()
  summary, _ = _run(tmp_path, [str(photos)], reconstructor=stub)
  assert summary.written == 0 and '--overwrite' in summary.failed[0]
  assert stub.calls == 0  # refused before fitting
  summary, _ = _run(tmp_path, [str(photos)], reconstructor=stub,
                    overwrite=True)
  assert summary.written == 1 and stub.calls == 1


def test_a_stopped_run_leaves_whole_folders_only(tmp_path):
  photos = _photos(tmp_path / 'photos', ['one.jpg', 'two.jpg', 'three.jpg'])
  stub = StubReconstructor()
  summary, _ = _run(tmp_path, [str(photos)], reconstructor=stub,
                    stop=lambda: stub.calls >= 1)
  assert summary.stopped and summary.written == 1
  assert sorted(os.listdir(tmp_path / 'out')) == ['one']
  assert sorted(os.listdir(tmp_path / 'out' / 'one')) == [
      'mesh_final.ply', 'reconstruction.json']


def test_result_folders_and_files_follow_the_umask(tmp_path):
  old = os.umask(0o022)
  try:
    _run(tmp_path, [str(_photos(tmp_path / 'photos', ['one.jpg']))])
  finally:
    os.umask(old)
  folder = tmp_path / 'out' / 'one'
  assert folder.stat().st_mode & 0o777 == 0o755
  assert (folder / 'mesh_final.ply').stat().st_mode & 0o777 == 0o644


def test_input_validation_uses_no_assert():
  package = pathlib.Path(reconstruct.__file__).resolve().parents[1]
  offenders = [str(path) for path in package.rglob('*.py')
               if any(line.strip().startswith('assert ')
                      for line in path.read_text().splitlines())]
  assert not offenders


def test_sigterm_stops_after_a_whole_folder_and_exits_143(tmp_path):
  photos = _photos(tmp_path / 'photos', [f'p{i}.jpg' for i in range(4)])
  output = tmp_path / 'out'
  process = subprocess.Popen(
      [sys.executable, '-m', 'mofa_ml.cli', 'reconstruct',
       f'--input={photos}', f'--output={output}', '--fit_steps=4,10'],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 600
  while time.time() < deadline and not (output / 'p0').is_dir():
    time.sleep(0.2)
  process.send_signal(signal.SIGTERM)
  stdout, stderr = process.communicate(timeout=600)
  assert process.returncode == 143, stderr
  assert 'stopped by SIGTERM' in stderr and 'Traceback' not in stderr
  assert 'reconstruction(s) written' in stdout
  folders = sorted(os.listdir(output))
  assert folders and all(not name.startswith('.') for name in folders)
  for name in folders:  # every folder is whole
    assert sorted(os.listdir(output / name)) == sorted(outputs.FACE_FILES)


def test_garbage_and_broken_images_each_cost_one_line(tmp_path):
  rng = np.random.default_rng(0)
  inputs = tmp_path / 'inputs'
  inputs.mkdir()
  data = pathlib.Path(TAKEO).read_bytes()
  for index in range(50):
    (inputs / f'random{index:02d}.jpg').write_bytes(
        rng.integers(0, 256, int(rng.integers(0, 4000)), np.uint8).tobytes())
  for index in range(50):
    broken = bytearray(data[:int(rng.integers(1, len(data) - 1))])
    if index % 2:  # and garbled headers
      start = int(rng.integers(0, min(len(broken), 200)))
      broken[start:start + 16] = rng.integers(0, 256, 16, np.uint8).tobytes()
    (inputs / f'broken{index:02d}.png').write_bytes(bytes(broken))
  shutil.copy(TAKEO, inputs / 'good.jpg')
  output = tmp_path / 'out'
  result = run_mofa('reconstruct', f'--input={inputs}', f'--output={output}',
                    '--fit_steps=4,10')
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  assert sorted(os.listdir(output / 'good')) == sorted(outputs.FACE_FILES)
  failures = [line for line in result.stderr.splitlines()
              if line.startswith('mofa reconstruct: ') and '/inputs/' in line]
  names = {pathlib.Path(line.split(': ')[1]).name for line in failures}
  written = set(os.listdir(output)) - {'good'}
  # Every bad file is either reported once or (a truncated photo that still
  # shows the face) reconstructed; none is lost.
  assert len(names) + len(written) == 100, (names, written)
  assert '100 input(s) failed' in result.stdout or written


def test_sixteen_bit_grey_photo_is_found_not_clipped(tmp_path):
  import PIL.Image  # pylint: disable=g-import-not-at-top
  grey = image_io.load_photo(TAKEO).mean(-1) / 255.0
  path = str(tmp_path / 'takeo16.png')
  PIL.Image.fromarray((grey * 65535).astype(np.uint16)).save(path)
  photo = image_io.load_photo(path)
  assert photo.max() < 255 or photo.min() > 0  # not clipped to white
  assert detection.FaceLandmarker().detect(photo)


def test_training_config_errors_are_one_line_and_leave_nothing(tmp_path):
  smoke = 'smoke'  # the packaged config, by name
  workdir = tmp_path / 'run'
  cases = [
      ([f'--config={tmp_path / "nope.py"}'], 'config file not found'),
      ([f'--config={smoke}', '--config.batchsize=3'],
       "'batchsize' Did you mean \"batch_size\""),
      ([f'--config={smoke}', '--config.batch_size=-2'],
       'config.batch_size must be a positive integer'),
      ([f'--config={smoke}', '--config.dataset=mofa_synthetic/nope'],
       "dataset 'mofa_synthetic/nope' not found"),
  ]
  for flags, message in cases:
    result = run_mofa('train', *flags, f'--workdir={workdir}')
    assert result.returncode != 0, flags
    assert message in result.stderr, (flags, result.stderr)
    assert 'Traceback' not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not workdir.exists()


def test_prepare_with_nothing_accepted_names_the_report(tmp_path):
  inputs = tmp_path / 'inputs'
  inputs.mkdir()
  (inputs / 'clip.mp4').write_bytes(b'not a video')
  image_io.save_image(str(inputs / 'grey.png'), np.full((64, 64, 3), 0.5))
  (inputs / 'list.txt').write_bytes(b'\xff\xfe\x00bad')
  result = run_mofa('prepare', f'--input={inputs}',
                    f'--input={inputs / "list.txt"}',
                    f'--output={tmp_path / "prepared"}')
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert 'no face was accepted' in result.stderr
  assert 'clip.mp4: unreadable video' in result.stderr
  assert 'list.txt: not a readable UTF-8 list' in result.stderr
  assert str(tmp_path / 'prepared' / 'report.json') in result.stderr
  report = json.loads((tmp_path / 'prepared' / 'report.json').read_text())
  assert report['faces']['train'] == 0 and report['rejected'] == 1


@pytest.mark.heavy
def test_an_8000_by_6000_photo_fits_in_bounded_memory(tmp_path):
  import PIL.Image  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'large.jpg'
  photo = PIL.Image.open(TAKEO).convert('RGB')
  canvas = PIL.Image.new('RGB', (8000, 6000), (90, 100, 110))
  canvas.paste(photo.resize((photo.width * 10, photo.height * 10)),
               (3000, 200))
  canvas.save(path, quality=85)
  del photo, canvas
  # VmHWM is this process image's own peak (ru_maxrss would carry over the
  # pytest worker's across exec).
  script = ('import sys\n'
            'from mofa_ml import cli\n'
            'try:\n'
            '  status = cli.main(sys.argv)\n'
            'finally:\n'
            '  peak = [line for line in open("/proc/self/status")'
            ' if line.startswith("VmHWM")][0].split()[1]\n'
            '  print("peak_mb", int(peak) // 1024, file=sys.stderr)\n')
  environment = dict(os.environ,
                     MOFA_COMPILATION_CACHE=str(tmp_path / 'cache'))

  def peak_mb(photo, output):
    result = subprocess.run(
        [sys.executable, '-c', script, 'reconstruct', f'--input={photo}',
         f'--output={output}', '--fit_steps=4,10'], capture_output=True,
        text=True, timeout=900, env=environment)
    assert result.returncode == 0, result.stderr
    return int(result.stderr.split('peak_mb')[1].split()[0])

  # The first run compiles the fit (and fills the cache); the photo's own
  # cost is the difference between the two warm runs.
  peak_mb(TAKEO, tmp_path / 'warm')
  small = peak_mb(TAKEO, tmp_path / 'small')
  large = peak_mb(path, tmp_path / 'out')
  # Measured: 1,167 MB small, 1,524 MB for 8000 x 6000 (3.6 GB before the
  # reliability issue); with the Levenberg-Marquardt fitter and its shading
  # Jacobian the process itself grew: 1,311 / 1,709 MB (the photo's own cost
  # about 400 MB: the photo and one overlay, each 144 MB, and the encoder).
  # The photo's own cost is what must stay bounded; the process's total
  # (1,391 / 1,814 MB in a loaded heavy run, under 1,800 alone) is a
  # memory figure for the benchmarks, not a test.
  assert large - small < 600, (small, large)
  overlay = image_io.load_photo(str(tmp_path / 'out' / 'large' /
                                    'overlay.png'))
  assert overlay.shape == (6000, 8000, 3)  # the photo's own resolution


def test_an_earlier_runs_results_inside_the_input_are_not_inputs(tmp_path):
  photos = _photos(tmp_path / 'photos', ['face.jpg'])
  earlier = photos / 'out' / 'face'
  earlier.mkdir(parents=True)
  shutil.copy(TAKEO, earlier / 'overlay.jpg')
  jobs = reconstruct.resolve_inputs([str(photos)], str(photos / 'out')).jobs
  assert [job.name for job in jobs] == ['face']
  # Without the output named, the earlier overlay is a photo like any other;
  # so is a file inside the output folder named as an input itself.
  assert len(reconstruct.resolve_inputs([str(photos)]).jobs) == 2
  named = str(earlier / 'overlay.jpg')
  assert len(reconstruct.resolve_inputs([named],
                                        str(photos / 'out')).jobs) == 1
