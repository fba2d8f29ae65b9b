"""The self-supervised objective E_total of one batch (paper eqs. 6-8).

    E = E_sparse + w_photo (E_photo^base + E_photo^final)
        + w_reg (E_std + w_smo E_smo + w_ref E_ref + w_glo E_glo + w_sta E_sta)

Both levels are formed by the point-based renderer; the landmark term uses
the base level (eq. 10); the final-level terms are skipped when
`final_level` is False (stage 1, where the paper uses "the photometric
alignment term on the base level" only).

Units that keep the paper's weights balanced (they are not stated in the
paper; these choices are ours and configurable):
  * colours in [0, 1], as the paper's evaluation states;
  * landmark distances in units of `landmark_unit_px` (24 px, a tenth of the
    240 px crop), which gives the landmark-to-photometric balance of
    Deep3DFaceRecon's weights (1.6e-3 per px^2 against 1.92);
  * corrective displacements in `length_unit_mm` (10 mm: centimetres, the
    ICT model's own unit) inside E_smo and E_sta. Measured on the synthetic
    benchmark (docs/results.md): with decimetres the stabilization term is
    too weak and the geometry correctives drift (per-image fitting: final
    3.05 mm against base 2.64 mm; a regressor: 10.7 against 4.1 mm); with
    2 mm they stay at zero; with centimetres fitting's final level is no
    worse than its base while most of the photometric gain remains.
"""

import dataclasses
from typing import Dict

import jax
import jax.numpy as jnp

