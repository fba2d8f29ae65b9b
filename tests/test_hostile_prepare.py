"""`mofa prepare` and the --input walker, given hostile inputs: link loops,
links to the folder itself, unreadable folders, files of no usable type,
bad annotations and photos no face fits in; bad flags and outputs."""

import json
import os
import shutil

import numpy as np
import PIL.Image
import pytest

from mofa_ml import samples
from mofa_ml.data import inputs
import cli_harness


def _touch(path):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b'')
  return path


def test_link_loops_are_walked_once(tmp_path):
  # `a/loop -> ..` made the recursive glob walk for ever; `self -> .` made
  # it list every photo again under self/, self/self/, ... (41 times).
  _touch(tmp_path / 'd' / 'x.jpg')
  _touch(tmp_path / 'd' / 'a' / 'y.png')
  os.symlink('..', tmp_path / 'd' / 'a' / 'loop')
  os.symlink('.', tmp_path / 'd' / 'self')
  os.symlink('x.jpg', tmp_path / 'd' / 'also_x.jpg')
  os.symlink('a', tmp_path / 'd' / 'b')
  os.link(tmp_path / 'd' / 'x.jpg', tmp_path / 'd' / 'hard_x.jpg')
  items, problems = inputs.list_inputs(
      [str(tmp_path / 'd'), str(tmp_path / 'd' / 'a' / 'y.png'),
       str(tmp_path / 'd' / 'self' / 'x.jpg')], frame_step=1)
  # Each real photo once, under the name that goes through no link.
  assert [item.source for item in items] == [
      str(tmp_path / 'd' / 'a' / 'y.png'),
      str(tmp_path / 'd' / 'hard_x.jpg')]
  assert not problems


def test_a_list_that_names_itself_is_read_once(tmp_path):
  _touch(tmp_path / 'p.jpg')
  (tmp_path / 'list.txt').write_text('list.txt\np.jpg\np.jpg\n')
  items, problems = inputs.list_inputs([str(tmp_path / 'list.txt')], 1)
  assert [item.source for item in items] == [str(tmp_path / 'p.jpg')]
  assert not problems


def test_unreadable_and_unusable_folders_are_problems(tmp_path, monkeypatch):
  for name in ('a.avif', 'b.gif', 'c.HEIC'):
    _touch(tmp_path / 'odd' / name)
  _touch(tmp_path / 'mixed' / 'ok.jpg')
  (tmp_path / 'mixed' / 'locked').mkdir()
  locked = str(tmp_path / 'mixed' / 'locked')
  scandir = os.scandir

  def refusing(path):  # chmod 000 means nothing to root: refuse by hand
    if os.fspath(path) == locked:
      raise PermissionError(13, 'Permission denied', locked)
    return scandir(path)

  monkeypatch.setattr(inputs.os, 'scandir', refusing)
  items, problems = inputs.list_inputs(
      [str(tmp_path / 'odd'), str(tmp_path / 'mixed'), ''], 1)
  assert [item.source for item in items] == [str(tmp_path / 'mixed' /
                                                  'ok.jpg')]
  assert problems == [
      f'{tmp_path}/odd: only .avif, .gif, .heic files (supported: .jpg, '
      '.jpeg, .png, .ppm, .pgm, .bmp, .webp, .tif, .tiff, .mp4, .avi, .mov, '
      '.mkv, .webm, .m4v)',
      f'{locked}: unreadable folder (Permission denied)',
      '--input is empty; name a photo, folder, video or list']


@pytest.fixture(name='photos', scope='module')
def _photos(tmp_path_factory):
  """Two annotated faces, each hostile item beside them, and link loops."""
  folder = tmp_path_factory.mktemp('photos')
  faces = samples.sample_faces()
  for name, sample in (('a', 'einstein'), ('b', 'takeo')):
    PIL.Image.open(faces[sample].image_path).convert('RGB').save(
        folder / f'{name}.webp' if name == 'b' else folder / f'{name}.jpg')
    shutil.copy(faces[sample].landmarks_path, folder / f'{name}.pts')
  for name, size in (('thin', (20000, 1)), ('tall', (1, 20000))):
    PIL.Image.new('RGB', size).save(folder / f'{name}.png')
  shutil.copy(folder / 'a.jpg', folder / 'c.jpg')
  (folder / 'c.ljson').write_text('{"version": 2}')  # no landmarks
  shutil.copy(folder / 'a.jpg', folder / 'd.jpg')
  (folder / 'd.pts').write_text('version: 1\nn_points: 68\n{\n' +
                                '5 5\n' * 68 + '}\n')  # one point, 68 times
  os.symlink('.', folder / 'self')
  (folder / 'sub').mkdir()
  os.symlink('..', folder / 'sub' / 'loop')
  return folder


def test_each_bad_item_is_rejected_alone(photos, tmp_path, capfd):
  output = tmp_path / 'out'
  result = cli_harness.run('prepare', f'--input={photos}',
                           f'--output={output}', '--validation_fraction=0')
  assert result.code == 0, result
  assert result.stdout.splitlines() == [
      f'mofa_faces/faces: 2 train and 0 validation faces in {output}/tfds',
      'rejected 4: 2 bad annotation, 2 too small to hold a face',
      f'details: {output}/report.json']
  report = json.loads((output / 'report.json').read_text())
  assert report['rejects'] == {
      f'{photos}/c.jpg': f'bad annotation ({photos}/c.ljson: not a menpo '
                         'landmark file with landmarks.points (KeyError: '
                         "'landmarks'))",
      f'{photos}/d.jpg': f'bad annotation ({photos}/d.jpg: degenerate '
                         'landmarks (they span 0.0 x 0.0 px))',
      f'{photos}/tall.png': 'too small to hold a face (1 x 20000 px)',
      f'{photos}/thin.png': 'too small to hold a face (20000 x 1 px)'}
  assert report['faces'] == {'train': 2, 'validation': 0}  # not 41 copies
  err = result.stderr + capfd.readouterr().err
  assert 'Traceback' not in err
  assert 'Variant folder' not in err and 'dataset_info' not in err


