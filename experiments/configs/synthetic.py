"""The synthetic benchmark's training runs (docs/results.md), CPU-sized.

    mofa train --config=experiments/configs/synthetic.py:alexnet ...
    mofa train --config=experiments/configs/synthetic.py:light ...

Both stages on `mofa_synthetic/benchmark` (4,000 training faces), C = 64 and
Adam, the paper's loss weights. `alexnet`: the smoke run's narrow AlexNet
(width 0.25, 512-wide dense layers). `light`: the light trunk at half width
(channels 16-32-64-128-128, one 256-wide dense layer), the paper's 250 Hz on
two CPU cores (see docs/results.md). Everything else is equal.
"""

from mofa_ml import train

_WIDTHS = {'alexnet': 0.25, 'light': 0.5}


def get_config(backbone: str = 'alexnet'):
  if backbone not in _WIDTHS:
    raise ValueError(f'backbone is one of {", ".join(_WIDTHS)}, not '
                     f'{backbone!r}')
  config = train.default_config()
  config.dataset = 'mofa_synthetic/benchmark'
  config.model.backbone = backbone
  config.model.width = _WIDTHS[backbone]
  config.model.dense_size = 512
  config.model.num_correctives = 64
  config.optimizer.name = 'adam'
  config.stage1.steps = 3000
  config.stage1.learning_rate_base = 3e-4
  config.stage2.steps = 2000
  config.stage2.learning_rate_base = 1e-4
  config.stage2.learning_rate_geometry = 5e-4
  config.stage2.learning_rate_reflectance = 1e-3
  config.log_every = 100
  config.image_every = 1000
  config.checkpoint_every = 500
  return config
