"""Both paper stages in one run (200k + 190k steps); see paper_stage1.py and
paper_stage2.py for the weights."""

from mofa_ml.configs import default


def get_config():
  return default.get_config()
