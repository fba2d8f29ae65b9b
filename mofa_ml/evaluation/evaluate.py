"""Evaluation over a dataset (paper Sec. 7.2): a regressor or fitting.

For every example: the reconstruction's base and final levels, then
  * geometry (datasets with ground-truth 'vertices', e.g. `mofa_synthetic`):
    per-vertex distance after a similarity alignment to the truth (mm), its
    mean per image, and the Hausdorff distance of the aligned vertex sets;
  * photometric error: mean RGB distance between the photo and the shaded
    model over the visible (front-facing, not occluded, in-image) vertices;
  * landmark NME of the model's projected landmarks against the dataset's
    (ground truth for the synthetic corpus, detections for photos);
  * time per image (reconstruction only; every batch shape is run once
    untimed first, so compilation is excluded).
`report` turns the per-image values into tables and plots.
"""

import dataclasses
import functools
import time
from typing import Callable, Dict, Iterable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.data import input_pipeline
from mofa_ml import metrics
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.learning import network
from mofa_ml.learning import regressor as regressor_lib
from mofa_ml.fitting import fit
from mofa_ml.rendering import camera
from mofa_ml.rendering import formation
from mofa_ml.rendering import raster

# How a method reconstructs a batch: (params, geometry_offsets,
# reflectance_offsets) with a leading batch axis, from the batch: 'image'
# (B, H, W, 3) float in [0, 1], 'landmarks' (B, 68, 2),
# 'landmark_confidence' (B, 68) and any other field of the dataset (e.g. the
# synthetic truth).
BatchReconstruction = Callable[[Dict[str, jax.Array]],
                               Tuple[object, jax.Array, jax.Array]]


class Method(NamedTuple):
  """A way to reconstruct a dataset, with the model and camera it uses."""
  mode: str
  model: fm.FaceModel
  intrinsics: camera.Intrinsics
  reconstruct: BatchReconstruction


def regressor_method(regressor: regressor_lib.Regressor
                     ) -> BatchReconstruction:
  """The trained network alone (what the paper evaluates)."""
  def reconstruct(batch):
    prediction = regressor.predict(batch['image'])
    return (prediction.params, prediction.geometry_offsets,
            prediction.reflectance_offsets)
  return reconstruct


def fitting_method(model: fm.FaceModel, intrinsics: camera.Intrinsics,
                   config: fit.FitConfig = fit.FitConfig(),
                   regressor: Optional[regressor_lib.Regressor] = None,
                   start_from_truth: bool = False) -> BatchReconstruction:
  """Per-image fitting, one face at a time, from the mean face, a
  regressor's prediction, or (`start_from_truth`, synthetic data) the true
  base-level parameters: where the objective itself leads."""
  base_layout = layout_lib.ParameterLayout.for_model(model, 0, False)
  if start_from_truth:  # no continuation: the objective's own optimum
    config = dataclasses.replace(config, prediction_stages=())

  def reconstruct(batch):
    images = batch['image']
    initial = None
    if regressor is not None:
      initial = regressor.predict(images)
    if start_from_truth:
      zeros = jnp.zeros(images.shape[:1] + (model.num_vertices, 3))
      initial = network.Prediction(base_layout.split(batch['params']), zeros,
                                   zeros)
    faces = []
    for index in range(images.shape[0]):
      start = None if initial is None else jax.tree_util.tree_map(
          lambda x, i=index: x[i], initial)
      result = fit.fit_face(model, intrinsics, images[index],
                            batch['landmarks'][index],
                            batch['landmark_confidence'][index], config, start)
      faces.append((result.params, result.geometry_offsets,
                    result.reflectance_offsets))
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *faces)
  return reconstruct


def true_base_method(model: fm.FaceModel) -> BatchReconstruction:
  """The synthetic truth's base-level parameters with no correctives: the
  best the base level can do, whose geometric error is what the
  out-of-space variation alone costs."""
  layout = layout_lib.ParameterLayout.for_model(model, 0, False)

  def reconstruct(batch):
    if 'params' not in batch:
      raise ValueError('the dataset has no true parameters')
    zeros = jnp.zeros(batch['image'].shape[:1] + (model.num_vertices, 3))
    return layout.split(batch['params']), zeros, zeros
  return reconstruct


def select_method(checkpoint: Optional[str] = None,
                  fit_config: Optional[fit.FitConfig] = None,
                  face_model: str = fm.DEFAULT_SPEC,
                  start_from_truth: bool = False,
                  true_base: bool = False) -> Method:
  """The method of `mofa eval` and the results script.

  Args:
    checkpoint: a training run: its regressor, refined by fitting if
      `fit_config` is given; without it, fitting alone with `fit_config`.
    fit_config: per-image fitting, or None.
    face_model: the face model spec where no checkpoint fixes it.
    start_from_truth: fitting starts from the synthetic truth.
    true_base: no reconstruction: the synthetic truth's base level.

  Raises:
    ValueError: an unusable checkpoint or face model, or no method.
  """
  if checkpoint:
    regressor = regressor_lib.Regressor.load(checkpoint)
    model, intrinsics = regressor.face_model, regressor.intrinsics
    if fit_config is None:
      return Method('regressor', model, intrinsics,
                    regressor_method(regressor))
    return Method('regressor + fitting', model, intrinsics,
                  fitting_method(model, intrinsics, fit_config, regressor))
  model = fm.load_face_model(face_model)
  intrinsics = camera.default_intrinsics()
  if true_base:
    return Method('truth', model, intrinsics, true_base_method(model))
  if fit_config is None:
    raise ValueError('without a checkpoint, fitting is needed')
  return Method('fitting', model, intrinsics,
                fitting_method(model, intrinsics, fit_config,
                               start_from_truth=start_from_truth))


