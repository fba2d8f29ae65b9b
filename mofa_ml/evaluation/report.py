"""Reports of an evaluation: summary statistics, the paper's table form,
histograms and a per-vertex heat map, as {file name: bytes}."""

import io
import json
from typing import Dict

import jax.numpy as jnp
import numpy as np

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import levels
from mofa_ml.rendering import camera
from mofa_ml.rendering import shading
from mofa_ml.rendering import viz

# What `report_files` can write (heat_map.png only with true geometry).
REPORT_FILES = ('eval.json', 'eval.md', 'histograms.png', 'heat_map.png')

# Paper Sec. 7.2 (mean +- SD): FaceWarehouse geometry, validation-set
# photometric error.
PAPER = {
    'geometry_mm': {'base': (2.03, 0.52), 'final': (1.84, 0.38)},
    'photometric': {'base': (0.092, 0.025), 'final': (0.072, 0.020)},
}


def summarize(per_image: Dict[str, np.ndarray]) -> Dict[str, Dict]:
  """{metric: {level: {mean, std, median}}} plus count and timing."""
  summary = {'count': int(len(per_image['seconds']))}
  for name in ('geometry_mm', 'hausdorff_mm', 'photometric', 'landmark_nme'):
    for level in levels.LEVELS:
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
             f'{summary[key][level]["std"]:.{digits}f}' for level in levels.LEVELS]
    paper = PAPER.get(key)
    cells += ([f'{paper[level][0]:.{digits}f} ± {paper[level][1]:.{digits}f}'
               for level in levels.LEVELS] if paper else ['—', '—'])
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
    values = [per_image[f'{name}_{level}'] for level in levels.LEVELS]
    bins = np.linspace(min(v.min() for v in values),
                       max(v.max() for v in values), 25)
    for level, value in zip(levels.LEVELS, values):
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
            for level in levels.LEVELS]
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
  for axis, level, error in zip(axes, levels.LEVELS, errors):
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