PREPARE_REFUSALS = [
    # (flags, the line, status); {in} is the photos, {tmp} a fresh folder.
    (['--input={in}', '--output={tmp}/out', '--shard_size=0'],
     'mofa prepare: --shard_size must be at least 1, got 0', 2),
    (['--input={in}', '--output={tmp}/out', '--frame_step=0'],
     'mofa prepare: --frame_step must be at least 1, got 0', 2),
    (['--input={in}', '--output={tmp}/out', '--validation_fraction=1'],
     'mofa prepare: --validation_fraction must be at least 0 and below 1', 2),
    (['--input=', '--output={tmp}/out'],
     'mofa prepare: --input is empty; name a photo, folder, video or list', 2),
    (['--input={in}', '--output='], 'mofa prepare: --output is empty', 2),
    (['--input={in}', '--output={tmp}/file'],
     'mofa prepare: --output {tmp}/file is a file; name a folder', 1),
    (['--input={in}', '--output={tmp}/file/out'],
     'mofa prepare: --output {tmp}/file/out: {tmp}/file is a file, not a '
     'folder', 1),
    (['--input={tmp}/odd', '--output={tmp}/out'],
     'mofa prepare: no images or videos found in {tmp}/odd ({tmp}/odd: only '
     '.gif files (supported: .jpg', 1),
    (['--input={tmp}/loops', '--output={tmp}/out'],
     'mofa prepare: no images or videos found in {tmp}/loops ({tmp}/loops: '
     'no files)', 1),
    (['--input={in}', '--output={tmp}/out', 'extra'],
     'mofa prepare: unexpected arguments: extra', 2),
]


@pytest.mark.parametrize('flags,line,code', PREPARE_REFUSALS)
def test_prepare_refuses_before_any_work(photos, tmp_path, flags, line,
                                         code):
  (tmp_path / 'file').write_text('')
  _touch(tmp_path / 'odd' / 'x.gif')
  (tmp_path / 'loops' / 'a').mkdir(parents=True)
  os.symlink('..', tmp_path / 'loops' / 'a' / 'loop')
  fill = lambda text: text.format(**{'in': photos, 'tmp': tmp_path})
  before = sorted(os.listdir(tmp_path))
  result = cli_harness.run('prepare', *map(fill, flags))
  text = cli_harness.assert_one_line_failure(result, fill(line))
  assert result.code == code
  assert len(text.splitlines()) == (2 if code == 2 else 1), text
  assert sorted(os.listdir(tmp_path)) == before  # no output folder made


def test_ctrl_c_leaves_whole_shards_and_no_dataset(tmp_path):
  # Before: a KeyboardInterrupt traceback.
  photos = tmp_path / 'photos'
  photos.mkdir()
  for k in range(6):  # no .pts beside them: each face is detected (0.4 s)
    shutil.copy(samples.sample_faces()['einstein'].image_path,
                photos / f'{k}.jpg')
  output = tmp_path / 'out'
  result = cli_harness.interrupted('prepare', f'--input={photos}',
                                   f'--output={output}', '--shard_size=1',
                                   after='| 1/6 [')
  cli_harness.assert_stopped_by_ctrl_c(result, 'prepare')
  shards = sorted(os.listdir(output / 'shards'))
  assert 'shard-00000.npz' in shards and len(shards) < 12, shards
  for name in shards:  # each whole; a rerun resumes after them
    if name.endswith('.npz'):
      with np.load(output / 'shards' / name) as shard:
        assert len(shard['image']) == 1
  assert sorted(os.listdir(output)) == ['manifest.json', 'shards']
  assert not [name for name in shards if name.startswith('.')]


def test_a_damaged_manifest_is_named(photos, tmp_path):
  output = tmp_path / 'out'
  output.mkdir()
  (output / 'manifest.json').write_text('{"dig')
  result = cli_harness.run('prepare', f'--input={photos}',
                           f'--output={output}')
  cli_harness.assert_one_line_failure(
      result, f'mofa prepare: {output}/manifest.json is damaged')


def test_thin_images_never_reach_opencv():
  from mofa_ml.data import prepare  # pylint: disable=g-import-not-at-top
  image = np.zeros((1, 20000, 3), np.uint8)
  faces, reason = prepare.faces_of(inputs.Item('thin.png'), image, None,
                                   prepare.PrepareOptions())
  assert faces == [] and reason == 'too small to hold a face (20000 x 1 px)'


def test_an_unexpected_error_costs_one_item(photos, monkeypatch):
  from mofa_ml.data import prepare  # pylint: disable=g-import-not-at-top
  crop_row = prepare._crop_row  # pylint: disable=protected-access
  calls = []

  def failing_once(*args):
    calls.append(1)
    if len(calls) == 1:
      raise RuntimeError('OpenCV refused it')
    return crop_row(*args)

  monkeypatch.setattr(prepare, '_crop_row', failing_once)
  items = [inputs.Item(str(photos / 'a.jpg')),
           inputs.Item(str(photos / 'b.webp'))]
  arrays, rejects = prepare._process_shard(  # pylint: disable=protected-access
      items, None, prepare.PrepareOptions())
  assert rejects == {str(photos / 'a.jpg'):
                     'failed (RuntimeError: OpenCV refused it)'}
  assert list(arrays['source']) == [str(photos / 'b.webp')]
