"""Which vertices the photo really shows, and reflectance that respects it.

Per-image reflectance correctives follow whatever pixel a vertex projects
to, also where the vertex is hidden behind the nose or seen at a grazing
angle: there they copy the background or the hair. `seen_weights` measures
how well the photo shows each vertex (depth-tested visibility times a
smooth ramp in the viewing angle, smoothed over the mesh) and
`trusted_reflectance_offsets` keeps each corrective in proportion, filling
the rest from the vertex's mirror image where that one is seen, else
leaving the base reflectance.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.spatial

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.rendering import camera
from mofa_ml.rendering import raster

# Cosine of the angle between normal and view ray: below the first value a
# vertex is not trusted at all, above the second fully.
GRAZING_COSINES = (0.2, 0.5)
SMOOTHING_ITERATIONS = 4
MIRROR_TOLERANCE_MM = 2.0


def mirror_vertices(vertices: np.ndarray,
                    tolerance_mm: float = MIRROR_TOLERANCE_MM) -> np.ndarray:
  """(N,) index of each vertex's mirror image across the model's x = 0
  plane, or -1 where no vertex lies within `tolerance_mm` of it.

  Args:
    vertices: (N, 3) a symmetric face (e.g. the mean shape), mm.
  """
  vertices = np.asarray(vertices, np.float64)
  distance, index = scipy.spatial.cKDTree(vertices).query(
      vertices * np.array([-1.0, 1.0, 1.0]))
  return np.where(distance <= tolerance_mm, index, -1).astype(np.int32)


def _smoothstep(x, low, high):
  t = jnp.clip((x - low) / (high - low), 0.0, 1.0)
  return t * t * (3.0 - 2.0 * t)


@functools.partial(jax.jit, static_argnames=('height', 'width'))
def seen_weights(model: fm.FaceModel, params: layout_lib.FaceParams,
                 geometry_offsets: jax.Array, intrinsics: camera.Intrinsics,
                 height: int, width: int) -> jax.Array:
  """(N,) in [0, 1]: how well the image shows each final-level vertex.

  1 for a vertex that is in front (depth test), inside the image and faces
  the camera at a steep angle; 0 for a hidden, outside or edge-on one; a
  smooth ramp between (then a few rounds of 1-ring averaging, so the
  blend has no seams).
  """
  final = levels.render_levels(model, params, intrinsics, geometry_offsets,
                               None)[1]
  screen = jnp.concatenate([final.pixels, final.points[:, 2:]], -1)
  fragments = raster.rasterize(screen, model.triangles, height=height,
                               width=width, capacity=4 * height * width)
  unoccluded = raster.vertex_visibility(screen, fragments)
  view = -final.points / jnp.linalg.norm(final.points, axis=-1,
                                         keepdims=True)
  cosine = jnp.sum(final.normals * view, axis=-1)
  u, v = final.pixels[:, 0], final.pixels[:, 1]
  inside = (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1)
  weight = unoccluded * inside * _smoothstep(cosine, *GRAZING_COSINES)
  mask = model.neighbor_mask.astype(weight.dtype)
  for _ in range(SMOOTHING_ITERATIONS):
    # A hidden vertex stays at 0: smoothing only softens the seen side.
    weight = jnp.minimum(weight, jnp.sum(weight[model.neighbors] * mask, 1) /
                         jnp.maximum(jnp.sum(mask, 1), 1.0))
  return weight


def trusted_reflectance_offsets(offsets: jax.Array, weights: jax.Array,
                                mirror: jax.Array) -> jax.Array:
  """(N, 3) F_r kept where seen, else taken from the seen mirror vertex.

  r_i = w_i F_i + (1 - w_i) w_m(i) F_m(i), with w_m(i) = 0 where a vertex
  has no mirror (m(i) = -1).

  Args:
    offsets: (N, 3) reflectance correctives F_r.
    weights: (N,) `seen_weights`.
    mirror: (N,) `mirror_vertices`.
  """
  has_mirror = mirror >= 0
  safe = jnp.where(has_mirror, mirror, 0)
  mirrored_weight = jnp.where(has_mirror, weights[safe], 0.0)
  return (weights[:, None] * offsets + ((1.0 - weights) * mirrored_weight)[
      :, None] * offsets[safe])
