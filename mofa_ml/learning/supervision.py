"""Supervised terms for training faces whose truth is known (on-device
synthetic batches, `data/on_device.py`).

The paper trains with self-supervision alone; on synthetic faces the truth
is free, and supervising the base level with it gives the trunk what the
photometric term cannot: metric shape (the photo does not fix scale against
distance), and albedo apart from light. The self-supervised terms stay in
the same step, so the correctives still learn as the paper's do, and the
same step trains on real photos, which have no truth, with these weights at
0.

Every term is a mean of squares over the face's vertices:
  geometry     model-space base geometry vs the true geometry (which holds
               the out-of-space bumps), in `length_unit_mm`;
  projection   the projected base vertices vs the projected true vertices,
               in `landmark_unit_px` (pose and distance);
  reflectance  base albedo vs the true albedo (RGB);
  light        the base SH coefficients vs the true ones.

Besides the terms, `METRICS` are logged, never weighted:
  geometry_mean_face  the geometry term of the mean face (all shape and
               expression coefficients zero) on the same faces: the baseline
               a shape prediction has to beat. It is the raw model-space
               term (no alignment), as `geometry` is; a rigidly or
               similarity-aligned error of the mean face is much smaller
               (about 0.34 and 0.24 cm^2 against 0.45 on the on_device
               distribution) and is not comparable with `geometry`.
"""

import dataclasses
from typing import Dict, Mapping

import chex
import jax
import jax.numpy as jnp

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.rendering import camera

TERMS = ('geometry', 'projection', 'reflectance', 'light')
METRICS = ('geometry_mean_face',)


def _pixels(vertices, params, intrinsics):
  points = camera.rigid_transform(
      vertices, camera.pose_rotation(params.rotation), params.translation)
  return camera.project(points, intrinsics)


def face_supervision(model: fm.FaceModel, intrinsics: camera.Intrinsics,
                     params: layout_lib.FaceParams,
                     truth: layout_lib.FaceParams, vertices: jax.Array,
                     albedo: jax.Array, length_unit_mm: float,
                     landmark_unit_px: float) -> Dict[str, jax.Array]:
  """The terms of `TERMS` for one face (unweighted).

  Args:
    model: the base-level face model (N vertices).
    intrinsics: the crop's camera.
    params: the predicted FaceParams (unbatched).
    truth: the true base-level FaceParams (no correctives).
    vertices: (N, 3) true model-space geometry, mm.
    albedo: (N, 3) true reflectance.
    length_unit_mm, landmark_unit_px: the objective's units.

  Returns:
    {name: () value} for the names of `TERMS` and `METRICS`.
  """
  chex.assert_shape([vertices, albedo], (model.num_vertices, 3))
  base = levels.surfaces(model, params)[0]
  projected = _pixels(base.vertices, params, intrinsics)
  true_projected = _pixels(vertices, truth, intrinsics)
  return {
      'geometry': jnp.mean(jnp.sum(
          ((base.vertices - vertices) / length_unit_mm)**2, -1)),
      'projection': jnp.mean(jnp.sum(
          ((projected - true_projected) / landmark_unit_px)**2, -1)),
      'reflectance': jnp.mean(jnp.sum((base.reflectance - albedo)**2, -1)),
      'light': jnp.mean(jnp.sum((params.sh_base - truth.sh_base)**2, -1)),
      'geometry_mean_face': jax.lax.stop_gradient(jnp.mean(jnp.sum(
          ((model.mean_shape - vertices) / length_unit_mm)**2, -1))),
  }


def batch_supervision(model: fm.FaceModel, intrinsics: camera.Intrinsics,
                      layout: layout_lib.ParameterLayout,
                      params: layout_lib.FaceParams,
                      batch: Mapping[str, jax.Array], length_unit_mm: float,
                      landmark_unit_px: float) -> Dict[str, jax.Array]:
  """Batch mean of `face_supervision`, faces the rasterizer overflowed on
  left out.

  Args:
    layout: the network's layout (its base part parses the truth).
    params: predicted FaceParams with a leading batch axis B.
    batch: 'params' (B, layout.base_size), 'vertices' and 'albedo'
      (B, N, 3), 'overflow' (B,) bool.
  """
  # The truth's layout: the base level alone (`synthetic.generate_face`).
  truth_layout = dataclasses.replace(layout, num_correctives=0,
                                     separate_final_sh=False)
  def one(predicted, true_vector, vertices, albedo):
    truth = truth_layout.split(true_vector)
    return face_supervision(model, intrinsics, predicted, truth, vertices,
                            albedo, length_unit_mm, landmark_unit_px)
  per_face = jax.vmap(one)(params, batch['params'], batch['vertices'],
                           batch['albedo'])
  kept = 1.0 - batch['overflow'].astype(jnp.float32)
  count = jnp.maximum(jnp.sum(kept), 1.0)
  return {name: jnp.sum(value * kept) / count
          for name, value in per_face.items()}
