"""The training input pipeline: TFDS ArrayRecord source -> grain -> device.

Batch `s` is a pure function of (dataset, seed, s): a seeded shuffle of the
repeated source, batched with `drop_remainder`. Resuming at step s therefore
reads exactly the batches an uninterrupted run would have read. Images stay
uint8 on the host and cross to the device at a quarter of float32's size;
`train` converts them on the device.
"""

from typing import Dict, Iterator, Optional

import grain
import numpy as np
import tensorflow_datasets as tfds

from mofa_ml.data import synthetic_dataset  # pylint: disable=unused-import

TRAINING_FIELDS = ('image', 'landmarks', 'landmark_confidence')


def dataset_builder(name: str, data_dir: Optional[str] = None):
  """The TFDS builder of a dataset name, without preparing anything.

  Raises:
    ValueError: unknown dataset or config, named with what exists.
  """
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    # TFDS's own message lists its whole catalogue; name ours instead.
    raise ValueError(f'unknown dataset {name!r} (this package provides '
                     'mofa_synthetic/<config> and mofa_faces/<name>)'
                     ) from None
  except ValueError as e:
    if 'BuilderConfig' not in str(e):
      raise
    folder = data_dir or 'the TFDS default folder'
    raise ValueError(
        f'dataset {name!r} not found in {folder} (mofa_faces/<name> lives in '
        'the <output>/tfds folder of `mofa prepare`; mofa_synthetic has tiny, '
        'smoke, benchmark and default)') from None


# The splits this package's datasets have (a prepared set of photos may
# lack 'test' or 'validation': checked against the built set).
SPLITS = ('train', 'validation', 'test')


def load_source(name: str, split: str, data_dir: Optional[str] = None,
                prepare: bool = True):
  """A random-access TFDS data source, prepared on first use if asked.

  Args:
    name: TFDS name with config, e.g. 'mofa_synthetic/smoke'.
    split: 'train', 'validation' or 'test'.
    data_dir: TFDS data folder (default: TFDS's).
    prepare: generate the dataset if it is not there yet (the synthetic
      corpus builds itself; real-photo builders need their manual folder).

  Raises:
    ValueError: unknown dataset or split, or not prepared and not asked to.
  """
  if split not in SPLITS:  # checked before minutes of preparing
    raise ValueError(f'dataset {name!r} has no split {split!r}; splits are '
                     f'{", ".join(SPLITS)}')
  builder = dataset_builder(name, data_dir)
  if not builder.is_prepared():
    if not prepare:
      raise ValueError(f'dataset {name!r} is not prepared in '
                       f'{builder.data_dir}')
    builder.download_and_prepare()
  if split not in builder.info.splits:
    raise ValueError(f'dataset {name!r} has no split {split!r}; it has '
                     f'{", ".join(builder.info.splits)}')
  return builder.as_data_source(split=split)


def _training_fields(example: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  return {key: np.asarray(example[key]) for key in TRAINING_FIELDS}


def training_batches(source, batch_size: int, seed: int,
                     start_step: int = 0, num_threads: int = 4,
                     prefetch: int = 8) -> Iterator[Dict[str, np.ndarray]]:
  """Endless shuffled batches, starting at batch `start_step`.

  Returns:
    iterator of dicts: 'image' (B, H, W, 3) uint8, 'landmarks' (B, 68, 2)
    float32 pixels, 'landmark_confidence' (B, 68) float32.
  """
  if len(source) < batch_size:
    raise ValueError(f'the dataset has {len(source)} examples, fewer than '
                     f'one batch of {batch_size}')
  dataset = (grain.MapDataset.source(source).seed(seed).shuffle().repeat()
             .map(_training_fields).batch(batch_size, drop_remainder=True))
  dataset = dataset[start_step:]
  return iter(dataset.to_iter_dataset(grain.ReadOptions(
      num_threads=num_threads, prefetch_buffer_size=prefetch)))


def evaluation_batches(source, batch_size: int
                       ) -> Iterator[Dict[str, np.ndarray]]:
  """Every example once, in order, in batches (the last may be short)."""
  dataset = grain.MapDataset.source(source).batch(batch_size)
  return iter(dataset.to_iter_dataset())
