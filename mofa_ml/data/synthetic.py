"""Synthetic faces rendered from the model, with ground truth.

Each face draws identity, expression, base reflectance, pose and SH light
from wide priors, then adds variation the base model cannot represent
(*out-of-space*): smooth random geometry displacements along the normals
(bumps of 8-30 mm radius and up to +-4 mm), skin tones off the reflectance
prior (melanin-like darkening with per-channel jitter), beard-like dark regions below the nose, and
colour patches (blush, make-up). It is rasterized over a random smooth
background with per-pixel SH shading. Ground truth: the 68 landmarks (jaw
points on the visible outline, as a detector marks them), the final
geometry and albedo, and the base-level parameters.

`generate_batch` is one jitted, vmapped function of a PRNG key, so a corpus
is a pure function of its seed.
"""

import dataclasses
import functools
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.data import head as head_lib
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh
from mofa_ml.rendering import raster
from mofa_ml.rendering import shading

_HAIR_COLOUR = jnp.asarray([0.10, 0.08, 0.07])


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """How wide the synthetic distribution is (hashable: a static argument).

  Angles in degrees, lengths in mm.
  """
  image_size: int = 240
  shape_std: float = 1.0          # in units of the prior's sigmas
  expression_std: float = 0.15
  reflectance_std: float = 1.0
  max_yaw: float = 40.0
  max_pitch: float = 15.0
  max_roll: float = 10.0
  # The landmarks' bounding box spans this fraction of the crop (a tight
  # face crop), which sets the distance; the face shifts off-centre by up
  # to `max_shift` of the room left inside the crop.
  landmark_extent_range: tuple = (0.55, 0.75)
  max_shift: float = 0.8
  out_of_space: bool = True
  bump_count: int = 6
  bump_amplitude_mm: float = 4.0
  beard_probability: float = 0.35
  patch_count: int = 3
  max_darkness: float = 0.9
  landmark_noise_px: float = 0.0
  # Identifiability-ladder controls: light with the ambient (DC) term only,
  # and a uniform background of this grey level (negative: random).
  ambient_only: bool = False
  background_grey: float = -1.0
  # Paint the openings the mesh leaves at the eyes (sclera, iris, pupil)
  # and the mouth (dark) instead of showing the background through them,
  # so a landmark detector sees eyes.
  painted_openings: bool = False
  # Chance of an occluder (a hand- or object-like ellipse of random colour,
  # shaded across) over part of the face; the landmarks stay where a
  # detector would guess them.
  occluder_probability: float = 0.0


def _smooth_bumps(key, vertices, normals, count, amplitude, centre_count):
  """Sum of Gaussian bumps along the normals: (N, 3) displacement, the
  bumps centred on the first `centre_count` vertices."""
  k1, k2, k3 = jax.random.split(key, 3)
  centres = vertices[jax.random.randint(k1, (count,), 0, centre_count)]
  radii = jax.random.uniform(k2, (count,), minval=8.0, maxval=30.0)
  heights = jax.random.uniform(k3, (count,), minval=-amplitude,
                               maxval=amplitude)
  squared = jnp.sum((vertices[:, None] - centres[None])**2, -1)
  field = jnp.sum(heights * jnp.exp(-squared / (2 * radii**2)), axis=1)
  return field[:, None] * normals


def _beard_weight(vertices, landmark_positions, key):
  """(N,) soft weight of a beard region: below the nose, around the mouth
  and along the jaw, with random coverage and a ragged upper edge."""
  k1, k2 = jax.random.split(key)
  nose_base = jnp.max(landmark_positions[jnp.asarray(lm.NOSTRILS), 1])
  edge = nose_base - jax.random.uniform(k1, (), minval=2.0, maxval=25.0)
  lips = landmark_positions[jnp.asarray(lm.OUTER_LIPS)]
  lip_centre = jnp.mean(lips, axis=0)
  lip_radius = jnp.max(jnp.linalg.norm(lips - lip_centre, axis=-1))
  to_lips = jnp.linalg.norm(vertices[:, :2] - lip_centre[:2], axis=-1)
  below = jax.nn.sigmoid((edge - vertices[:, 1]) / 2.0)
  off_lips = jax.nn.sigmoid((to_lips - lip_radius * 0.85) / 1.5)
  ripple = 0.5 + 0.5 * jnp.sin(vertices[:, 0] * 0.9 + vertices[:, 1] * 1.3 +
                               jax.random.uniform(k2, (), maxval=6.0))
  return below * off_lips * (0.75 + 0.25 * ripple)


