"""Writes a training run's network as a weights file (what a package ships).

    python -m mofa_ml.learning.export_weights --workdir=runs/light \\
        --output=light.npz

The file holds the newest checkpoint's parameters in float16, the run's
config and the face model's fingerprint; `mofa reconstruct
--checkpoint=light.npz` and `Regressor.load` read it like the workdir.
"""

import sys

from absl import app
from absl import flags

from mofa_ml.learning import regressor

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    network = regressor.Regressor.load(FLAGS.workdir)
    network.save_weights(FLAGS.output, overwrite=FLAGS.overwrite)
  except (ValueError, OSError) as e:
    sys.exit(f'export_weights: {e}')
  print(f'wrote {FLAGS.output}')


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'Training workdir (or checkpoints/).',
                      required=True)
  flags.DEFINE_string('output', None, 'Weights file to write (.npz).',
                      required=True)
  flags.DEFINE_bool('overwrite', False, 'Replace --output.')
  # absl's INFO lines (orbax logs each read) only at --verbosity=0.
  app.run(main, argv=[sys.argv[0], '--verbosity=-1'] + sys.argv[1:])
