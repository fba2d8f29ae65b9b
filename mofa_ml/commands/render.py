"""`mofa render`: pictures of the face model under chosen poses and light.

    mofa render --output=mean_face.png --yaw_degrees=0,45

Renders the bundled mean face (or one whose coefficients are drawn from the
prior with --random_seed) under SH lighting: one panel per yaw angle.
"""

import math

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml import image_io
from mofa_ml.commands import common
from mofa_ml.facemodel import face_model as fm
from mofa_ml.rendering import camera
from mofa_ml.rendering import shading
from mofa_ml.rendering import viz

_OUTPUT = flags.DEFINE_string('output', 'mean_face.png',
                              'PNG file to write.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace --output if it exists.')
_YAW = flags.DEFINE_list('yaw_degrees', ['0', '45'],
                         'Head yaw of each panel, degrees (positive turns '
                         'the face to the subject\'s left).')
_PITCH = flags.DEFINE_float('pitch_degrees', 0.0, 'Head pitch, degrees.')
_SIZE = flags.DEFINE_integer('image_size', 480, 'Panel size, pixels.')
_SEED = flags.DEFINE_integer(
    'random_seed', None, 'Draw identity, expression and reflectance from '
    'the prior with this seed instead of rendering the mean face.')
_FACE_MODEL = common.define_face_model_flag()
MIN_SIZE, MAX_SIZE = 16, 2048


def studio_light() -> jnp.ndarray:
  """A warm key light from the upper left of the camera plus soft fill."""
  direction = jnp.asarray([-0.45, -0.45, -0.77])  # camera frame, y down
  return shading.directional_light(
      direction / jnp.linalg.norm(direction),
      colour=jnp.asarray([0.75, 0.72, 0.68]),
      ambient=jnp.asarray([0.45, 0.45, 0.48]))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    yaws = [math.radians(float(value)) for value in _YAW.value]
  except ValueError:
    yaws = []
  if not yaws or not all(math.isfinite(yaw) for yaw in yaws):
    raise app.UsageError('--yaw_degrees must be numbers, got '
                         f'{",".join(_YAW.value) or "nothing"}')
  if not math.isfinite(_PITCH.value):
    raise app.UsageError('--pitch_degrees must be a number')
  if not MIN_SIZE <= _SIZE.value <= MAX_SIZE:
    # Rendering holds several float buffers per pixel and panel: 5000 px
    # took 6.5 GB.
    raise app.UsageError(f'--image_size must be {MIN_SIZE} to {MAX_SIZE} '
                         f'pixels, got {_SIZE.value}')
  if _SEED.value is not None and not 0 <= _SEED.value < 2**63:
    raise app.UsageError('--random_seed must be 0 to 2**63 - 1, got '
                         f'{_SEED.value}')
  try:  # before the rendering, which takes seconds
    image_io.check_image_target(_OUTPUT.value, _OVERWRITE.value)
  except (FileExistsError, ValueError) as e:
    raise SystemExit(f'mofa render: {e}') from None
  try:
    model = fm.load_face_model(_FACE_MODEL.value)
  except (ValueError, FileNotFoundError) as e:
    raise SystemExit(f'mofa render: {e}') from None
  shape = jnp.zeros(model.num_shape)
  expression = jnp.zeros(model.num_expression)
  reflectance = jnp.zeros(model.num_reflectance)
  if _SEED.value is not None:
    keys = jax.random.split(jax.random.PRNGKey(_SEED.value), 3)
    shape = jax.random.normal(keys[0], shape.shape) * model.shape_sigma
    expression = 0.3 * jax.random.normal(
        keys[1], expression.shape) * model.expression_sigma
    reflectance = jax.random.normal(
        keys[2], reflectance.shape) * model.reflectance_sigma
  vertices = model.geometry(shape, expression)
  albedo = jnp.clip(model.reflectance(reflectance), 0.0, 1.0)
  size = _SIZE.value
  intrinsics = camera.default_intrinsics(
      size, camera.DEFAULT_FOCAL_LENGTH * size / camera.DEFAULT_IMAGE_SIZE)
  background = np.full((size, size, 3), 0.18, np.float32)
  panels = []
  for yaw in yaws:
    angles = jnp.asarray([math.radians(_PITCH.value), yaw, 0.0])
    translation = camera.centring_translation(
        vertices, model.landmark_vertices, angles)
    image, _ = viz.render_shaded(vertices, albedo, model.triangles, angles,
                                 translation, studio_light(), intrinsics,
                                 size, size, background)
    panels.append(image)
  try:
    image_io.save_image(_OUTPUT.value, viz.side_by_side(panels),
                        overwrite=_OVERWRITE.value)
  except (FileExistsError, ValueError, OSError) as e:
    raise SystemExit(f'mofa render: {e}') from None
  print(f'wrote {_OUTPUT.value} ({len(panels)} panels, {model.name}, '
        f'{model.num_vertices} vertices)')
