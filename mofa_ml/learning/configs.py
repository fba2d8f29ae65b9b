"""Training configs: loading a config file, checking one before any work.

Configs themselves are `ml_collections` files in experiments/configs
(`default.py` and the files that start from it).
"""

import importlib.util
import os

import ml_collections
import numpy as np

from mofa_ml.data import input_pipeline
from mofa_ml.learning import objective

STAGES = objective.STAGES


def load_config(spec: str) -> ml_collections.ConfigDict:
  """A config file's `get_config()`, from 'path' or 'path:argument' (what
  `--config` takes; for notebooks and scripts without absl flags).

  Raises:
    ValueError: the file does not exist.
  """
  path, _, argument = spec.partition(':')
  if not os.path.isfile(path):
    raise ValueError(f'config file not found: {path}')
  module_spec = importlib.util.spec_from_file_location(
      f'mofa_config_{os.path.splitext(os.path.basename(path))[0]}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(argument) if argument else module.get_config()


def check_config(config: ml_collections.ConfigDict):
  """Refuses, before any work, a config that cannot run.

  Raises:
    ValueError: naming the field and what is wrong with it.
  """
  def positive(name, value):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f'config.{name} must be a positive integer, got '
                       f'{value!r}')
  for name in ('batch_size', 'image_size', 'log_every', 'image_every',
               'checkpoint_every', 'keep_checkpoints', 'num_data_threads'):
    positive(name, config[name])
  positive('model.num_correctives', config.model.num_correctives + 1)
  for stage in STAGES:
    if config[stage].steps < 0:
      raise ValueError(f'config.{stage}.steps must not be negative')
    for group in ('base', 'geometry', 'reflectance'):
      rate = config[stage][f'learning_rate_{group}']
      if rate < 0:
        raise ValueError(f'config.{stage}.learning_rate_{group} must not be '
                         f'negative, got {rate}')
    unknown = set(config[stage].loss) - set(objective.weight_names())
    if unknown:
      raise ValueError(f'config.{stage}.loss has unknown weights '
                       f'{", ".join(sorted(unknown))} (the loss table has '
                       f'{", ".join(objective.weight_names())})')
  if config.optimizer.name not in ('adadelta', 'adam'):
    raise ValueError(f'config.optimizer.name is adadelta or adam, not '
                     f'{config.optimizer.name!r}')
  input_pipeline.dataset_builder(config.dataset, config.data_dir or None)
