"""Rebuilds the derived asset of the bundled ICT front-face model.

    python -m mofa_ml.build_face_asset [--output=PATH]

Maintainers run this after changing the model derivation; the test suite
checks that the shipped asset matches a fresh rebuild.
"""

import os

from absl import app
from absl import flags
import numpy as np

from mofa_ml import face_model

_OUTPUT = flags.DEFINE_string(
    'output', None,
    "Where to write the asset; default: the package's assets folder.")


def main(argv):
  del argv
  derived = face_model.build_ict_derived(face_model.load_ict_source())
  output = _OUTPUT.value or face_model.asset_path(face_model.ICT_DERIVED)
  partial = output + '.partial.npz'
  np.savez_compressed(partial, **derived)
  os.replace(partial, output)
  print(f'wrote {output}: identity keeps '
        f'{100 * derived["identity_variance_retained"]:.2f}% of the variance, '
        f'expression {100 * derived["expression_variance_retained"]:.2f}%')


if __name__ == '__main__':
  app.run(main)
