"""Evaluation over a dataset (paper Sec. 7.2): a regressor or fitting.

For every example: the reconstruction's base and final levels, then
  * geometry (datasets with ground-truth 'vertices', e.g. `mofa_synthetic`):
    per-vertex distance after a similarity alignment to the truth (mm), its
    mean per image, and the Hausdorff distance of the aligned vertex sets;
  * photometric error: mean RGB distance between the photo and the shaded
    model over the visible (front-facing, in-image) vertices;
  * landmark NME of the model's projected landmarks against the dataset's
    (ground truth for the synthetic corpus, detections for photos);
  * time per image (reconstruction only; every batch shape is run once
    untimed first, so compilation is excluded).
`summarize` turns them into mean / SD / median; `report_files` writes the
JSON, a markdown table in the paper's form and the plots.
"""

import functools
import io
import json
import time
from typing import Callable, Dict, Iterable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml import camera
from mofa_ml import face_model as fm
from mofa_ml import fit
from mofa_ml import formation
from mofa_ml import layout as layout_lib
from mofa_ml import metrics
from mofa_ml import network
from mofa_ml import objective
from mofa_ml import raster
from mofa_ml import shading
from mofa_ml import viz
from mofa_ml.data import input_pipeline

LEVELS = ('base', 'final')
# What `report_files` can write (heat_map.png only with true geometry).
REPORT_FILES = ('eval.json', 'eval.md', 'histograms.png', 'heat_map.png')

# Paper Sec. 7.2 (mean +- SD): FaceWarehouse geometry, validation-set
# photometric error.
PAPER = {
    'geometry_mm': {'base': (2.03, 0.52), 'final': (1.84, 0.38)},
    'photometric': {'base': (0.092, 0.025), 'final': (0.072, 0.020)},
}

# A reconstruction of a batch: (params, geometry_offsets, reflectance_offsets)
# with a leading batch axis, from the batch: 'image' (B, H, W, 3) float in
# [0, 1], 'landmarks' (B, 68, 2), 'landmark_confidence' (B, 68) and any
# other field of the dataset (e.g. the synthetic truth).
Reconstructor = Callable[[Dict[str, jax.Array]],
                         Tuple[object, jax.Array, jax.Array]]


def regressor_reconstructor(trainer, params) -> Reconstructor:
  """The trained network alone (what the paper evaluates)."""
  def reconstruct(batch):
    prediction = trainer.predict(params, batch['image'])
    return (prediction.params, prediction.geometry_offsets,
            prediction.reflectance_offsets)
  return reconstruct


def fitting_reconstructor(model: fm.FaceModel, intrinsics: camera.Intrinsics,
                          config: fit.FitConfig = fit.FitConfig(),
                          regressor=None,
                          start_from_truth: bool = False) -> Reconstructor:
  """Per-image fitting, one face at a time, from the mean face, a
  regressor's prediction, or (`start_from_truth`, synthetic data) the true
  base-level parameters: where the objective itself leads."""
  base_layout = layout_lib.ParameterLayout.for_model(model, 0, False)

  def reconstruct(batch):
    images = batch['image']
    initial = None
    if regressor is not None:
      trainer, params = regressor
      initial = trainer.predict(params, images)
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


def true_base_reconstructor(model: fm.FaceModel) -> Reconstructor:
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


@functools.partial(jax.jit, static_argnames=('has_truth',))
def _face_metrics(model, intrinsics, params, geometry_offsets,
                  reflectance_offsets, image, landmarks, truth, has_truth):
  """Metrics of one face; see the module docstring."""
  renderings = formation.render_both_levels(model, params, geometry_offsets,
                                            reflectance_offsets, intrinsics)
  out = {}
  height, width = image.shape[:2]
  for level, rendering in zip(LEVELS, renderings):
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
    indices = objective.landmark_vertex_indices(model, rendering.points,
                                                landmarks, intrinsics)
    out[f'landmark_nme_{level}'] = metrics.landmark_nme(
        rendering.pixels[indices], landmarks)
    if has_truth:
      # The camera-space points: the similarity alignment absorbs the pose.
      similarity = metrics.similarity_alignment(rendering.points, truth)
      aligned = similarity.apply(rendering.points)
      out[f'vertex_errors_{level}'] = jnp.linalg.norm(aligned - truth, axis=-1)
      out[f'aligned_{level}'] = aligned
  return out