from mofa_ml import camera
from mofa_ml import face_model as fm
from mofa_ml import formation
from mofa_ml import landmarks as lm
from mofa_ml import losses
from mofa_ml import metrics as metrics_lib
from mofa_ml import network


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Loss weights and units (hashable: usable as a static jit argument).

  Defaults are the paper's stage-1 weights; `stage2()` gives stage 2's.
  """
  photo: float = 1.9
  reg: float = 3e-5
  rstd: float = 0.002
  smo: float = 0.0
  ref: float = 0.0
  glo: float = 0.0
  sta: float = 0.0
  final_level: bool = False
  landmark_unit_px: float = 24.0
  length_unit_mm: float = 10.0
  reflectance_p: float = 0.9
  chroma_sharpness: float = 50.0
  skin_partners: int = 6

  @classmethod
  def stage2(cls, **overrides) -> 'LossConfig':
    values = dict(photo=0.2, reg=0.003, rstd=0.002, smo=3.2e4, ref=13.0,
                  glo=80.0, sta=0.08, final_level=True)
    values.update(overrides)
    return cls(**values)


def landmark_vertex_indices(model: fm.FaceModel, points: jax.Array,
                            detected: jax.Array,
                            intrinsics: camera.Intrinsics) -> jax.Array:
  """(68,) vertex per landmark: fixed for inner ones, sliding on the jaw."""
  contour = losses.sliding_contour_vertices(
      points, detected[jnp.asarray(lm.CONTOUR)], intrinsics,
      model.contour_candidates, model.contour_mask)
  return model.landmark_vertices.at[jnp.asarray(lm.CONTOUR)].set(contour)


def face_objective(model: fm.FaceModel, intrinsics: camera.Intrinsics,
                   config: LossConfig, params, geometry_offsets: jax.Array,
                   reflectance_offsets: jax.Array, image: jax.Array,
                   detected: jax.Array, confidence: jax.Array,
                   key: jax.Array) -> Dict[str, jax.Array]:
  """All terms for one face.

  Args:
    model: the base-level face model.
    intrinsics: the crop's camera.
    config: weights and units.
    params: unbatched FaceParams.
    geometry_offsets, reflectance_offsets: (N, 3) F_g (mm), F_r.
    image: (H, W, 3) the photo, [0, 1].
    detected: (68, 2) landmarks, pixels.
    confidence: (68,) in [0, 1], 0 for missing landmarks.
    key: PRNG key for the random skin partners.

  Returns:
    dict with 'total', each weighted-in term ('sparse', 'photo_base',
    'photo_final', 'std', 'smo', 'ref', 'glo', 'sta', unweighted) and
    metrics ('landmark_error_px', 'photometric_error_base',
    'photometric_error_final': mean RGB distance over visible vertices).
  """
  terms = {}
  base = formation.render_level(model, params, intrinsics)
  observed_base, inside = formation.sample_image(image, base.pixels)
  visible_base = base.visible * inside
  terms['photo_base'] = losses.photometric(observed_base, base.colors,
                                           visible_base)
  indices = landmark_vertex_indices(model, base.points, detected, intrinsics)
  unit = config.landmark_unit_px
  terms['sparse'] = losses.sparse_landmarks(
      detected / unit, base.pixels[indices] / unit, confidence)
  terms['std'] = losses.statistical(
      params.shape, params.expression, params.reflectance, model.shape_sigma,
      model.expression_sigma, model.reflectance_sigma, config.rstd)
  metrics = {
      'landmark_error_px': jnp.sum(
          (confidence > 0) * jnp.linalg.norm(detected - base.pixels[indices],
                                             axis=-1)) /
                           jnp.maximum(jnp.sum(confidence > 0), 1),
      'photometric_error_base': metrics_lib.photometric_error(
          observed_base, base.colors, visible_base),
  }
  zero = jnp.zeros((), base.pixels.dtype)
  terms.update(photo_final=zero, smo=zero, ref=zero, glo=zero, sta=zero)
  if config.final_level:
    vertices, albedo, sh = formation.level_surface(
        model, params, geometry_offsets, reflectance_offsets)
    final = formation.render_points(vertices, albedo, model.triangles,
                                    params.rotation, params.translation, sh,
                                    intrinsics)
    observed_final, inside = formation.sample_image(image, final.pixels)
    visible_final = final.visible * inside
    terms['photo_final'] = losses.photometric(observed_final, final.colors,
                                              visible_final)
    metrics['photometric_error_final'] = metrics_lib.photometric_error(
        observed_final, final.colors, visible_final)
    offsets = geometry_offsets / config.length_unit_mm
    terms['smo'] = losses.corrective_smoothness(offsets, model.neighbors,
                                                model.neighbor_mask)
    terms['sta'] = losses.stabilization(offsets)
    weights = losses.chromaticity_weights(observed_final, model.neighbors,
                                          config.chroma_sharpness)
    terms['ref'] = losses.reflectance_sparsity(
        albedo, model.neighbors, model.neighbor_mask, weights,
        config.reflectance_p)
    partners = losses.draw_skin_partners(key, model.skin_vertices,
                                         config.skin_partners)
    terms['glo'] = losses.global_reflectance_constancy(
        albedo, model.skin_vertices, partners)
  terms['total'] = (
      terms['sparse'] +
      config.photo * (terms['photo_base'] + terms['photo_final']) +
      config.reg * (terms['std'] + config.smo * terms['smo'] +
                    config.ref * terms['ref'] + config.glo * terms['glo'] +
                    config.sta * terms['sta']))
  terms.update(metrics)
  return terms


def batch_objective(model: fm.FaceModel, intrinsics: camera.Intrinsics,
                    config: LossConfig, prediction: network.Prediction,
                    batch: Dict[str, jax.Array],
                    key: jax.Array) -> Dict[str, jax.Array]:
  """Mean over the batch of `face_objective`.

  Args:
    batch: 'image' (B, H, W, 3) float in [0, 1], 'landmarks' (B, 68, 2)
      pixels, 'landmark_confidence' (B, 68).
  """
  keys = jax.random.split(key, batch['image'].shape[0])
  per_face = jax.vmap(
      lambda p, g, r, i, l, c, k: face_objective(model, intrinsics, config, p,
                                                 g, r, i, l, c, k))(
          prediction.params, prediction.geometry_offsets,
          prediction.reflectance_offsets, batch['image'], batch['landmarks'],
          batch['landmark_confidence'], keys)
  return jax.tree_util.tree_map(jnp.mean, per_face)
