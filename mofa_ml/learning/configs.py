"""Training configs: choosing one by name or path, checking it before work.

Configs themselves are `ml_collections` files: the packaged ones in
mofa_ml/configs (`default` and the configs that start from it), chosen by
name, or a file of your own, chosen by path.
"""

import importlib.util
import os
import pkgutil

import ml_collections
import numpy as np

from mofa_ml import configs as packaged
from mofa_ml.data import on_device
from mofa_ml.learning import objective
from mofa_ml.learning import supervision

STAGES = objective.STAGES


def names() -> tuple[str, ...]:
  """The packaged configs' names (the modules of mofa_ml/configs), sorted."""
  return tuple(sorted(module.name for module in
                      pkgutil.iter_modules(packaged.__path__)))


def resolve(spec: str) -> str:
  """'name[:argument]' or 'path.py[:argument]' -> 'path.py[:argument]'.

  A spec whose file part ends in .py or holds a folder is a path (relative
  to the working directory); anything else is a packaged config's name, so
  `smoke` never picks up a smoke.py that happens to be in the working
  directory.

  Raises:
    ValueError: an unknown name (the message lists the names) or a path that
      is not a file.
  """
  name, colon, argument = spec.partition(':')
  if name.endswith('.py') or os.path.basename(name) != name:
    if not os.path.isfile(name):
      raise ValueError(f'config file not found: {name}')
    return spec
  if name not in names():
    raise ValueError(f'unknown config {name!r}: choose one of '
                     f'{", ".join(names())} or give a path to a .py file')
  path = os.path.join(os.path.dirname(packaged.__file__), f'{name}.py')
  return path + colon + argument


def load_config(spec: str) -> ml_collections.ConfigDict:
  """A config's `get_config()`, from 'name', 'path' or either with
  ':argument' (what `mofa train --config` takes; for notebooks and scripts
  without absl flags): `load_config('synthetic:light')`.

  Raises:
    ValueError: see `resolve`.
  """
  path, _, argument = resolve(spec).partition(':')
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
    supervised = config[stage].get('supervision', {})
    unknown = set(supervised) - set(supervision.TERMS)
    if unknown:
      raise ValueError(f'config.{stage}.supervision has unknown terms '
                       f'{", ".join(sorted(unknown))} (there are '
                       f'{", ".join(supervision.TERMS)})')
    if config.dataset != on_device.DATASET and any(supervised.values()):
      raise ValueError(f'config.{stage}.supervision needs the truth of '
                       f"on-device data (config.dataset = "
                       f"'{on_device.DATASET}'), not {config.dataset}")
  if config.optimizer.name not in ('adadelta', 'adam'):
    raise ValueError(f'config.optimizer.name is adadelta or adam, not '
                     f'{config.optimizer.name!r}')
  datasets = [config.dataset]
  if config.dataset == on_device.DATASET:
    on_device.Distribution.from_config(config)
    datasets = [config.real_dataset] if config.get('real_dataset') else []
    if datasets:
      positive('real_every', config.real_every)
  if not datasets:
    return
  # Imported here: the on-device path runs without TFDS and grain.
  from mofa_ml.data import input_pipeline  # pylint: disable=g-import-not-at-top
  for name in datasets:
    builder = input_pipeline.dataset_builder(name, config.data_dir or None)
    size = builder.info.features['image'].shape[0]
    if size != config.image_size:
      raise ValueError(f'dataset {name} holds {size} px crops, the config '
                       f'trains on {config.image_size} px')
