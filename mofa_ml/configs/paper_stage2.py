"""Paper stage 2: end to end, 190k steps from a stage-1 run.

Learning rates 0.001 base / 0.005 geometry / 0.01 reflectance correctives;
w_photo 0.2, w_reg 0.003, w_rstd 0.002, w_smo 3.2e4, w_ref 13, w_glo 80,
w_sta 0.08, C = 500 (supplement Sec. 1). Set --config.init_checkpoint to the
stage-1 run's workdir/checkpoints.
"""

from mofa_ml.configs import default


def get_config():
  config = default.get_config()
  config.stage1.steps = 0
  return config
