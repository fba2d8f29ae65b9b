"""The self-supervised objective E_total of one batch (paper eqs. 6-8).

    E = E_sparse + w_photo (E_photo^base + E_photo^final)
        + w_reg (E_std + w_smo E_smo + w_ref E_ref + w_glo E_glo + w_sta E_sta)

The terms are data: `TERMS` names each one, the function computing it, the
level it needs, its weight and the paper's value of that weight per stage.
The total, the logged names and the configs' weight fields all come from
that table, so a new term is a function in `losses.py` and a row here.

Both levels are formed by the point-based renderer (`levels`); the landmark
term uses the base level (eq. 10). Final-level terms are left out (zero)
when `final_level` is False: in stage 1 the paper uses "the photometric
alignment term on the base level" only.

Units that keep the paper's weights balanced (they are not stated in the
paper; these choices are ours and configurable):
  * colours in [0, 1], as the paper's evaluation states;
  * landmark distances in units of `landmark_unit_px` (24 px, a tenth of the
    240 px crop), which gives the landmark-to-photometric balance of
    Deep3DFaceRecon's weights (1.6e-3 per px^2 against 1.92);
  * corrective displacements in `length_unit_mm` (10 mm: centimetres, the
    ICT model's own unit) inside E_smo and E_sta.
"""

import dataclasses
from typing import Callable, Dict, Mapping, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from mofa_ml import metrics
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.learning import losses
from mofa_ml.learning import photometric_support
from mofa_ml.rendering import camera
from mofa_ml.rendering import formation

STAGES = ('stage1', 'stage2')


