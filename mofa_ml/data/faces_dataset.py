"""TFDS builder `mofa_faces`: real photos prepared by `mofa prepare`.

The builder reads the crop shards that `prepare` writes (its manual folder)
and stores them as an ArrayRecord TFDS dataset named `mofa_faces/<name>`,
read by `input_pipeline.load_source` like the synthetic corpus. Users do not
call it directly: `mofa prepare` runs both steps.
"""

import contextlib
import glob
import io
import logging
import os

import numpy as np
import tensorflow_datasets as tfds

from mofa_ml.data import crop
from mofa_ml.facemodel import landmarks as lm

SHARD_PATTERN = 'shard-*.npz'
# What TFDS says, as warnings, about every dataset it builds or opens.
ROUTINE_TFDS_WARNINGS = ('has no dataset_info.json',
                         'Using custom data configuration')


class _DropRoutine(logging.Filter):

  def filter(self, record: logging.LogRecord) -> bool:
    return not any(text in record.getMessage()
                   for text in ROUTINE_TFDS_WARNINGS)


@contextlib.contextmanager
def quiet_tfds():
  """Without TFDS's routine warnings and its 'Downloading and preparing'
  lines (stdout): a successful `mofa prepare` prints only its own."""
  routine = _DropRoutine()
  logger = logging.getLogger('absl')  # where absl.logging (TFDS's) goes
  logger.addFilter(routine)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    logger.removeFilter(routine)


def training_features(size: int):
  """The fields every training corpus has (see input_pipeline)."""
  return {
      'image': tfds.features.Tensor(shape=(size, size, 3), dtype=np.uint8,
                                    encoding='zlib'),
      'landmarks': tfds.features.Tensor(shape=(lm.NUM_LANDMARKS, 2),
                                        dtype=np.float32),
      'landmark_confidence': tfds.features.Tensor(shape=(lm.NUM_LANDMARKS,),
                                                  dtype=np.float32),
  }


class MofaFaces(tfds.core.GeneratorBasedBuilder):
  """Tight 240 x 240 face crops with 68 landmarks and their confidences."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Run `mofa prepare --input=<photos> --output=<folder> --name=<name>`; '
      'it prepares the crops and builds this dataset.')

  def __init__(self, *args, **kwargs):
    super().__init__(*args, file_format='array_record', **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    size = crop.CROP_SIZE
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            **training_features(size),
            'crop_transform': tfds.features.Tensor(shape=(2, 3),
                                                   dtype=np.float32),
            'source': tfds.features.Text(),
            'frame': tfds.features.Scalar(dtype=np.int32),
        }),
    )

  def _split_generators(self, dl_manager):
    shards = sorted(glob.glob(os.path.join(dl_manager.manual_dir,
                                           SHARD_PATTERN)))
    if not shards:
      raise ValueError(f'no prepared shards in {dl_manager.manual_dir}')
    present = set()
    for path in shards:
      with np.load(path, allow_pickle=False) as shard:
        present.update(str(split) for split in shard['split'])
    # TFDS refuses empty splits: a tiny corpus may have no validation faces.
    return {split: self._generate_examples(shards, split)
            for split in ('train', 'validation') if split in present}

  def _generate_examples(self, shards, split):
    for path in shards:
      with np.load(path, allow_pickle=False) as shard:
        for index in np.flatnonzero(shard['split'] == split):
          key = f'{os.path.basename(path)}:{index}'
          yield key, {
              'image': shard['image'][index],
              'landmarks': shard['landmarks'][index],
              'landmark_confidence': shard['landmark_confidence'][index],
              'crop_transform': shard['crop_transform'][index].astype(
                  np.float32),
              'source': str(shard['source'][index]),
              'frame': int(shard['frame'][index]),
          }


def build(data_dir: str, name: str, shard_dir: str):
  """Builds `mofa_faces/<name>` in `data_dir` from the shards, quietly."""
  with quiet_tfds():
    builder = MofaFaces(data_dir=data_dir,
                        config=tfds.core.BuilderConfig(name=name))
    if not builder.is_prepared():
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=shard_dir))