def _colour_patches(key, vertices, count):
  """(N, 3) additive colour blobs (blush, make-up)."""
  k1, k2, k3 = jax.random.split(key, 3)
  centres = vertices[jax.random.randint(k1, (count,), 0, vertices.shape[0])]
  radii = jax.random.uniform(k2, (count, 1), minval=8.0, maxval=20.0)
  colours = jax.random.uniform(k3, (count, 3), minval=-0.15, maxval=0.15)
  squared = jnp.sum((vertices[:, None] - centres[None])**2, -1)
  return jnp.einsum('nk,kc->nc', jnp.exp(-squared / (2 * radii.T**2)),
                    colours)


def _random_light(key, ambient_only=False):
  """gamma: ambient plus one directional light from the front hemisphere."""
  k1, k2, k3, k4 = jax.random.split(key, 4)
  direction = jax.random.normal(k1, (3,)) * jnp.asarray([0.6, 0.5, 0.3])
  direction = direction.at[2].add(-1.0)  # towards the camera side
  direction = direction / jnp.linalg.norm(direction)
  tint = 1.0 + jax.random.uniform(k2, (3,), minval=-0.12, maxval=0.12)
  strength = jax.random.uniform(k3, (), minval=0.2, maxval=0.8)
  ambient = jax.random.uniform(k4, (), minval=0.4, maxval=0.9)
  if ambient_only:
    strength = 0.0 * strength
  return shading.directional_light(direction, strength * tint, ambient * tint)


def _background(key, size):
  """(size, size, 3) smooth random gradient with low-frequency blobs."""
  k1, k2, k3 = jax.random.split(key, 3)
  corners = jax.random.uniform(k1, (2, 2, 3), minval=0.05, maxval=0.95)
  t = jnp.linspace(0.0, 1.0, size)
  image = jax.image.resize(corners, (size, size, 3), 'linear')
  rows, cols = jnp.meshgrid(t, t, indexing='ij')
  phases = jax.random.uniform(k2, (3,), maxval=2 * jnp.pi)
  waves = jax.random.uniform(k3, (3,), minval=2.0, maxval=9.0)
  pattern = 0.08 * jnp.sin(waves * cols[..., None] + phases) * jnp.cos(
      waves * rows[..., None])
  return jnp.clip(image + pattern, 0.0, 1.0)


def _pixel_centres(size: int) -> jax.Array:
  """(size, size, 2) (x, y) of every pixel centre."""
  rows, cols = jnp.meshgrid(jnp.arange(size), jnp.arange(size),
                            indexing='ij')
  return jnp.stack([cols, rows], -1).astype(jnp.float32)


def _inside_polygon(polygon: jax.Array, size: int,
                    dilation: float) -> jax.Array:
  """(size, size) bool: pixel centres inside the convex `polygon` (K, 2),
  its vertices in order around it, scaled about its centroid by
  `dilation`."""
  centre = jnp.mean(polygon, axis=0)
  polygon = centre + dilation * (polygon - centre)
  grid = _pixel_centres(size)[..., None, :]
  edges = jnp.roll(polygon, -1, axis=0) - polygon
  to_pixel = grid - polygon
  cross = edges[:, 0] * to_pixel[..., 1] - edges[:, 1] * to_pixel[..., 0]
  return jnp.all(cross >= 0, -1) | jnp.all(cross <= 0, -1)


