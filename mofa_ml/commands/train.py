"""`mofa train`: the two-stage training job.

    mofa train --config=experiments/configs/smoke.py --workdir=/tmp/smoke
    mofa train --config=experiments/configs/paper_stage1.py \
        --config.dataset=mofa_faces/celeba --workdir=runs/stage1

Any config field can be overridden on the command line
(`--config.batch_size=10`). Rerunning with the same workdir resumes.
"""

import os
import sys

from absl import app
from absl import flags
import jax
import ml_collections
from ml_collections import config_flags

from mofa_ml import cli
from mofa_ml.learning import configs
from mofa_ml.learning import train

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Training configuration file (experiments/configs).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Folder for checkpoints and TensorBoard logs.')
_STOP_AT = flags.DEFINE_integer(
    'stop_at', None, 'Stop after this step (resume later with the same '
    'workdir).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Multi-host run: call jax.distributed.initialize() '
    'first (coordinator from the cluster environment).')
flags.mark_flags_as_required(['config', 'workdir'])


def _config() -> ml_collections.ConfigDict:
  """--config, or one line saying what is wrong with it."""
  path = config_flags.get_config_filename(flags.FLAGS['config'])
  if not os.path.isfile(path.partition(':')[0]):
    raise SystemExit(f'mofa train: config file not found: {path}')
  try:
    return _CONFIG.value
  except Exception as e:  # pylint: disable=broad-except
    # The config file's own code failed: its message, in one line.
    raise SystemExit(f'mofa train: config {path}: {cli.one_line(e)}'
                     ) from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  config = _config()
  try:
    configs.check_config(config)
  except ValueError as e:
    raise SystemExit(f'mofa train: {e}') from None
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  print(f'devices: {jax.devices()}')
  try:
    train.train(config, _WORKDIR.value, _STOP_AT.value)
  except train.Stopped as e:
    print(f'mofa train: {e}', file=sys.stderr)
    sys.exit(128 + e.signal_number)
  except ValueError as e:
    raise SystemExit(f'mofa train: {e}') from None
