"""Paper stage 1: base level only, 200k steps, AdaDelta lr 0.01, batch 5.

Weights: w_photo 1.9, w_reg 3e-5, w_rstd 0.002, corrective weights 0
(supplement Sec. 1). Point --config.dataset at a prepared corpus.
"""

import os
import sys

# Config files are loaded by path (`--config=.../smoke.py`): make the
# sibling `default.py` importable wherever the folder is.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import default  # pylint: disable=g-import-not-at-top,wrong-import-position


def get_config():
  config = default.get_config()
  config.stage2.steps = 0
  return config
