"""Training on faces drawn inside the step (`mofa_ml/data/on_device.py`).

    mofa train --config=on_device --workdir=runs/light
    mofa train --config=on_device:alexnet --config.batch_size=64 ...

Each step renders its own batch on the accelerator: identities, expressions
(a fifth of the prior's sigmas: ICT's expression modes span whole grimaces),
poses up to 60 degrees of yaw, lights, skin tones off the model's space,
hair and the rest of the head, occluders, blur, sensor noise and
detector-like landmark noise, with the face placed in the crop as
`mofa reconstruct` places a detected one. The base level is
supervised with the truth (`learning/supervision.py`) besides the paper's
self-supervised terms, which alone train the correctives in stage 2.

Fine-tuning on real photos, as the paper's stage 2 does on its corpus:
`--config.real_dataset=mofa_faces/<name> --config.data_dir=<prepare output>/tfds
--config.init_checkpoint=runs/light/checkpoints`.

`light` (default): the light trunk at half width with C = 64 correctives,
the network the package ships; `alexnet`: the paper's trunk, for a GPU.
"""

import ml_collections

from mofa_ml.configs import smoke

_BACKBONES = {'light': 0.5, 'alexnet': 1.0}


def get_config(backbone: str = 'light'):
  if backbone not in _BACKBONES:
    raise ValueError(f'backbone is one of {", ".join(_BACKBONES)}, not '
                     f'{backbone!r}')
  config = smoke.get_config()  # its Adam, rates and C = 64
  config.dataset = 'on_device'
  config.batch_size = 16
  config.synthetic = ml_collections.ConfigDict(dict(
      max_yaw=60.0, max_pitch=20.0, max_roll=15.0, expression_std=0.2,
      # `crop.LANDMARK_EXTENT` (0.65) with room for detector error.
      landmark_extent_range=(0.55, 0.75), max_shift=0.2,
      landmark_noise_px=2.0, occluder_probability=0.25, head=True,
      max_blur_px=1.2, max_noise=0.03))
  config.model.backbone = backbone
  config.model.width = _BACKBONES[backbone]
  if backbone == 'alexnet':
    config.model.dense_size = 4096  # the paper's
  config.stage1.steps = 20_000
  config.stage2.steps = 10_000
  supervision = dict(geometry=10.0, projection=10.0, reflectance=10.0,
                     light=1.0)
  config.stage1.supervision = ml_collections.ConfigDict(supervision)
  config.stage2.supervision = ml_collections.ConfigDict(supervision)
  # A prepared set of real photos (`mofa prepare`, with config.data_dir)
  # mixed in: every `real_every`-th batch is real, trained through the
  # self-supervised terms alone.
  config.real_dataset = ''
  config.real_every = 2
  config.log_every = 50
  config.image_every = 1000
  config.checkpoint_every = 500
  return config
