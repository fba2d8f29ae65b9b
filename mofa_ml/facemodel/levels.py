"""The two levels of one reconstructed face (paper Sec. 4), composed once.

    base:  v_b(alpha), r_b(beta), lit by gamma_base
    final: v_b + F_g, r_b + F_r, lit by gamma_final (gamma_base where the
           layout shares the light)

Training, fitting, evaluation and pictures all take their surfaces and
point renderings from here, so the base surface is computed once per face
and the final level's light is chosen in one place (`final_light`).
"""

from typing import NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.rendering import camera
from mofa_ml.rendering import formation

LEVELS = ('base', 'final')


class Surface(NamedTuple):
  """One level's model-space surface and light (a pytree).

  Attributes:
    vertices: (N, 3) positions, mm, model space.
    reflectance: (N, 3) albedo, RGB (nominally [0, 1]; not clipped).
    sh: (9, 3) irradiance coefficients, camera frame.
  """
  vertices: jax.Array
  reflectance: jax.Array
  sh: jax.Array


def final_light(params: layout_lib.FaceParams) -> jax.Array:
  """(9, 3) the final level's light: its own, or the base one if shared."""
  return params.sh_base if params.sh_final is None else params.sh_final


@jax.jit  # outside a jit (the files of a face) one program, not op by op
def surfaces(model: fm.FaceModel, params: layout_lib.FaceParams,
             geometry_offsets: Optional[jax.Array] = None,
             reflectance_offsets: Optional[jax.Array] = None
             ) -> Tuple[Surface, Surface]:
  """(base, final) surfaces of one face.

  Args:
    model: the base-level face model (N vertices).
    params: unbatched FaceParams.
    geometry_offsets: (N, 3) F_g, mm; None for none.
    reflectance_offsets: (N, 3) F_r; None for none.
  """
  vertices = model.geometry(params.shape, params.expression)
  reflectance = model.reflectance(params.reflectance)
  base = Surface(vertices, reflectance, params.sh_base)
  final = Surface(
      vertices if geometry_offsets is None else vertices + geometry_offsets,
      reflectance if reflectance_offsets is None else
      reflectance + reflectance_offsets, final_light(params))
  return base, final


def render(model: fm.FaceModel, surface: Surface,
           params: layout_lib.FaceParams,
           intrinsics: camera.Intrinsics) -> formation.PointRendering:
  """Point rendering of one surface at the face's pose."""
  return formation.render_points(surface.vertices, surface.reflectance,
                                 model.triangles, params.rotation,
                                 params.translation, surface.sh, intrinsics)


def render_levels(model: fm.FaceModel, params: layout_lib.FaceParams,
                  intrinsics: camera.Intrinsics,
                  geometry_offsets: Optional[jax.Array] = None,
                  reflectance_offsets: Optional[jax.Array] = None
                  ) -> Tuple[formation.PointRendering,
                             formation.PointRendering]:
  """(base, final) point renderings of one face; under `jit`, a level whose
  outputs are unused is not computed.

  Args:
    model, params, geometry_offsets, reflectance_offsets: see `surfaces`.
    intrinsics: the camera.
  """
  base, final = surfaces(model, params, geometry_offsets, reflectance_offsets)
  return (render(model, base, params, intrinsics),
          render(model, final, params, intrinsics))


def landmark_vertex_indices(model: fm.FaceModel, points: jax.Array,
                            detected: jax.Array,
                            intrinsics: camera.Intrinsics) -> jax.Array:
  """(68,) vertex per landmark: fixed for inner ones, sliding on the jaw.

  Args:
    model: the face model.
    points: (N, 3) camera-space vertices, mm.
    detected: (68, 2) landmarks, pixels.
    intrinsics: the camera.
  """
  contour = lm.sliding_contour_vertices(
      points, detected[jnp.asarray(lm.CONTOUR)], intrinsics,
      model.contour_candidates, model.contour_mask)
  return model.landmark_vertices.at[jnp.asarray(lm.CONTOUR)].set(contour)


@jax.jit  # outside a jit (the files, video agreement) one program
def projected_landmarks(model: fm.FaceModel, vertices: jax.Array,
                        params: layout_lib.FaceParams, detected: jax.Array,
                        intrinsics: camera.Intrinsics) -> jax.Array:
  """(68, 2) pixels of a face's landmark vertices: the vertices the fit
  compares, inner ones fixed and the jaw's sliding to the silhouette along
  the (68, 2) `detected` points' rays (as the iBUG outline is marked: the
  fixed jaw vertices sit inside a turned head's outline).

  Args:
    model: the face model.
    vertices: (N, 3) model-space positions of either level, mm.
    params: the face's pose (rotation, translation).
    detected: (68, 2) landmarks, pixels.
    intrinsics: the camera.
  """
  points = camera.rigid_transform(
      vertices, camera.pose_rotation(params.rotation), params.translation)
  return camera.project(points, intrinsics)[landmark_vertex_indices(
      model, points, detected, intrinsics)]
