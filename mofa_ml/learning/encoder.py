"""The convolutional encoder: a trunk and four linear heads.

Two trunks, chosen by name (`TRUNKS`, config `model.backbone`):
  alexnet: the paper's "modified version of AlexNet": single-tower AlexNet
    (conv 11/4-96, 5-256, 3-384, 3-384, 3-256, three 3/2 max-pools, two
    4096-wide dense layers) on 240 x 240 RGB; local response normalisation
    and dropout are left out (they add nothing on this self-supervised task
    and cost speed). About 2.2 GFLOP per image.
  light: a small plain ConvNet for the paper's 250 Hz on a CPU: a 4 x 4
    stride-4 patch embedding, four 3 x 3 stride-2 convolutions and one dense
    layer (about 0.13 GFLOP per image at width 1). Plain convolutions rather
    than MobileNet's depthwise ones: XLA's CPU backend runs dense 3 x 3
    convolutions near its matmul speed, depthwise ones far below it.
`width` scales every layer of either trunk for small configurations.

Heads (initialised small, so the first prediction is near the prior's mean;
see `network.parameter_scaling`):
  base: the base-level parameters (257 for the paper's model),
  geometry / reflectance: the C corrective coefficients delta_g, delta_r,
  sh_final: the final level's own illumination (27).
"""

from typing import Dict

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp


def _standardized(images: jax.Array, dtype) -> jax.Array:
  """Checks (B, H, W, 3) images in [0, 1]; maps them to about [-2, 2]."""
  chex.assert_rank(images, 4)
  chex.assert_axis_dimension(images, 3, 3)
  return (images.astype(dtype) - 0.5) * 4.0


def _scaled(size: int, width: float, minimum: int) -> int:
  """A layer size times the trunk's `width`, at least `minimum`."""
  return max(minimum, int(round(size * width)))


class AlexNetTrunk(nn.Module):
  """(B, H, W, 3) images in [0, 1] -> (B, F) features."""
  width: float = 1.0
  dense_size: int = 4096
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    channels = lambda c: _scaled(c, self.width, 8)
    conv = lambda c, k, s, name: nn.Conv(
        channels(c), (k, k), strides=(s, s),
        padding='VALID' if k == 11 else 'SAME', dtype=self.dtype, name=name)
    pool = lambda x: nn.max_pool(x, (3, 3), strides=(2, 2))
    x = _standardized(images, self.dtype)
    x = pool(nn.relu(conv(96, 11, 4, 'conv1')(x)))
    x = pool(nn.relu(conv(256, 5, 1, 'conv2')(x)))
    x = nn.relu(conv(384, 3, 1, 'conv3')(x))
    x = nn.relu(conv(384, 3, 1, 'conv4')(x))
    x = pool(nn.relu(conv(256, 3, 1, 'conv5')(x)))
    x = x.reshape(x.shape[0], -1)
    dense = _scaled(self.dense_size, self.width, 16)
    x = nn.relu(nn.Dense(dense, dtype=self.dtype, name='fc6')(x))
    x = nn.relu(nn.Dense(dense, dtype=self.dtype, name='fc7')(x))
    return x


class LightTrunk(nn.Module):
  """(B, 240, 240, 3) images in [0, 1] -> (B, F) features, cheaply."""
  width: float = 1.0
  dense_size: int = 512
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    channels = lambda c: _scaled(c, self.width, 8)
    x = _standardized(images, self.dtype)
    x = nn.relu(nn.Conv(channels(32), (4, 4), strides=(4, 4),
                        padding='VALID', dtype=self.dtype, name='embed')(x))
    for index, c in enumerate((64, 128, 256, 256)):
      x = nn.relu(nn.Conv(channels(c), (3, 3), strides=(2, 2),
                          dtype=self.dtype, name=f'conv{index + 1}')(x))
    x = x.reshape(x.shape[0], -1)  # keeps where things are: pose needs it
    dense = _scaled(self.dense_size, self.width, 16)
    return nn.relu(nn.Dense(dense, dtype=self.dtype, name='fc')(x))


TRUNKS = {'alexnet': AlexNetTrunk, 'light': LightTrunk}


class Encoder(nn.Module):
  """Images -> raw head outputs.

  Attributes:
    base_size: number of base-level parameters.
    num_correctives: C.
    final_sh_size: size of the final-level light head (27), or 0 where the
      layout shares the base light.
    width, dense_size: trunk size.
    backbone: a key of TRUNKS.
  """
  base_size: int
  num_correctives: int
  final_sh_size: int = 0
  width: float = 1.0
  dense_size: int = 4096
  backbone: str = 'alexnet'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> Dict[str, jax.Array]:
    if self.backbone not in TRUNKS:
      raise ValueError(f'unknown backbone {self.backbone!r} '
                       f'({", ".join(TRUNKS)})')
    features = TRUNKS[self.backbone](self.width, self.dense_size, self.dtype,
                                     name='trunk')(images)
    # Small random heads: the first predictions stay within a tenth of a
    # prior std of the mean face, yet gradients reach the trunk at once
    # (a zero head would block them until it moved).
    head_init = nn.initializers.variance_scaling(0.01, 'fan_in',
                                                 'truncated_normal')
    head = lambda size, name: nn.Dense(
        size, kernel_init=head_init, name=name)(features.astype(jnp.float32))
    outputs = {
        'base': head(self.base_size, 'base_head'),
        'geometry': head(self.num_correctives, 'geometry_head'),
        'reflectance': head(self.num_correctives, 'reflectance_head'),
    }
    if self.final_sh_size:
      outputs['sh_final'] = head(self.final_sh_size, 'sh_final_head')
    return outputs
