"""Both paper stages in one run (200k + 190k steps); see paper_stage1.py and
paper_stage2.py for the weights."""

import os
import sys

# Config files are loaded by path (`--config=.../smoke.py`): make the
# sibling `default.py` importable wherever the folder is.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import default  # pylint: disable=g-import-not-at-top,wrong-import-position


def get_config():
  return default.get_config()
