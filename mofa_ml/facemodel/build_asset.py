"""Rebuilds the derived asset of the bundled ICT front-face model.

    python -m mofa_ml.facemodel.build_asset [--output=PATH]

Maintainers run this after changing the model derivation; the test suite
checks that the shipped asset matches a fresh rebuild.
"""

import os

from absl import app
from absl import flags
import numpy as np

from mofa_ml.facemodel import ict

_OUTPUT = flags.DEFINE_string(
    'output', None,
    "Where to write the asset; default: the package's assets folder.")


def main(argv):
  del argv
  derived = ict.build_derived(ict.load_source())
  output = _OUTPUT.value or ict.asset_path(ict.DERIVED)
  partial = output + '.partial.npz'
  np.savez_compressed(partial, **derived)
  os.replace(partial, output)
  print(f'wrote {output}: identity keeps '
        f'{100 * derived["identity_variance_retained"]:.2f}% of the variance, '
        f'expression {100 * derived["expression_variance_retained"]:.2f}%')


if __name__ == '__main__':
  app.run(main)