@functools.partial(jax.jit, static_argnames=('has_truth',))
def _face_metrics(model, intrinsics, params, geometry_offsets,
                  reflectance_offsets, image, landmarks, truth, has_truth):
  """Metrics of one face; see the module docstring."""
  renderings = levels.render_levels(model, params, intrinsics,
                                    geometry_offsets, reflectance_offsets)
  out = {}
  height, width = image.shape[:2]
  for level, rendering in zip(levels.LEVELS, renderings):
    # The visible face: front-facing and not hidden (the depth buffer), so
    # a cheek behind the nose does not count; colours clipped to [0, 1]
    # like the photo's.
    screen = jnp.concatenate([rendering.pixels, rendering.points[:, 2:]], -1)
    fragments = raster.rasterize(screen, model.triangles, height=height,
                                 width=width, capacity=4 * height * width)
    visible = rendering.visible * raster.vertex_visibility(screen, fragments)
    observed, _ = formation.sample_image(image, rendering.pixels)
    out[f'photometric_{level}'] = metrics.photometric_error(
        observed, jnp.clip(rendering.colors, 0.0, 1.0), visible)
    indices = levels.landmark_vertex_indices(model, rendering.points,
                                             landmarks, intrinsics)
    out[f'landmark_nme_{level}'] = metrics.landmark_nme(
        rendering.pixels[indices], landmarks)
    if has_truth:
      # The camera-space points: the similarity alignment absorbs the pose.
      aligned = metrics.aligned_points(rendering.points, truth)
      out[f'vertex_errors_{level}'] = jnp.linalg.norm(aligned - truth, axis=-1)
      out[f'aligned_{level}'] = aligned
  return out


def evaluate(model: fm.FaceModel, intrinsics: camera.Intrinsics,
             reconstruct: BatchReconstruction, batches: Iterable[Dict[str,
                                                               np.ndarray]],
             limit: Optional[int] = None,
             progress: Optional[Callable[[int], None]] = None
             ) -> Dict[str, np.ndarray]:
  """Per-image metrics over a dataset.

  Args:
    model: the face model the reconstructions use.
    intrinsics: the crops' camera.
    reconstruct: see `BatchReconstruction`.
    batches: dicts with 'image' (B, H, W, 3) uint8, 'landmarks' (B, 68, 2),
      'landmark_confidence' (B, 68) and optionally 'vertices' (B, N, 3).
    limit: evaluate at most this many images.
    progress: called with the number of images done after each batch.

  Returns:
    dict of (M,) arrays: 'photometric_{base,final}',
    'landmark_nme_{base,final}', 'seconds' and, with ground truth,
    'geometry_mm_{level}' (mean per-vertex error) and 'hausdorff_mm_{level}';
    with ground truth also 'vertex_error_sum_{level}' (N,) sums over images
    (for the heat map).
  """
  per_image = {}
  vertex_sums = {}
  done = 0
  compiled = set()  # batch shapes already run once
  for batch in batches:
    if limit is not None and done >= limit:
      break
    count = len(batch['image']) if limit is None else min(
        len(batch['image']), limit - done)
    # Prepared photo sets also carry text fields (the source path).
    inputs = {key: jnp.asarray(value[:count], jnp.float32)
              for key, value in batch.items()
              if np.asarray(value).dtype.kind in 'biuf'}
    inputs['image'] = inputs['image'] / 255.0
    images, landmarks = inputs['image'], inputs['landmarks']
    if images.shape not in compiled:  # compile outside the timing
      jax.block_until_ready(reconstruct(inputs))
      compiled.add(images.shape)
    start = time.perf_counter()
    faces = jax.block_until_ready(reconstruct(inputs))
    seconds = (time.perf_counter() - start) / count
    has_truth = 'vertices' in batch
    for index in range(count):
      params, geometry, reflectance = jax.tree_util.tree_map(
          lambda x, i=index: x[i], faces)
      truth = (inputs['vertices'][index] if has_truth else
               jnp.zeros((model.num_vertices, 3)))
      face = jax.device_get(_face_metrics(
          model, intrinsics, params, geometry, reflectance, images[index],
          landmarks[index], truth, has_truth))
      row = {key: float(face[key]) for key in face
             if key.startswith(('photometric', 'landmark_nme'))}
      row['seconds'] = seconds
      if has_truth:
        for level in levels.LEVELS:
          errors = face[f'vertex_errors_{level}']
          row[f'geometry_mm_{level}'] = float(errors.mean())
          row[f'hausdorff_mm_{level}'] = metrics.hausdorff_distance(
              face[f'aligned_{level}'], np.asarray(truth))
          vertex_sums[level] = vertex_sums.get(level, 0.0) + errors
      for key, value in row.items():
        per_image.setdefault(key, []).append(value)
    done += count
    if progress is not None:
      progress(done)
  if not done:
    raise ValueError('the dataset split is empty')
  result = {key: np.asarray(value) for key, value in per_image.items()}
  for level, sums in vertex_sums.items():
    result[f'vertex_error_sum_{level}'] = np.asarray(sums)
  return result


def load_split(name: str, split: str, data_dir: Optional[str] = None,
               batch_size: int = 16):
  """(number of examples, batch iterator) of a TFDS split."""
  source = input_pipeline.load_source(name, split, data_dir)
  return len(source), input_pipeline.evaluation_batches(source, batch_size)
