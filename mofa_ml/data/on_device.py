"""Training batches made on the accelerator, inside the jitted step.

    mofa train --config=on_device --workdir=runs/on_device

With `config.dataset = 'on_device'` no input pipeline feeds the step: each
step draws its batch from the synthetic distribution (`synthetic.py`, the
rest of the head around the face, poses up to `config.synthetic.max_yaw`,
occluders, detector-like landmark noise) and then degrades it as a camera
does (defocus blur, sensor noise). Batch s is a pure function of (seed, s),
so a resumed run repeats an uninterrupted one, and a GPU is never starved by
a host pipeline. The batch carries the truth ('params', 'vertices',
'albedo'), which `learning.supervision` compares the prediction with.

With `config.real_dataset` set, every `config.real_every`-th step takes a
batch of that prepared set of real photos instead (`host_batches`): the
mixture the paper fine-tunes on, where the real batches have no truth and
train through the self-supervised terms alone.

Without a real set this path imports neither TFDS nor grain nor the
detectors, so a training machine needs only JAX, Flax, Optax, Orbax and
ml_collections.
"""

import dataclasses
import itertools
from typing import Dict, Iterator, Optional

import dm_pix
import jax
import jax.numpy as jnp
import ml_collections

from mofa_ml.data import head as head_lib
from mofa_ml.data import synthetic
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.rendering import camera

DATASET = 'on_device'
# The camera's degradation, beyond the distribution's own fields.
_CAMERA_FIELDS = ('head', 'max_blur_px', 'max_noise')
_BLUR_KERNEL_PX = 7


@dataclasses.dataclass(frozen=True)
class Distribution:
  """What `batch` draws (hashable: a static argument of the step).

  Attributes:
    faces: the synthetic faces' distribution.
    head: render the rest of the head (hair, ears, neck, eyes) around them.
    max_blur_px: defocus blur, sigma drawn up to this (pixels).
    max_noise: sensor noise, standard deviation drawn up to this ([0, 1]
      intensity).
  """
  faces: synthetic.SyntheticConfig
  head: bool = True
  max_blur_px: float = 1.2
  max_noise: float = 0.03

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'Distribution':
    """The training config's `synthetic` block (every field optional).

    Raises:
      ValueError: a field neither `SyntheticConfig` nor this class knows.
    """
    fields = dict(config.get('synthetic', {}))
    if 'image_size' in fields:
      raise ValueError('config.synthetic.image_size: the crop size is '
                       'config.image_size')
    known = {field.name for field in dataclasses.fields(
        synthetic.SyntheticConfig)}
    unknown = set(fields) - known - set(_CAMERA_FIELDS)
    if unknown:
      raise ValueError(
          f'config.synthetic has unknown fields {", ".join(sorted(unknown))} '
          f'(it takes {", ".join(sorted(known | set(_CAMERA_FIELDS)))})')
    camera_fields = {name: fields.pop(name) for name in _CAMERA_FIELDS
                     if name in fields}
    faces = synthetic.SyntheticConfig(
        image_size=config.image_size,
        **{name: tuple(value) if isinstance(value, (list, tuple)) else value
           for name, value in fields.items()})
    return cls(faces=faces, **camera_fields)


def _degrade(key: jax.Array, image: jax.Array,
             distribution: Distribution) -> jax.Array:
  """(S, S, 3) image blurred and noised as a camera would."""
  k1, k2, k3 = jax.random.split(key, 3)
  sigma = jax.random.uniform(k1, (), minval=0.05,
                             maxval=max(distribution.max_blur_px, 0.05))
  image = dm_pix.gaussian_blur(image, sigma, _BLUR_KERNEL_PX)
  noise = jax.random.uniform(k2, ()) * distribution.max_noise
  image = image + noise * jax.random.normal(k3, image.shape)
  return jnp.clip(image, 0.0, 1.0)


def batch(key: jax.Array, model: fm.FaceModel,
          layout: layout_lib.ParameterLayout, intrinsics: camera.Intrinsics,
          head: Optional[head_lib.Head], distribution: Distribution,
          count: int) -> Dict[str, jax.Array]:
  """`count` training faces from one key; call it inside `jit`.

  Args:
    key: PRNG key.
    model, layout, intrinsics: the network's face model, layout and camera.
    head: `head_lib.load_head(model)` when `distribution.head`, else None.
    distribution: what to draw.
    count: the batch size.

  Returns:
    dict of (count, ...) arrays: 'image' (S, S, 3) float [0, 1],
    'landmarks' (68, 2) pixels, 'landmark_confidence' (68,), and the truth:
    'params' (layout.base_size,) base-level parameters, 'vertices' (N, 3)
    geometry in mm and 'albedo' (N, 3), both with the out-of-space
    variation; 'overflow' () bool (the rasterizer dropped fragments).
  """
  def one(face_key):
    face = synthetic.generate_face(face_key, model, layout, intrinsics,
                                   distribution.faces, head=head)
    face['image'] = _degrade(jax.random.fold_in(face_key, 95), face['image'],
                             distribution)
    return face
  return jax.vmap(one)(jax.random.split(key, count))


def host_batches(config: ml_collections.ConfigDict, step: int,
                 process_count: int = 1, process_index: int = 0
                 ) -> Iterator[Optional[Dict]]:
  """The host batches of steps `step`, `step + 1`, ...: the input pipeline's
  for a TFDS `config.dataset`; for on-device data None (the step draws its
  own), except every `real_every`-th step (0, k, 2k, ...) with a
  `real_dataset`, which takes that set's next batch. Batch s is a pure
  function of (config, s): a resumed run reads what an uninterrupted one
  would."""
  on_device = config.dataset == DATASET
  if on_device and not config.get('real_dataset'):
    return itertools.repeat(None)
  every = config.real_every if on_device else 1
  # Imported here: the on-device path alone runs without TFDS and grain.
  from mofa_ml.data import input_pipeline  # pylint: disable=g-import-not-at-top
  source = input_pipeline.load_source(
      config.real_dataset if on_device else config.dataset, 'train',
      config.data_dir or None)
  real = input_pipeline.training_batches(
      source, config.batch_size // process_count,
      seed=config.seed + process_index, start_step=-(-step // every),
      num_threads=config.num_data_threads)
  return (next(real) if s % every == 0 else None
          for s in itertools.count(step))
