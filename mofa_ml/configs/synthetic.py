"""The synthetic benchmark's training runs (docs/results.md), CPU-sized.

    mofa train --config=synthetic:alexnet ...
    mofa train --config=synthetic:light ...

The smoke run's settings (C = 64, Adam and its rates, the paper's loss
weights) for longer, on `mofa_synthetic/benchmark` (4,000 training faces).
`alexnet`: the smoke run's narrow AlexNet (width 0.25, 512-wide dense
layers). `light`: the light trunk at half width
(channels 16-32-64-128-128, one 256-wide dense layer), the paper's 250 Hz on
two CPU cores (see docs/results.md). Everything else is equal.
"""

from mofa_ml.configs import smoke

_WIDTHS = {'alexnet': 0.25, 'light': 0.5}


def get_config(backbone: str = 'alexnet'):
  if backbone not in _WIDTHS:
    raise ValueError(f'backbone is one of {", ".join(_WIDTHS)}, not '
                     f'{backbone!r}')
  config = smoke.get_config()
  config.dataset = 'mofa_synthetic/benchmark'
  config.model.backbone = backbone
  config.model.width = _WIDTHS[backbone]
  config.stage1.steps = 3000
  config.stage2.steps = 2000
  config.log_every = 100
  config.image_every = 1000
  config.checkpoint_every = 500
  return config