def _paint_openings(key, image, covered, marks, sh):
  """The background seen through the eye and mouth openings replaced by
  eyes (sclera, a random iris, pupil) and a dark mouth, lit by the light's
  response to a normal facing the camera.

  Args:
    key: PRNG key (iris colour).
    image: (S, S, 3); covered: (S, S, 1) pixels the face covers.
    marks: (68, 2) projected landmark vertices, pixels.
    sh: (9, 3) light.
  """
  size = image.shape[0]
  grid = _pixel_centres(size)
  light = shading.shade(jnp.ones((1, 3)), jnp.asarray([[0.0, 0.0, -1.0]]),
                        sh)[0]
  iris = head_lib.random_iris(key)
  for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
    corners = marks[jnp.asarray(eye)]
    centre = jnp.mean(corners, axis=0)
    width = jnp.linalg.norm(corners[3] - corners[0])
    distance = jnp.linalg.norm(grid - centre, axis=-1)[..., None]
    colour = jnp.where(distance < 0.28 * width, iris, head_lib.SCLERA)
    colour = jnp.where(distance < 0.11 * width, 0.03, colour)
    opening = _inside_polygon(corners, size, 1.3)[..., None] & ~covered
    image = jnp.where(opening, jnp.clip(colour * light, 0.0, 1.0), image)
  mouth = _inside_polygon(marks[jnp.asarray(lm.INNER_LIPS)], size,
                          1.3)[..., None] & ~covered
  return jnp.where(mouth, jnp.clip(jnp.asarray([0.28, 0.09, 0.08]) * light,
                                   0.0, 1.0), image)


def _occlude(key, image, marks, probability):
  """`image` (S, S, 3) with, at chance `probability`, an ellipse covering
  part of the face whose 68 projected landmarks are `marks` (68, 2)."""
  keys = jax.random.split(key, 5)
  size = image.shape[0]
  low, high = jnp.min(marks, 0), jnp.max(marks, 0)
  centre = low + jax.random.uniform(keys[0], (2,)) * (high - low)
  radii = jax.random.uniform(keys[1], (2,), minval=0.12, maxval=0.35) * (
      high - low)
  angle = jax.random.uniform(keys[2], (), maxval=jnp.pi)
  axes = jnp.asarray([[jnp.cos(angle), jnp.sin(angle)],
                      [-jnp.sin(angle), jnp.cos(angle)]])
  local = (_pixel_centres(size) - centre) @ axes.T / radii
  inside = (jnp.sum(local**2, -1) < 1.0)[..., None]
  colour = jax.random.uniform(keys[3], (3,), minval=0.05, maxval=0.9)
  # Lit from one side: brightness falls off across the ellipse.
  colour = colour * (0.75 + 0.25 * local[..., :1])
  present = jax.random.uniform(keys[4]) < probability
  return jnp.where(inside & present, jnp.clip(colour, 0.0, 1.0), image)


def outline_landmarks(model: fm.FaceModel, points: jax.Array,
                      normals: jax.Array) -> jax.Array:
  """(17,) vertex on the visible outline per jaw landmark: among each
  strip's front-facing candidates, the most grazing one (|n . view| least).
  """
  view = points / jnp.linalg.norm(points, axis=-1, keepdims=True)
  facing = jnp.sum(normals * view, axis=-1)  # < 0 faces the camera
  candidate_facing = facing[model.contour_candidates]
  score = jnp.where(model.contour_mask & (candidate_facing < 0),
                    -candidate_facing, jnp.inf)
  choice = jnp.argmin(score, axis=1)
  return jnp.take_along_axis(model.contour_candidates, choice[:, None], 1)[:,
                                                                           0]


