"""A CPU-sized run of both stages on the small synthetic corpus.

Same losses and weights as the paper, with a narrow trunk (a quarter of
AlexNet's width, 512-wide dense layers) and C = 64 correctives. Adam
replaces AdaDelta: AdaDelta's first steps are limited by its eps (the paper
ran 200k of them), too slow to show learning in a few hundred CPU steps. The
learning rates keep the paper's 1 : 5 : 10 ratio in stage 2.
"""

from mofa_ml.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'mofa_synthetic/smoke'
  config.model.width = 0.25
  config.model.dense_size = 512
  config.model.num_correctives = 64
  config.optimizer.name = 'adam'
  config.stage1.steps = 300
  config.stage1.learning_rate_base = 3e-4
  config.stage2.steps = 200
  config.stage2.learning_rate_base = 1e-4
  config.stage2.learning_rate_geometry = 5e-4
  config.stage2.learning_rate_reflectance = 1e-3
  config.log_every = 25
  config.image_every = 250
  config.checkpoint_every = 100
  return config
