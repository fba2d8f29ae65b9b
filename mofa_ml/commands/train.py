"""`mofa train`: the two-stage training job.

    mofa train --config=smoke --workdir=/tmp/smoke
    mofa train --config=paper_stage1 \
        --config.dataset=mofa_faces/celeba --workdir=runs/stage1
    mofa train --config=path/to/my_config.py:argument --workdir=...

--config takes a packaged config's name (the modules of mofa_ml/configs,
listed under --config below) or a config file's path, either with an
optional `:argument` for its get_config. Any config field can
be overridden on the command line (`--config.batch_size=10`). Rerunning with
the same workdir resumes.
"""

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
    'config', None, 'Training config: a packaged one by name '
    f'({", ".join(configs.names())}) or a path to a .py file, either '
    'optionally with :argument (synthetic:light).')
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Folder for checkpoints and TensorBoard logs.')
_STOP_AT = flags.DEFINE_integer(
    'stop_at', None, 'Stop after this step (resume later with the same '
    'workdir).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Multi-host run: call jax.distributed.initialize() '
    'first (coordinator from the cluster environment).')
flags.mark_flags_as_required(['config', 'workdir'])


class _ConfigParser(flags.ArgumentParser):
  """--config's value: a packaged config's name or a file's path.

  absl's own parser takes paths only, and reports a config that fails as
  'FATAL Flags parsing error' with the config code's traceback; this one
  loads what `configs.load_config` loads and ends a failure with one line.
  ml_collections' flag still applies the `--config.<field>` overrides.
  """

  def parse(self, argument):
    try:
      configs.resolve(argument)
    except ValueError as e:
      raise SystemExit(f'mofa train: {e}') from None
    try:
      config = configs.load_config(argument)
    except Exception as e:  # pylint: disable=broad-except
      # The config file's own code failed: its message, in one line.
      raise SystemExit(f'mofa train: config {argument}: {cli.one_line(e)}'
                       ) from None
    if isinstance(config, ml_collections.ConfigDict):
      config.lock()  # an override of a field it lacks is refused, not added
    return config

  def flag_type(self):
    return 'config object'


flags.FLAGS['config'].parser = _ConfigParser()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  config = _CONFIG.value
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
