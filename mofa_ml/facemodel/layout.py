"""The per-image parameter vector: sizes, offsets, split/join, compact code.

    x = (alpha_shape[ms], alpha_expr[me], beta[mr], R[3], t[3], gamma[27],
         delta_g[C], delta_r[C] | gamma_final[27])

The first eight groups are the paper's 257 + 2C numbers for ms = mr = 80,
me = 64. The supplement regresses the final level's illumination separately
("not shared between the two levels"): with `separate_final_sh` (default)
27 more numbers follow. R is three Euler angles (radians, see `camera`),
t is in mm, gamma is (9, 3) stored coefficient-major (index 3 b + c).
"""

import dataclasses
import struct
import zlib
from typing import Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.rendering import camera
from mofa_ml.rendering import shading

NUM_POSE_ANGLES = 3
NUM_TRANSLATION = 3
NUM_SH = 27  # 9 coefficients x RGB


class FaceParams(NamedTuple):
  """One face's (or a batch's, with leading axes) parameters; a pytree.

  Attributes:
    shape: (..., ms) identity coefficients.
    expression: (..., me) expression coefficients.
    reflectance: (..., mr) reflectance coefficients.
    rotation: (..., 3) Euler angles (pitch, yaw, roll), radians.
    translation: (..., 3) mm, camera space.
    sh_base: (..., 9, 3) base-level illumination.
    correctives_geometry: (..., C) delta_g.
    correctives_reflectance: (..., C) delta_r.
    sh_final: (..., 9, 3) final-level illumination, or None when shared.
  """
  shape: jax.Array
  expression: jax.Array
  reflectance: jax.Array
  rotation: jax.Array
  translation: jax.Array
  sh_base: jax.Array
  correctives_geometry: jax.Array
  correctives_reflectance: jax.Array
  sh_final: Optional[jax.Array] = None


@dataclasses.dataclass(frozen=True)
class ParameterLayout:
  """Sizes and offsets of the parameter vector; immutable and hashable."""
  num_shape: int
  num_expression: int
  num_reflectance: int
  num_correctives: int = 500
  separate_final_sh: bool = True

  def __post_init__(self):
    for name in ('num_shape', 'num_expression', 'num_reflectance',
                 'num_correctives'):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f'{name} must be a non-negative int, got {value!r}')

  @classmethod
  def for_model(cls, model, num_correctives: int = 500,
                separate_final_sh: bool = True) -> 'ParameterLayout':
    """The layout of a `face_model.FaceModel`."""
    return cls(model.num_shape, model.num_expression, model.num_reflectance,
               num_correctives, separate_final_sh)

  @property
  def group_sizes(self) -> Dict[str, int]:
    """Ordered {group name: size}; names are the FaceParams fields."""
    sizes = {
        'shape': self.num_shape,
        'expression': self.num_expression,
        'reflectance': self.num_reflectance,
        'rotation': NUM_POSE_ANGLES,
        'translation': NUM_TRANSLATION,
        'sh_base': NUM_SH,
        'correctives_geometry': self.num_correctives,
        'correctives_reflectance': self.num_correctives,
    }
    if self.separate_final_sh:
      sizes['sh_final'] = NUM_SH
    return sizes

  @property
  def offsets(self) -> Dict[str, Tuple[int, int]]:
    """{group name: (start, stop)} into the flat vector."""
    result, start = {}, 0
    for name, size in self.group_sizes.items():
      result[name] = (start, start + size)
      start += size
    return result

  @property
  def base_size(self) -> int:
    """ms + me + mr + 3 + 3 + 27 (257 for the paper's model)."""
    return (self.num_shape + self.num_expression + self.num_reflectance +
            NUM_POSE_ANGLES + NUM_TRANSLATION + NUM_SH)

  @property
  def size(self) -> int:
    """Length of the whole vector."""
    return sum(self.group_sizes.values())

  def split(self, x: jax.Array) -> FaceParams:
    """(..., size) vector -> FaceParams with the same leading axes."""
    if x.shape[-1] != self.size:
      raise ValueError(f'parameter vector has {x.shape[-1]} entries, the '
                       f'layout {self} needs {self.size}')
    groups = {}
    for name, (start, stop) in self.offsets.items():
      value = x[..., start:stop]
      if name.startswith('sh_'):
        value = value.reshape(x.shape[:-1] + (9, 3))
      groups[name] = value
    return FaceParams(**groups)

  def join(self, params: FaceParams) -> jax.Array:
    """FaceParams -> (..., size) vector; inverse of `split`."""
    pieces = []
    for name, size in self.group_sizes.items():
      value = getattr(params, name)
      if value is None:
        raise ValueError(f'FaceParams.{name} is None but the layout has it')
      value = value.reshape(value.shape[:-2] + (NUM_SH,)) if name.startswith(
          'sh_') else value
      if value.shape[-1] != size:
        raise ValueError(f'FaceParams.{name} has {value.shape[-1]} entries, '
                         f'the layout needs {size}')
      pieces.append(value)
    return jnp.concatenate(pieces, axis=-1)


