"""The trainable model: encoder + learned corrective spaces.

    raw = Encoder(images)
    params = offset + scale * raw['base'] (+ final-level SH)
    F_g = CorrectiveSpace_g(delta_g),  F_r = CorrectiveSpace_r(delta_r)

(offset, scale) is the fixed `layout.ParameterScaling`: raw outputs are
normalised parameters. The encoder's heads start small (not zero), so the
first prediction is close to the mean face, frontal, 1 m in front of the
camera under white ambient light, and gradients reach the trunk at once.
"""

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.learning import correctives
from mofa_ml.learning import encoder as encoder_lib

# Module names; `train` assigns optimiser groups by them.
ENCODER = 'encoder'
GEOMETRY_CORRECTIVES = 'geometry_correctives'
REFLECTANCE_CORRECTIVES = 'reflectance_correctives'


class Prediction(NamedTuple):
  """What the network predicts for a batch (a pytree).

  Attributes:
    params: FaceParams with a leading batch axis.
    geometry_offsets: (B, N, 3) F_g, mm.
    reflectance_offsets: (B, N, 3) F_r, RGB units.
  """
  params: layout_lib.FaceParams
  geometry_offsets: jax.Array
  reflectance_offsets: jax.Array


class FaceNetwork(nn.Module):
  """Images -> Prediction. The face model and renderer stay outside: this
  module holds only trainable parameters (trunk, heads, Theta_g, Theta_r).

  Attributes:
    layout: the parameter layout (fixes the head sizes).
    num_vertices: N of the face model.
    width, dense_size: encoder size.
    backbone: the encoder's trunk ('alexnet' or 'light', encoder.TRUNKS).
    corrective_hidden_sizes: () affine correctives (the paper's default),
      or hidden widths of the non-linear variants.
    geometry_init_mm, reflectance_init: per-entry std of F_g, F_r at
      initialisation for unit corrective coefficients.
  """
  layout: layout_lib.ParameterLayout
  num_vertices: int
  width: float = 1.0
  dense_size: int = 4096
  backbone: str = 'alexnet'
  corrective_hidden_sizes: Sequence[int] = ()
  geometry_init_mm: float = 1.0
  reflectance_init: float = 0.02
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    final_sh_size = layout_lib.NUM_SH if self.layout.separate_final_sh else 0
    # Attribute names are the parameter groups' names (ENCODER etc.).
    self.encoder = encoder_lib.Encoder(
        self.layout.base_size, self.layout.num_correctives, final_sh_size,
        self.width, self.dense_size, self.backbone, self.dtype)
    hidden = tuple(self.corrective_hidden_sizes)
    self.geometry_correctives = correctives.CorrectiveSpace(
        self.num_vertices, hidden, self.geometry_init_mm)
    self.reflectance_correctives = correctives.CorrectiveSpace(
        self.num_vertices, hidden, self.reflectance_init)

  def encode(self, images: jax.Array):
    """The encoder's raw head outputs (for benchmarks)."""
    return self.encoder(images)

  def __call__(self, images: jax.Array, scaling: layout_lib.ParameterScaling
               ) -> Prediction:
    raw = self.encoder(images)
    pieces = [raw['base'], raw['geometry'], raw['reflectance']]
    if self.layout.separate_final_sh:
      pieces.append(raw['sh_final'])
    x = scaling.offset + scaling.scale * jnp.concatenate(pieces, axis=-1)
    params = self.layout.split(x)
    return Prediction(params,
                      self.geometry_correctives(params.correctives_geometry),
                      self.reflectance_correctives(
                          params.correctives_reflectance))
