"""The trainable model: encoder + learned corrective spaces, and the fixed
affine map from raw head outputs to face parameters.

    raw = Encoder(images)
    params = offset + scale * raw['base'] (+ final-level SH)
    F_g = CorrectiveSpace_g(raw['geometry']),  F_r = CorrectiveSpace_r(...)

The offset is the prior's mean face, frontal, centred 1 m in front of the
camera, under white ambient light; the scale is each coefficient's prior std
(so raw outputs are normalised), 0.5 rad for rotations and 50 / 50 / 200 mm
for translation. With the zero-initialised heads, the first prediction is
that sensible mean face rather than a degenerate mesh.
"""

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml import camera
from mofa_ml import correctives
from mofa_ml import encoder as encoder_lib
from mofa_ml import face_model as fm
from mofa_ml import layout as layout_lib
from mofa_ml import shading

# Module names; `train` assigns optimiser groups by them.
ENCODER = 'encoder'
GEOMETRY_CORRECTIVES = 'geometry_correctives'
REFLECTANCE_CORRECTIVES = 'reflectance_correctives'


class ParameterScaling(NamedTuple):
  """params = offset + scale * raw, over the whole layout vector.

  Attributes:
    offset: (size,) float32.
    scale: (size,) float32.
  """
  offset: jax.Array
  scale: jax.Array


def parameter_scaling(model: fm.FaceModel, layout: layout_lib.ParameterLayout,
                      distance_mm: float = camera.DEFAULT_DISTANCE_MM,
                      rotation_scale: float = 0.5,
                      translation_scale_mm=(50.0, 50.0, 200.0),
                      sh_scale: float = 1.0) -> ParameterScaling:
  """The fixed output map of the regressor for a face model and layout."""
  ones = lambda n: np.ones(n, np.float32)
  translation = np.asarray(camera.centring_translation(
      model.mean_shape, model.landmark_vertices, distance_mm=distance_mm))
  ambient = shading.AMBIENT_WHITE.reshape(-1)
  offsets = {
      'shape': np.zeros(model.num_shape), 'expression':
          np.zeros(model.num_expression),
      'reflectance': np.zeros(model.num_reflectance), 'rotation': np.zeros(3),
      'translation': translation, 'sh_base': ambient,
      'correctives_geometry': np.zeros(layout.num_correctives),
      'correctives_reflectance': np.zeros(layout.num_correctives),
      'sh_final': ambient,
  }
  scales = {
      'shape': np.asarray(model.shape_sigma),
      'expression': np.asarray(model.expression_sigma),
      'reflectance': np.asarray(model.reflectance_sigma),
      'rotation': rotation_scale * ones(3),
      'translation': np.asarray(translation_scale_mm, np.float32),
      'sh_base': sh_scale * ones(layout_lib.NUM_SH),
      'correctives_geometry': ones(layout.num_correctives),
      'correctives_reflectance': ones(layout.num_correctives),
      'sh_final': sh_scale * ones(layout_lib.NUM_SH),
  }
  names = list(layout.group_sizes)
  return ParameterScaling(
      offset=jnp.asarray(np.concatenate([offsets[n] for n in names]),
                         jnp.float32),
      scale=jnp.asarray(np.concatenate([scales[n] for n in names]),
                        jnp.float32))


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


class FaceAutoencoder(nn.Module):
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

  @nn.compact
  def __call__(self, images: jax.Array, scaling: ParameterScaling
               ) -> Prediction:
    raw = encoder_lib.Encoder(self.layout.base_size,
                              self.layout.num_correctives, self.width,
                              self.dense_size, self.backbone, self.dtype,
                              name=ENCODER)(images)
    pieces = [raw['base'], raw['geometry'], raw['reflectance']]
    if self.layout.separate_final_sh:
      pieces.append(raw['sh_final'])
    x = scaling.offset + scaling.scale * jnp.concatenate(pieces, axis=-1)
    params = self.layout.split(x)
    geometry = correctives.CorrectiveSpace(
        self.num_vertices, tuple(self.corrective_hidden_sizes),
        self.geometry_init_mm, name=GEOMETRY_CORRECTIVES)(
            params.correctives_geometry)
    reflectance = correctives.CorrectiveSpace(
        self.num_vertices, tuple(self.corrective_hidden_sizes),
        self.reflectance_init, name=REFLECTANCE_CORRECTIVES)(
            params.correctives_reflectance)
    return Prediction(params, geometry, reflectance)
