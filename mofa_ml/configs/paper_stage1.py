"""Paper stage 1: base level only, 200k steps, AdaDelta lr 0.01, batch 5.

Weights: w_photo 1.9, w_reg 3e-5, w_rstd 0.002, corrective weights 0
(supplement Sec. 1). Point --config.dataset at a prepared corpus.
"""

from mofa_ml.configs import default


def get_config():
  config = default.get_config()
  config.stage2.steps = 0
  return config