def evaluate(model: fm.FaceModel, intrinsics: camera.Intrinsics,
             reconstruct: Reconstructor, batches: Iterable[Dict[str,
                                                               np.ndarray]],
             limit: Optional[int] = None,
             progress: Optional[Callable[[int], None]] = None
             ) -> Dict[str, np.ndarray]:
  """Per-image metrics over a dataset.

  Args:
    model: the face model the reconstructions use.
    intrinsics: the crops' camera.
    reconstruct: see `Reconstructor`.
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
    inputs = {key: jnp.asarray(value[:count], jnp.float32)
              for key, value in batch.items()}
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
        for level in LEVELS:
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


def summarize(per_image: Dict[str, np.ndarray]) -> Dict[str, Dict]:
  """{metric: {level: {mean, std, median}}} plus count and timing."""
  summary = {'count': int(len(per_image['seconds']))}
  for name in ('geometry_mm', 'hausdorff_mm', 'photometric', 'landmark_nme'):
    for level in LEVELS:
      values = per_image.get(f'{name}_{level}')
      if values is not None:
        summary.setdefault(name, {})[level] = {
            'mean': float(values.mean()), 'std': float(values.std()),
            'median': float(np.median(values))}
  summary['ms_per_image'] = 1e3 * float(np.mean(per_image['seconds']))
  return summary


def markdown_table(summary: Dict, title: str) -> str:
  """The paper's table form: mean +- SD per level, the paper alongside."""
  rows = [('geometry_mm', 'Geometric error (mm)', 2),
          ('hausdorff_mm', 'Hausdorff distance (mm)', 2),
          ('photometric', 'Photometric error', 3),
          ('landmark_nme', 'Landmark NME', 4)]
  lines = [f'### {title}', '',
           f'{summary["count"]} images, {summary["ms_per_image"]:.2f} ms per '
           'image.', '',
           '| Metric | Base | Final | Paper base | Paper final |',
           '|---|---|---|---|---|']
  for key, label, digits in rows:
    if key not in summary:
      continue
    cells = [f'{summary[key][level]["mean"]:.{digits}f} ± '
             f'{summary[key][level]["std"]:.{digits}f}' for level in LEVELS]
    paper = PAPER.get(key)
    cells += ([f'{paper[level][0]:.{digits}f} ± {paper[level][1]:.{digits}f}'
               for level in LEVELS] if paper else ['—', '—'])
    lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def histogram_png(per_image: Dict[str, np.ndarray]) -> bytes:
  """Per-image error histograms, base against final."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  panels = [(name, label) for name, label in (
      ('geometry_mm', 'geometric error (mm)'),
      ('photometric', 'photometric error'),
      ('landmark_nme', 'landmark NME')) if f'{name}_base' in per_image]
  figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2),
                              squeeze=False)
  for axis, (name, label) in zip(axes[0], panels):
    values = [per_image[f'{name}_{level}'] for level in LEVELS]
    bins = np.linspace(min(v.min() for v in values),
                       max(v.max() for v in values), 25)
    for level, value in zip(LEVELS, values):
      axis.hist(value, bins=bins, alpha=0.6, label=level)
    axis.set_xlabel(label)
    axis.set_ylabel('images')
    axis.legend()
  figure.tight_layout()
  return _figure_png(figure)


def heat_map_png(model: fm.FaceModel, per_image: Dict[str, np.ndarray],
                 size: int = 320) -> bytes:
  """Mean per-vertex error of each level, coloured on the mean face."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  count = len(per_image['seconds'])
  errors = [per_image[f'vertex_error_sum_{level}'] / count
            for level in LEVELS]
  top = float(max(np.percentile(e, 99) for e in errors))
  colour_map = plt.get_cmap('viridis')
  # A tighter framing than the training crop's, so the face fills the panel.
  intrinsics = camera.default_intrinsics(
      size, 1.25 * camera.DEFAULT_FOCAL_LENGTH * size /
      camera.DEFAULT_IMAGE_SIZE)
  translation = camera.centring_translation(model.mean_shape,
                                            model.landmark_vertices)
  light = shading.directional_light(jnp.asarray([0.3, -0.3, -1.0]),
                                    0.35 * jnp.ones(3), 0.75 * jnp.ones(3))
  figure, axes = plt.subplots(1, 2, figsize=(8.0, 4.0))
  for axis, level, error in zip(axes, LEVELS, errors):
    colours = colour_map(np.clip(error / top, 0.0, 1.0))[:, :3]
    image, _ = viz.render_shaded(
        model.mean_shape, jnp.asarray(colours, jnp.float32), model.triangles,
        jnp.zeros(3), translation, light, intrinsics, size, size,
        background=np.ones((size, size, 3), np.float32))
    axis.imshow(image)
    axis.set_title(f'{level}: mean {error.mean():.2f} mm')
    axis.axis('off')
  mappable = plt.cm.ScalarMappable(
      norm=matplotlib.colors.Normalize(0.0, top), cmap=colour_map)
  figure.colorbar(mappable, ax=list(axes), label='mean error (mm)',
                  shrink=0.8)
  return _figure_png(figure)


def report_files(model: fm.FaceModel, per_image: Dict[str, np.ndarray],
                 info: Dict, title: str) -> Dict[str, bytes]:
  """{file name: bytes}: eval.json, eval.md, histograms.png and, with
  ground-truth geometry, heat_map.png."""
  summary = dict(info, **summarize(per_image))
  lists = {key: value.tolist() for key, value in per_image.items()
           if not key.startswith('vertex_error_sum')}
  files = {
      'eval.json': json.dumps({'summary': summary, 'paper': PAPER,
                               'per_image': lists}, indent=1).encode(),
      'eval.md': markdown_table(summary, title).encode(),
      'histograms.png': histogram_png(per_image),
  }
  if 'vertex_error_sum_base' in per_image:
    files['heat_map.png'] = heat_map_png(model, per_image)
  return files


def _figure_png(figure) -> bytes:
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', dpi=110)
  plt.close(figure)
  return buffer.getvalue()


def load_split(name: str, split: str, data_dir: Optional[str] = None,
               batch_size: int = 16):
  """(number of examples, batch iterator) of a TFDS split."""
  source = input_pipeline.load_source(name, split, data_dir)
  return len(source), input_pipeline.evaluation_batches(source, batch_size)
