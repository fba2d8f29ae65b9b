"""`mofa prepare`: photos, folders or videos -> a training dataset.

    mofa prepare --input=~/data/celeba/img_align_celeba --output=~/data/celeba_mofa \
        --name=celeba
    mofa train --config=paper_stage1 \
        --config.dataset=mofa_faces/celeba \
        --config.data_dir=~/data/celeba_mofa/tfds --workdir=runs/stage1

Faces are found with dlib (or read from .pts / .ljson files beside the
photos), cropped to 240 x 240 around the 68 landmarks and stored as the
TFDS dataset mofa_faces/<name>. Rerunning the same command resumes; nothing
is written next to the inputs.
"""

from absl import app
from absl import flags

from mofa_ml.data import prepare

_INPUT = flags.DEFINE_multi_string(
    'input', None, 'Folder (searched recursively), image, video, or .txt '
    'list of paths; repeat the flag for several.')
_OUTPUT = flags.DEFINE_string('output', None, 'Folder for the prepared data.')
_NAME = flags.DEFINE_string('name', 'faces',
                            'Dataset name: mofa_faces/<name>.')
_FRAME_STEP = flags.DEFINE_integer('frame_step', 10,
                                   'Use every n-th frame of videos.')
_SHARD_SIZE = flags.DEFINE_integer('shard_size', 256,
                                   'Images per shard (the unit of resume).')
_VALIDATION = flags.DEFINE_float('validation_fraction', 0.02,
                                 'Share of sources in the validation split.')
_MIN_CONFIDENCE = flags.DEFINE_float(
    'min_confidence', 0.32, 'Drop faces whose mean landmark confidence '
    '(mirror-fit agreement, 0..1) is lower.')
_MIN_EYES = flags.DEFINE_float('min_eye_distance_px', 20.0,
                               'Drop faces smaller than this.')
_ALL_FACES = flags.DEFINE_bool('all_faces', False,
                               'Keep every face of a photo, not the largest.')
_WORKERS = flags.DEFINE_integer('num_workers', 1,
                                'Processes preparing shards in parallel.')
_PART = flags.DEFINE_string(
    'part', '0/1', 'i/n: prepare only every n-th shard starting at i, to '
    'spread one preparation over machines sharing --output; the last part '
    'to finish (or a final plain run) builds the dataset.')
flags.mark_flags_as_required(['input', 'output'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  # TFDS draws its own progress bars; ours is enough.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  try:
    part_index, part_count = (int(v) for v in _PART.value.split('/'))
  except ValueError:
    part_index, part_count = -1, 0
  if not 0 <= part_index < part_count:
    raise app.UsageError(f'--part must be i/n with 0 <= i < n, got '
                         f'{_PART.value}')
  for flag in (_FRAME_STEP, _SHARD_SIZE, _WORKERS):
    if flag.value < 1:
      raise app.UsageError(f'--{flag.name} must be at least 1, got '
                           f'{flag.value}')
  if not 0.0 <= _VALIDATION.value < 1.0:
    raise app.UsageError('--validation_fraction must be at least 0 and '
                         f'below 1, got {_VALIDATION.value}')
  if not _OUTPUT.value.strip():
    raise app.UsageError('--output is empty; name a folder')
  if not all(entry.strip() for entry in _INPUT.value):
    raise app.UsageError('--input is empty; name a photo, folder, video or '
                         'list')
  options = prepare.PrepareOptions(
      name=_NAME.value, frame_step=_FRAME_STEP.value,
      shard_size=_SHARD_SIZE.value, validation_fraction=_VALIDATION.value,
      min_confidence=_MIN_CONFIDENCE.value,
      min_eye_distance_px=_MIN_EYES.value, all_faces=_ALL_FACES.value,
      num_workers=_WORKERS.value, part_index=part_index,
      part_count=part_count)
  try:
    report = prepare.prepare(_INPUT.value, _OUTPUT.value, options)
  except (ValueError, ImportError, OSError) as e:
    raise SystemExit(f'mofa prepare: {e}') from None
  if report['dataset'] is None:
    print(f'part {_PART.value} done; {report["shards_missing"]} of '
          f'{report["shards"]} shards are still to be prepared by other '
          'parts')
    return
  faces = report['faces']
  print(f'{report["dataset"]}: {faces["train"]} train and '
        f'{faces["validation"]} validation faces in {report["data_dir"]}')
  if report['rejected']:
    print(f'rejected {report["rejected"]}: ' + ', '.join(
        f'{count} {reason}' for reason, count in
        report['rejected_by_reason'].items()))
  for problem in report['input_problems']:
    print(f'skipped: {problem}')
  print(f'details: {_OUTPUT.value}/report.json')