class FaceState(NamedTuple):
  """What the terms of one face read (a pytree; final-level fields are None
  when the final level is not formed).

  Attributes:
    model: the face model.
    params: unbatched FaceParams.
    geometry_offsets, reflectance_offsets: (N, 3) F_g (mm), F_r.
    final_reflectance: (N, 3) final-level albedo.
    detected: (68, 2) landmarks, pixels; confidence: (68,).
    projected: (68, 2) the model's landmark vertices projected, pixels.
    base, final: PointRendering of each level.
    observed_base, observed_final: (N, 3) the photo sampled at each level's
      projected vertices; visible_base, visible_final: (N,) 0/1.
    key: PRNG key for randomised terms.
  """
  model: fm.FaceModel
  params: layout_lib.FaceParams
  geometry_offsets: jax.Array
  reflectance_offsets: jax.Array
  final_reflectance: Optional[jax.Array]
  detected: jax.Array
  confidence: jax.Array
  projected: jax.Array
  base: formation.PointRendering
  observed_base: jax.Array
  visible_base: jax.Array
  final: Optional[formation.PointRendering]
  observed_final: Optional[jax.Array]
  visible_final: Optional[jax.Array]
  key: jax.Array


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Weights and units of the objective (hashable: a static jit argument).

  Attributes:
    weights: ((name, value), ...) for every weight that `TERMS` names.
    final_level: form the final level and include its terms.
    landmark_unit_px, length_unit_mm: see the module docstring.
    reflectance_p: exponent of the l2,p reflectance sparsity (eq. 13).
    chroma_sharpness: of the chromaticity weights (eq. 13).
    skin_partners: random partners per skin vertex (eq. 14).
    visibility: which vertices the photometric terms compare: 'backface'
      (the paper's) or 'raster' (depth-tested, footprint on the face; see
      `photometric_support`).
    depth_tolerance_mm: of the 'raster' depth test.
    raster_correction: with 'raster', compare the photo with the rendered
      picture's colour at each vertex (a constant offset) rather than the
      vertex's own.
    shape_prior_std, expression_prior_std: the statistical prior's standard
      deviations of the shape and of the expression coefficients in units
      of the model's sigmas (1: the paper's E_std).
    outlier_sigmas: 0 (the paper's), or weigh the base level's photometric
      term per vertex by how well the reflectance model explains the photo
      there, k = this many prior sigmas
      (`photometric_support.reflectance_outlier_weights`).
  """
  weights: Tuple[Tuple[str, float], ...]
  final_level: bool = False
  landmark_unit_px: float = 24.0
  length_unit_mm: float = 10.0
  reflectance_p: float = 0.9
  chroma_sharpness: float = 50.0
  skin_partners: int = 6
  visibility: str = 'backface'
  depth_tolerance_mm: float = 1.0
  raster_correction: bool = False
  shape_prior_std: float = 1.0
  expression_prior_std: float = 1.0
  outlier_sigmas: float = 0.0

  def __post_init__(self):
    for name in ('shape_prior_std', 'expression_prior_std'):
      if getattr(self, name) <= 0:
        raise ValueError(f'{name} is positive, not {getattr(self, name)}')
    if self.outlier_sigmas < 0:
      raise ValueError(f'outlier_sigmas is 0 (off) or positive, not '
                       f'{self.outlier_sigmas}')
    if self.visibility not in ('backface', 'raster'):
      raise ValueError(f'visibility is backface or raster, not '
                       f'{self.visibility!r}')
    missing = sorted(set(weight_names()) - set(dict(self.weights)))
    if missing:
      raise ValueError(f'loss weights missing: {", ".join(missing)}')

  @classmethod
  def for_stage(cls, stage: str, **overrides) -> 'LossConfig':
    """The paper's weights of 'stage1' or 'stage2'; `overrides` replaces
    weights (by name) or other fields."""
    weights = paper_weights(stage)
    for name in list(overrides):
      if name in weights:
        weights[name] = overrides.pop(name)
    overrides.setdefault('final_level', stage == 'stage2')
    return cls(weights=tuple(sorted(weights.items())), **overrides)

  def weight(self, name: Optional[str]) -> float:
    return 1.0 if name is None else dict(self.weights)[name]


@dataclasses.dataclass(frozen=True)
class Term:
  """One row of the loss table.

  Attributes:
    name: the term's name in logs and in `face_objective`'s result.
    compute: (FaceState, LossConfig) -> () unweighted value.
    level: 'base' or 'final' (needs the final level, stage 2).
    weight: the config field of its weight (None: weight 1).
    paper: (stage 1, stage 2) values of `weight` (supplement Sec. 1).
    scaled_by: a further weight multiplying this one (the paper's w_reg).
  """
  name: str
  compute: Callable[[FaceState, LossConfig], jax.Array]
  level: str
  weight: Optional[str] = None
  paper: Tuple[float, float] = (1.0, 1.0)
  scaled_by: Optional[str] = None


def _sparse(face, config):
  unit = config.landmark_unit_px
  return losses.sparse_landmarks(face.detected / unit, face.projected / unit,
                                 face.confidence)


def _corrective_length(face, config):
  return face.geometry_offsets / config.length_unit_mm


TERMS = (
    Term('sparse', _sparse, 'base'),
    Term('photo_base', lambda face, _: losses.photometric(
        face.observed_base, face.base.colors, face.visible_base), 'base',
         'photo', (1.9, 0.2)),
    Term('std_geometry', lambda face, config: losses.statistical_geometry(
        face.params.shape, face.params.expression,
        face.model.shape_sigma * config.shape_prior_std,
        face.model.expression_sigma * config.expression_prior_std), 'base',
         'reg', (3e-5, 0.003)),
    Term('std_reflectance', lambda face, _: losses.statistical_reflectance(
        face.params.reflectance, face.model.reflectance_sigma), 'base',
         'rstd', (0.002, 0.002), 'reg'),
    Term('photo_final', lambda face, _: losses.photometric(
        face.observed_final, face.final.colors, face.visible_final), 'final',
         'photo', (1.9, 0.2)),
    Term('smo', lambda face, config: losses.corrective_smoothness(
        _corrective_length(face, config), face.model.neighbors,
        face.model.neighbor_mask), 'final', 'smo', (0.0, 3.2e4), 'reg'),
    Term('ref', lambda face, config: losses.reflectance_sparsity(
        face.final_reflectance, face.model.neighbors, face.model.neighbor_mask,
        losses.chromaticity_weights(face.observed_final, face.model.neighbors,
                                    config.chroma_sharpness),
        config.reflectance_p), 'final', 'ref', (0.0, 13.0), 'reg'),
    Term('glo', lambda face, config: losses.global_reflectance_constancy(
        face.final_reflectance, face.model.skin_vertices,
        losses.draw_skin_partners(face.key, face.model.skin_vertices,
                                  config.skin_partners)), 'final', 'glo',
         (0.0, 80.0), 'reg'),
    Term('sta', lambda face, config: losses.stabilization(
        _corrective_length(face, config)), 'final', 'sta', (0.0, 0.08), 'reg'),
)
TERM_NAMES = tuple(term.name for term in TERMS)
METRIC_NAMES = ('landmark_error_px', 'photometric_error_base',
                'photometric_error_final')


def weight_names() -> Tuple[str, ...]:
  """Every weight the table names, in table order."""
  names = []
  for term in TERMS:
    for name in (term.weight, term.scaled_by):
      if name is not None and name not in names:
        names.append(name)
  return tuple(names)


def paper_weights(stage: str) -> Dict[str, float]:
  """{weight name: the paper's value} for 'stage1' or 'stage2'."""
  if stage not in STAGES:
    raise ValueError(f'stage is one of {", ".join(STAGES)}, not {stage!r}')
  index = STAGES.index(stage)
  values = {}
  for term in TERMS:
    if term.weight is not None:
      value = term.paper[index]
      if values.setdefault(term.weight, value) != value:
        raise ValueError(f'weight {term.weight!r} has two paper values')
  return values


def level_support(model: fm.FaceModel, config: LossConfig,
                  rendering: formation.PointRendering,
                  surface: levels.Surface, image: jax.Array,
                  base: bool) -> photometric_support.Support:
  """One level's photometric support (constants) under `config`; `base`:
  the base level (the only one `outlier_sigmas` weighs: the final level's
  reflectance correctives are there to explain what the model cannot)."""
  if config.visibility == 'backface':
    support = photometric_support.backface_support(rendering)
  else:
    support = photometric_support.raster_support(
        model, rendering, surface.reflectance, surface.sh, image.shape[0],
        image.shape[1], config.depth_tolerance_mm, config.raster_correction)
  if base and config.outlier_sigmas > 0:
    observed, inside = formation.sample_image(image, rendering.pixels)
    support = support._replace(
        visible=support.visible * photometric_support.
        reflectance_outlier_weights(model, rendering, observed,
                                    support.visible * inside, surface.sh,
                                    config.outlier_sigmas))
  return support


def supports(model: fm.FaceModel, intrinsics: camera.Intrinsics,
             config: LossConfig, params: layout_lib.FaceParams,
             geometry_offsets: jax.Array, reflectance_offsets: jax.Array,
             image: jax.Array) -> Tuple[photometric_support.Support,
                                        photometric_support.Support]:
  """(base, final) photometric supports at an estimate, for callers that
  hold them fixed over several steps (they are constants anyway)."""
  return tuple(
      level_support(model, config,
                    levels.render(model, surface, params, intrinsics),
                    surface, image, index == 0)
      for index, surface in enumerate(levels.surfaces(
          model, params, geometry_offsets, reflectance_offsets)))


def face_objective(model: fm.FaceModel, intrinsics: camera.Intrinsics,
                   config: LossConfig, params: layout_lib.FaceParams,
                   geometry_offsets: jax.Array,
                   reflectance_offsets: jax.Array, image: jax.Array,
                   detected: jax.Array, confidence: jax.Array,
                   key: jax.Array,
                   support: Optional[Tuple[photometric_support.Support,
                                           photometric_support.Support]] = None
                   ) -> Dict[str, jax.Array]:
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
    support: (base, final) photometric supports held fixed (see `supports`);
      None: computed at `params`.

  Returns:
    dict with 'total', every term of `TERMS` (unweighted; 0 for final-level
    terms without the final level) and the metrics of `METRIC_NAMES`
    ('landmark_error_px'; 'photometric_error_*': mean RGB distance over
    visible vertices).
  """
  base_surface, final_surface = levels.surfaces(
      model, params, geometry_offsets, reflectance_offsets)
  def compared(index, surface):
    """A level's rendering (picture-corrected colours), the photo at its
    vertices and which of them the photometric term uses."""
    rendering = levels.render(model, surface, params, intrinsics)
    level = support[index] if support else level_support(
        model, config, rendering, surface, image, index == 0)
    rendering = rendering._replace(colors=rendering.colors + level.correction)
    observed, inside = formation.sample_image(image, rendering.pixels)
    return rendering, observed, level.visible * inside

  base, observed_base, visible_base = compared(0, base_surface)
  indices = levels.landmark_vertex_indices(model, base.points, detected,
                                           intrinsics)
  final = observed_final = visible_final = None
  if config.final_level:
    final, observed_final, visible_final = compared(1, final_surface)
  face = FaceState(
      model=model, params=params, geometry_offsets=geometry_offsets,
      reflectance_offsets=reflectance_offsets,
      final_reflectance=final_surface.reflectance, detected=detected,
      confidence=confidence, projected=base.pixels[indices], base=base,
      observed_base=observed_base, visible_base=visible_base, final=final,
      observed_final=observed_final, visible_final=visible_final, key=key)

  zero = jnp.zeros((), base.pixels.dtype)
  result = {'total': zero}
  for term in TERMS:
    if term.level == 'final' and not config.final_level:
      result[term.name] = zero
      continue
    value = term.compute(face, config)
    result[term.name] = value
    result['total'] = result['total'] + (
        config.weight(term.weight) * config.weight(term.scaled_by) * value)

  result['landmark_error_px'] = losses.mean_landmark_distance(
      detected - face.projected, confidence)
  # The metrics count every compared vertex alike, whatever its weight.
  result['photometric_error_base'] = metrics.photometric_error(
      observed_base, base.colors, visible_base > 0)
  result['photometric_error_final'] = zero if final is None else (
      metrics.photometric_error(observed_final, final.colors,
                                visible_final > 0))
  return result


def batch_objective(model: fm.FaceModel, intrinsics: camera.Intrinsics,
                    config: LossConfig, params: layout_lib.FaceParams,
                    geometry_offsets: jax.Array,
                    reflectance_offsets: jax.Array,
                    batch: Mapping[str, jax.Array],
                    key: jax.Array) -> Dict[str, jax.Array]:
  """Mean over the batch of `face_objective`.

  Args:
    params: FaceParams with a leading batch axis B.
    geometry_offsets, reflectance_offsets: (B, N, 3).
    batch: 'image' (B, H, W, 3) float in [0, 1], 'landmarks' (B, 68, 2)
      pixels, 'landmark_confidence' (B, 68).
  """
  keys = jax.random.split(key, batch['image'].shape[0])
  per_face = jax.vmap(
      lambda p, g, r, i, l, c, k: face_objective(model, intrinsics, config, p,
                                                 g, r, i, l, c, k))(
          params, geometry_offsets, reflectance_offsets, batch['image'],
          batch['landmarks'], batch['landmark_confidence'], keys)
  return jax.tree_util.tree_map(jnp.mean, per_face)