def generate_face(key: jax.Array, model: fm.FaceModel,
                  layout: layout_lib.ParameterLayout,
                  intrinsics: camera.Intrinsics,
                  config: SyntheticConfig,
                  expression: Optional[jax.Array] = None,
                  head: Optional[head_lib.Head] = None
                  ) -> Dict[str, jax.Array]:
  """One synthetic face.

  Args:
    key: PRNG key of everything drawn.
    model, layout, intrinsics, config: the model, parameter layout, crop
      camera and distribution.
    expression: (me,) expression coefficients to render (e.g. of known
      blendshape weights), or None to draw them from the prior.
    head: render the rest of the head around the face (scalp with hair,
      ears, neck, eyeballs; `head.load_head`), its back faces culled and
      the mouth painted; None: the face alone.

  Returns:
    dict: 'image' (S, S, 3) float32 [0, 1]; 'landmarks' (68, 2) pixels;
    'landmark_confidence' (68,); 'params' (layout.base_size,) base-level
    parameter vector; 'vertices' (N, 3) true model-space geometry, mm;
    'albedo' (N, 3) true reflectance; 'overflow' () bool (rasterizer list
    overflowed: discard the sample).
  """
  keys = jax.random.split(key, 12)
  shape = (jax.random.normal(keys[0], (model.num_shape,)) * config.shape_std *
           model.shape_sigma)
  if expression is None:
    expression = (jax.random.normal(keys[1], (model.num_expression,)) *
                  config.expression_std * model.expression_sigma)
  reflectance = (jax.random.normal(keys[2], (model.num_reflectance,)) *
                 config.reflectance_std * model.reflectance_sigma)
  limits = jnp.radians(jnp.asarray([config.max_pitch, config.max_yaw,
                                    config.max_roll]))
  angles = jax.random.uniform(keys[3], (3,), minval=-1.0, maxval=1.0) * limits
  vertices = model.geometry(shape, expression)
  marks = vertices[model.landmark_vertices]
  extent_mm = jnp.max(jnp.max(marks[:, :2], 0) - jnp.min(marks[:, :2], 0))
  fraction = jax.random.uniform(keys[4], (),
                                minval=config.landmark_extent_range[0],
                                maxval=config.landmark_extent_range[1])
  focal = jnp.mean(jnp.asarray(intrinsics.focal_length))
  distance = focal * extent_mm / (fraction * config.image_size)
  room_mm = (1.0 - fraction) * config.image_size / 2 * distance / focal
  shift = jax.random.uniform(keys[5], (3,), minval=-1.0, maxval=1.0) * (
      config.max_shift * room_mm * jnp.asarray([1.0, 1.0, 0.0]))
  translation = camera.centring_translation(
      vertices, model.landmark_vertices, angles, distance) + shift
  sh = _random_light(keys[6], config.ambient_only)
  base_albedo = model.reflectance(reflectance)
  albedo = base_albedo
  count, triangles = model.num_vertices, model.triangles
  if head is not None:
    vertices = jnp.concatenate([vertices,
                                head_lib.geometry(head, shape, expression)])
    triangles = head.triangles
  gains = jnp.ones(3)
  if config.out_of_space:
    normals = mesh.vertex_normals(vertices, triangles)
    vertices = vertices + _smooth_bumps(keys[7], vertices, normals,
                                        config.bump_count,
                                        config.bump_amplitude_mm, count)
    # Melanin-like darkening absorbs blue and green more than red.
    darkness = jax.random.uniform(keys[8], (), maxval=config.max_darkness)
    gains = 1.0 - darkness * jnp.asarray([0.55, 0.68, 0.75])
    gains = gains * (1.0 + jax.random.uniform(keys[9], (3,), minval=-0.06,
                                              maxval=0.06))
    face = vertices[:count]
    albedo = albedo * gains + _colour_patches(keys[10], face,
                                              config.patch_count)
    beard_keys = jax.random.split(keys[11])
    has_beard = jax.random.uniform(beard_keys[0]) < config.beard_probability
    beard = _beard_weight(face, face[model.landmark_vertices],
                          beard_keys[1]) * has_beard
    albedo = albedo * (1 - beard[:, None]) + _HAIR_COLOUR * beard[:, None]
  if head is not None:
    skin = jnp.mean(base_albedo[model.skin_vertices], axis=0) * gains
    albedo = jnp.concatenate([albedo, head_lib.albedo(
        jax.random.fold_in(key, 97), head, skin)])
  albedo = jnp.clip(albedo, 0.02, 0.98)

  rotation = camera.pose_rotation(angles)
  points = camera.rigid_transform(vertices, rotation, translation)
  normals = mesh.vertex_normals(points, triangles)
  pixels = camera.project(points, intrinsics)
  size = config.image_size
  # A closed head hides its own back; the face alone is open, seen from
  # either side.
  fragments = raster.rasterize(
      jnp.concatenate([pixels, points[:, 2:]], -1), triangles,
      height=size, width=size, capacity=4 * size * size,
      cull_backfaces=head is not None)
  per_pixel = raster.interpolate(jnp.concatenate([normals, albedo], -1),
                                 triangles, fragments)
  colour = shading.shade(per_pixel[..., 3:],
                         mesh.safe_normalize(per_pixel[..., :3]), sh)
  covered = (fragments.triangle >= 0)[..., None]
  background = _background(jax.random.fold_in(key, 99), size)
  if config.background_grey >= 0:
    background = jnp.full_like(background, config.background_grey)
  image = jnp.where(covered, jnp.clip(colour, 0.0, 1.0), background)
  if config.painted_openings or head is not None:
    image = _paint_openings(jax.random.fold_in(key, 98), image, covered,
                            pixels[model.landmark_vertices], sh)

  if config.occluder_probability > 0:
    image = _occlude(jax.random.fold_in(key, 96), image,
                     pixels[model.landmark_vertices],
                     config.occluder_probability)

  indices = model.landmark_vertices.at[jnp.asarray(lm.CONTOUR)].set(
      outline_landmarks(model, points[:count], normals[:count]))
  marks = pixels[indices] + config.landmark_noise_px * jax.random.normal(
      jax.random.fold_in(key, 7), (lm.NUM_LANDMARKS, 2))
  params = layout_lib.FaceParams(
      shape=shape, expression=expression, reflectance=reflectance,
      rotation=angles, translation=translation, sh_base=sh,
      correctives_geometry=jnp.zeros(0), correctives_reflectance=jnp.zeros(0))
  base_layout = dataclasses.replace(layout, num_correctives=0,
                                    separate_final_sh=False)
  return {
      'image': image.astype(jnp.float32),
      'landmarks': marks.astype(jnp.float32),
      'landmark_confidence': jnp.ones(lm.NUM_LANDMARKS, jnp.float32),
      'params': base_layout.join(params).astype(jnp.float32),
      'vertices': vertices[:count].astype(jnp.float32),
      'albedo': albedo[:count].astype(jnp.float32),
      'overflow': fragments.overflow,
  }


@functools.partial(jax.jit, static_argnames=('layout', 'config', 'count'))
def generate_batch(key: jax.Array, model: fm.FaceModel,
                   layout: layout_lib.ParameterLayout,
                   intrinsics: camera.Intrinsics, config: SyntheticConfig,
                   count: int, head: Optional[head_lib.Head] = None
                   ) -> Dict[str, jax.Array]:
  """`count` faces from one key (stacked along a leading axis); `head` as
  in `generate_face`."""
  return jax.vmap(lambda k: generate_face(k, model, layout, intrinsics,
                                          config, head=head))(
                                              jax.random.split(key, count))


def to_example(face: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Numpy storage form: uint8 image, float16 geometry and albedo."""
  return {
      'image': np.round(np.clip(face['image'], 0, 1) * 255).astype(np.uint8),
      'landmarks': np.asarray(face['landmarks'], np.float32),
      'landmark_confidence': np.asarray(face['landmark_confidence'],
                                        np.float32),
      'params': np.asarray(face['params'], np.float32),
      'vertices': np.asarray(face['vertices'], np.float16),
      'albedo': np.asarray(face['albedo'], np.float16),
  }
