"""The rest of the ICT head around the front face, for synthetic renders.

The bundled model is the ICT front face; the ICT source also has the scalp,
ears, neck and eyeballs. Rendered around a synthetic face they give a
landmark detector what it sees in photos (a head outline, hair, eyes):
without them dlib's predictor put the eyes on the brows of the bare face
masks (docs/research/fitting-2026-12.md). The head follows the face's
identity and expression through the same blendshape combinations as the
model's bases, so it stays attached wherever the face moves.
"""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import ict
from mofa_ml.facemodel import landmarks as lm

_EYEBALL_REGIONS = ('eyeball_left', 'eyeball_right')
# Half-angles (degrees) of the iris and pupil seen from the eyeball centre.
_IRIS_DEGREES = 24.0
_PUPIL_DEGREES = 9.0
SCLERA = jnp.asarray([0.80, 0.76, 0.72])
_BROWN_IRIS = jnp.asarray([0.30, 0.17, 0.08])
_BLUE_IRIS = jnp.asarray([0.22, 0.32, 0.42])
# Hair from black through brown to blond and grey (linear reflectance).
_HAIR_COLOURS = jnp.asarray([[0.03, 0.025, 0.02], [0.12, 0.07, 0.04],
                             [0.35, 0.25, 0.13], [0.45, 0.45, 0.45]])


class Head(NamedTuple):
  """The head's vertices beyond the front face (M of them), mm.

  Attributes:
    mean: (M, 3) neutral positions.
    shape_basis: (ms, M, 3) the model's identity modes on these vertices.
    expression_basis: (me, M, 3) likewise for expression.
    triangles: (T, 3) the whole head's triangles, indexing the face's N
      vertices followed by these M.
    eyeball: (M,) bool, vertices of the eyeballs.
    gaze_cosine: (M,) cosine of the angle between an eyeball vertex's
      direction from its eyeball's centre and the eyeball's forward axis
      (0 elsewhere).
    height: (M,) neutral height above the brows, mm.
    depth: (M,) neutral distance behind the brows, mm.
  """
  mean: jax.Array
  shape_basis: jax.Array
  expression_basis: jax.Array
  triangles: jax.Array
  eyeball: jax.Array
  gaze_cosine: jax.Array
  height: jax.Array
  depth: jax.Array


def load_head(model: fm.FaceModel) -> Head:
  """The bundled ICT model's head around `model`'s front face.

  Raises:
    ValueError: `model` is not the bundled ICT front face.
  """
  derived = ict.load_derived()
  front = int(derived['front_vertex_count'])
  if model.name != ict.NAME or model.num_vertices != front:
    raise ValueError(f'the synthetic head exists for the bundled ICT model '
                     f'only, not {model.name!r} ({model.num_vertices} '
                     'vertices)')
  source = ict.load_source()
  combine = lambda combination, blendshapes: ict.combined_blendshapes(
      combination, blendshapes, slice(front, None))
  neutral = source['neutral'] * ict.CM_TO_MM
  mean = neutral[front:]
  names = [str(name) for name in source['region_names']]
  region = source['region'][front:]
  eyeball = np.zeros(len(mean), bool)
  gaze_cosine = np.zeros(len(mean))
  for name in _EYEBALL_REGIONS:
    inside = region == names.index(name)
    points = mean[inside]
    centre = (points.min(0) + points.max(0)) / 2
    forward = points[np.argmax(points[:, 2])] - centre  # the face looks +z
    directions = points - centre
    gaze_cosine[inside] = (directions @ forward) / (
        np.linalg.norm(directions, axis=1) * np.linalg.norm(forward))
    eyeball |= inside
  brows = neutral[source['landmarks_68'][list(lm.RIGHT_BROW + lm.LEFT_BROW)]]
  return Head(
      mean=jnp.asarray(mean, jnp.float32),
      shape_basis=jnp.asarray(combine(derived['identity_combination'],
                                      source['identity_basis']), jnp.float32),
      expression_basis=jnp.asarray(combine(
          derived['expression_combination'], source['expression_basis']),
                                   jnp.float32),
      triangles=jnp.asarray(source['triangles'], jnp.int32),
      eyeball=jnp.asarray(eyeball),
      gaze_cosine=jnp.asarray(gaze_cosine, jnp.float32),
      height=jnp.asarray(mean[:, 1] - brows[:, 1].mean(), jnp.float32),
      depth=jnp.asarray(brows[:, 2].mean() - mean[:, 2], jnp.float32))


def geometry(head: Head, shape: jax.Array, expression: jax.Array
             ) -> jax.Array:
  """(M, 3) head vertices for the face's (ms,) shape and (me,) expression
  coefficients, mm."""
  return (head.mean + jnp.einsum('k,knd->nd', shape, head.shape_basis) +
          jnp.einsum('k,knd->nd', expression, head.expression_basis))


def random_iris(key: jax.Array) -> jax.Array:
  """(3,) an iris reflectance between brown and blue."""
  return _BROWN_IRIS + jax.random.uniform(key) * (_BLUE_IRIS - _BROWN_IRIS)


def albedo(key: jax.Array, head: Head, skin: jax.Array) -> jax.Array:
  """(M, 3) reflectance: skin of colour `skin` (3,), hair above a random
  hairline (or none: bald), and eyeballs with a random iris.

  The hairline lies 25-60 mm above the brows at the front and falls to the
  brows' height 60 mm behind them, over the ears to the nape.
  """
  chex.assert_shape(skin, (3,))
  keys = jax.random.split(key, 4)
  front = jax.random.uniform(keys[0], (), minval=25.0, maxval=60.0)
  hairline = front * (1.0 - jnp.clip(head.depth / 60.0, 0.0, 1.0)) - 10.0 * (
      head.depth > 60.0)
  bald = jax.random.uniform(keys[1]) < 0.1
  hair = jax.nn.sigmoid((head.height - hairline) / 3.0) * ~bald
  hair_colour = _HAIR_COLOURS[jax.random.randint(keys[2], (), 0,
                                                 len(_HAIR_COLOURS))]
  colour = skin * (1.0 - hair[:, None]) + hair_colour * hair[:, None]
  iris = random_iris(keys[3])
  angle = jnp.degrees(jnp.arccos(jnp.clip(head.gaze_cosine, -1.0, 1.0)))
  eye = jnp.where((angle < _IRIS_DEGREES)[:, None], iris, SCLERA)
  eye = jnp.where((angle < _PUPIL_DEGREES)[:, None], 0.02, eye)
  return jnp.where(head.eyeball[:, None], eye, colour)