class ParameterScaling(NamedTuple):
  """params = offset + scale * raw, over the whole layout vector.

  Attributes:
    offset: (size,) float32.
    scale: (size,) float32.
  """
  offset: jax.Array
  scale: jax.Array

  def params(self, layout: 'ParameterLayout', raw: jax.Array) -> FaceParams:
    """FaceParams of a normalised (size,) vector under `layout`."""
    return layout.split(self.offset + self.scale * raw)


def parameter_scaling(model, layout: ParameterLayout,
                      distance_mm: float = camera.DEFAULT_DISTANCE_MM,
                      rotation_scale: float = 0.5,
                      translation_scale_mm=(50.0, 50.0, 200.0),
                      sh_scale: float = 1.0) -> ParameterScaling:
  """The fixed affine map from normalised to actual parameters.

  The offset is the prior's mean face, frontal, centred `distance_mm` in
  front of the camera, under white ambient light; the scale is each
  coefficient's prior std, `rotation_scale` rad for the angles and
  `translation_scale_mm` for the translation. The regressor's heads and the
  fitter both work in these normalised units.

  Args:
    model: a `face_model.FaceModel`.
    layout: the vector's layout.
  """
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
      'sh_base': sh_scale * ones(NUM_SH),
      'correctives_geometry': ones(layout.num_correctives),
      'correctives_reflectance': ones(layout.num_correctives),
      'sh_final': sh_scale * ones(NUM_SH),
  }
  names = list(layout.group_sizes)
  return ParameterScaling(
      offset=jnp.asarray(np.concatenate([offsets[n] for n in names]),
                         jnp.float32),
      scale=jnp.asarray(np.concatenate([scales[n] for n in names]),
                        jnp.float32))



# Compact code: 18-byte header, then the vector as little-endian float32.
_MAGIC = b'MOFA'
_VERSION = 1
_HEADER = struct.Struct('<4sBBHHHHI')


def model_tag(model_name: str) -> int:
  """32-bit tag of a face model's name, stored in compact codes."""
  return zlib.crc32(model_name.encode())


def encode(x: np.ndarray, layout: ParameterLayout, model_name: str) -> bytes:
  """One face's parameter vector -> compact bytes (header + float32).

  Args:
    x: (size,) parameter vector.
    layout: its layout.
    model_name: the face model's name, checked on decoding.

  Returns:
    bytes of length 18 + 4 * size (5,110 for the bundled model, C = 500).
  """
  x = np.asarray(x, dtype='<f4')
  if x.shape != (layout.size,):
    raise ValueError(f'expected a ({layout.size},) vector, got {x.shape}')
  header = _HEADER.pack(_MAGIC, _VERSION, int(layout.separate_final_sh),
                        layout.num_shape, layout.num_expression,
                        layout.num_reflectance, layout.num_correctives,
                        model_tag(model_name))
  return header + x.tobytes()


def decode(data: bytes, model_name: Optional[str] = None
           ) -> Tuple[np.ndarray, ParameterLayout]:
  """Compact bytes -> (float32 vector, layout); inverse of `encode`.

  Raises:
    ValueError: not a mofa_ml code, truncated, or made with another face
      model than `model_name`.
  """
  if len(data) < _HEADER.size or data[:4] != _MAGIC:
    raise ValueError('not a mofa_ml compact code (bad magic bytes)')
  magic, version, flags, ms, me, mr, c, tag = _HEADER.unpack_from(data)
  del magic
  if version != _VERSION:
    raise ValueError(f'compact code version {version}, this mofa_ml reads '
                     f'{_VERSION}')
  layout = ParameterLayout(ms, me, mr, c, bool(flags & 1))
  expected = _HEADER.size + 4 * layout.size
  if len(data) != expected:
    raise ValueError(f'compact code is {len(data)} bytes, its header implies '
                     f'{expected}')
  if model_name is not None and tag != model_tag(model_name):
    raise ValueError(f'compact code was made with another face model than '
                     f'{model_name!r}')
  return np.frombuffer(data, dtype='<f4', offset=_HEADER.size).copy(), layout
