"""Identifiability ladder: per-image fitting on synthetic faces, one nuisance
added per step, from the truth and from the mean face.

    python -m experiments.research.ladder --faces=4 \
        --output=docs/results/ladder.json

Steps (each adds to the one before):
  a  in-space faces, frontal, ambient light, grey background, true landmarks
  b  + a directional light
  c  + head pose (up to 45 degrees of yaw)
  d  + random backgrounds
  e  + the rest of the head rendered around the face (hair, ears, neck,
     eyeballs: `data/head.py`) and landmarks from the real detector on it
  f  + out-of-space bumps, beards and skin patches
and, between d and e, d's faces with Gaussian noise of --noise_px pixels on
the true landmarks (steps "d+2px", ...): detector-sized errors without the
detector's own failures; and steps e and f again, rendered with the albedo
of a bundled photo (--appearance; steps "e@takeo", ...: `photo_albedo.py`):
real skin appearance that the model's reflectance space does not hold, on
faces whose geometry is still known. On those steps the default fitter also
runs with the rendered albedo as the model's mean reflectance
(`gauss_newton_albedo_known_from_mean`): what a reflectance model holding the
person's appearance would give.
For every step, the default fitter (`FitConfig()`, Levenberg-Marquardt)
from the truth and from the mean face: the base- and final-level geometry
error (mm, after a similarity alignment, as `mofa eval`), landmark NME
against the landmarks the fit was given, photometric error, seconds per
face; next to the truth's own base level and the mean face at the true
pose. Writes JSON and prints a markdown table (`table`, which
experiments/results.py puts into docs/results.md).

A regression probe on synthetic renders, not a judge of the method: see
README.md here.
"""

import dataclasses
import json
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments.research import photo_albedo
from mofa_ml import compilation_cache
from mofa_ml import image_io
from mofa_ml.data import detection
from mofa_ml.data import head as head_lib
from mofa_ml.data import synthetic
from mofa_ml.evaluation import evaluate
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.fitting import fit
from mofa_ml.rendering import camera

STEP_CONFIGS = {
    'a': dict(out_of_space=False, max_yaw=0.0, max_pitch=0.0, max_roll=0.0,
              ambient_only=True, background_grey=0.5),
    'b': dict(ambient_only=False),
    'c': dict(max_yaw=45.0, max_pitch=15.0, max_roll=10.0),
    'd': dict(background_grey=-1.0),
    'e': {},  # the head rendered, the detector's landmarks
    'f': dict(out_of_space=True),
}
FITTERS = {
    # The default fitter. (The fitters it replaced, measured in the same
    # table up to commit d7fb9c0, are in docs/research/fitting-2026-12.md.)
    'gauss_newton': fit.FitConfig(),
}

# The row of '@<photo>' steps fitted with the rendered albedo as the model's
# mean reflectance (the default fitter, from the mean face).
ALBEDO_KNOWN = 'gauss_newton_albedo_known_from_mean'


FLAGS = flags.FLAGS


def _define_flags():
  """The command's flags (defined only when run as a script, so that two
  experiments imported into one process do not both define --output)."""
  flags.DEFINE_integer('faces', 4, 'Faces per step.')
  flags.DEFINE_string('steps', 'abcdef', 'Which steps.')
  flags.DEFINE_list('fitters', list(FITTERS),
                    'Fitters to compare (see FITTERS).')
  flags.DEFINE_list(
      'noise_px', ['2', '4', '8'], 'Landmark noise levels (pixels, standard '
      'deviation per axis) for the noisy-landmark steps on step d\'s faces.')
  flags.DEFINE_list(
      'appearance', ['takeo'], 'Bundled photos whose albedo steps e and f '
      'are rendered with as well (steps "e@<photo>", "f@<photo>").')
  flags.DEFINE_string('output', 'ladder.json', 'JSON to write.')
  flags.DEFINE_bool(
      'overwrite', False, 'Start afresh; without it, rows already in '
      '--output are kept (a resumed run).')


def step_config(step: str) -> synthetic.SyntheticConfig:
  """A lettered step's config, or 'd+<sigma>px': step d with noisy
  landmarks (a step's '@<photo>' changes the albedo only)."""
  letter, noise_px, _ = _step_parts(step)
  values = dict(landmark_noise_px=noise_px)
  for name in 'abcdef'[:'abcdef'.index(letter) + 1]:
    values.update(STEP_CONFIGS[name])
  return synthetic.SyntheticConfig(**values)


def _step_parts(step: str):
  """'d+4px' -> ('d', 4.0, ''); 'c' -> ('c', 0.0, ''); 'e@takeo' -> ('e',
  0.0, 'takeo')."""
  step, _, appearance = step.partition('@')
  letter, _, noise = step.partition('+')
  return letter, float(noise.removesuffix('px') or 0), appearance


def faces_of_step(model, step: str, count: int, landmarker, albedos: dict):
  """A batch dict of `count` synthetic faces of a step (from step e on, the
  whole head rendered and the landmarks detected; faces the detector misses
  are left out). `albedos`: see `appearance_model`."""
  layout = layout_lib.ParameterLayout.for_model(model)
  detected = step[0] >= 'e'
  model = appearance_model(model, step, albedos)
  faces = jax.device_get(synthetic.generate_batch(
      jax.random.PRNGKey(7), model, layout, camera.default_intrinsics(),
      step_config(step), count,
      head_lib.load_head(model) if detected else None))
  faces = {key: np.array(value) for key, value in faces.items()}
  if not detected:
    return faces
  keep = []
  for index in range(count):
    found = landmarker.detect(image_io.to_uint8(faces['image'][index]))
    if found:
      faces['landmarks'][index] = found[0].landmarks
      faces['landmark_confidence'][index] = found[0].point_confidence
      keep.append(index)
  return {key: value[keep] for key, value in faces.items()}


def appearance_model(model, step: str, albedos: dict):
  """`model` with the mean reflectance that the step renders: a bundled
  photo's albedo on '@<photo>' steps (`albedos`: photo name -> its
  `photo_albedo`, filled as steps need them, one fit of each photo per
  run), else the model's own."""
  appearance = _step_parts(step)[2]
  if not appearance:
    return model
  if appearance not in albedos:
    albedos[appearance] = photo_albedo.bundled_photo_albedo(model, appearance)
  return model.replace(mean_reflectance=jnp.asarray(albedos[appearance]))


def mean_face_method(model):
  """The mean shape at the true pose and light: the baseline to beat."""
  layout = layout_lib.ParameterLayout.for_model(model, 0, False)

  def reconstruct(batch):
    params = layout.split(batch['params'])
    params = params._replace(shape=jnp.zeros_like(params.shape),
                             expression=jnp.zeros_like(params.expression))
    zeros = jnp.zeros(batch['image'].shape[:1] + (model.num_vertices, 3))
    return params, zeros, zeros
  return reconstruct


def measure(model, method, faces) -> dict:
  batch = dict(faces, image=(faces['image'] * 255).round().astype(np.uint8))
  start = time.perf_counter()
  per_image = evaluate.evaluate(model, camera.default_intrinsics(), method,
                                [batch])
  seconds = (time.perf_counter() - start) / len(faces['image'])
  row = {key: float(np.mean(value)) for key, value in per_image.items()
         if not key.startswith(('vertex_error_sum', 'seconds'))}
  row['seconds_per_face'] = float(np.mean(per_image['seconds']))
  row['wall_seconds_per_face'] = seconds
  return row


def main(argv):
  del argv
  compilation_cache.enable()
  model = fm.load_face_model()
  intrinsics = camera.default_intrinsics()
  landmarker = detection.FaceLandmarker()
  results = {'faces_per_step': FLAGS.faces, 'steps': {}}
  if os.path.exists(FLAGS.output) and not FLAGS.overwrite:
    with open(FLAGS.output, encoding='utf-8') as f:
      results = json.load(f)  # resume: rows already there are kept
  steps = list(FLAGS.steps) + [f'd+{float(px):g}px' for px in FLAGS.noise_px]
  steps += [f'{letter}@{photo}' for photo in FLAGS.appearance
            for letter in 'ef' if letter in FLAGS.steps]
  albedos = {}
  for step in steps:
    rows = results['steps'].setdefault(step, {})
    methods = {'truth_base': evaluate.true_base_method(model),
               'mean_face': mean_face_method(model)}
    for name in FLAGS.fitters:
      for start in ('truth', 'mean'):
        methods[f'{name}_from_{start}'] = evaluate.fitting_method(
            model, intrinsics, FITTERS[name],
            start_from_truth=start == 'truth')
    if _step_parts(step)[2]:
      methods[ALBEDO_KNOWN] = None  # needs the step's albedo: made below
    if all(name in rows for name in methods):
      continue
    faces = faces_of_step(model, step, FLAGS.faces, landmarker, albedos)
    rows['count'] = int(len(faces['image']))
    for name, method in methods.items():
      if name not in rows:
        measured = model
        if name == ALBEDO_KNOWN:
          measured = appearance_model(model, step, albedos)
          method = evaluate.fitting_method(measured, intrinsics,
                                           FITTERS['gauss_newton'])
        rows[name] = measure(measured, method, faces)
        print(step, name, {k: round(v, 3) for k, v in rows[name].items()},
              flush=True)
        # Written after every row, so a long run can be resumed.
        results.setdefault('fitters', {}).update(
            {n: repr(dataclasses.asdict(FITTERS[n])) for n in FLAGS.fitters})
        image_io.atomic_write_bytes(FLAGS.output,
                                    json.dumps(results, indent=1).encode(),
                                    overwrite=True)
  print(table(results))


def table(results: dict) -> str:
  """Markdown: one row per step, the default fitter beside its baselines.

  Geometry in mm (base / final level); the landmark NME, photometric error
  (base / final) and seconds per face are the fit's from the mean face.
  A cell is empty where the step has no such row.
  """
  lines = ['| step (faces) | mean face at the true pose | true base level | '
           'fit from the truth | fit from the mean face | fit from the mean, '
           'albedo known | landmark NME | photometric | s / face |',
           '|---' * 9 + '|']
  geometry = lambda row: (f'{row["geometry_mm_base"]:.2f} / '
                          f'{row["geometry_mm_final"]:.2f}')
  for step in sorted(results['steps'], key=_step_parts):
    rows = results['steps'][step]
    fit_row = rows.get('gauss_newton_from_mean')
    cells = [f'{step} ({rows["count"]})',
             f'{rows["mean_face"]["geometry_mm_base"]:.2f}',
             f'{rows["truth_base"]["geometry_mm_base"]:.2f}']
    cells += [geometry(rows[name]) if name in rows else ''
              for name in ('gauss_newton_from_truth', 'gauss_newton_from_mean',
                           ALBEDO_KNOWN)]
    cells += [f'{fit_row["landmark_nme_base"]:.4f}',
              f'{fit_row["photometric_base"]:.3f} / '
              f'{fit_row["photometric_final"]:.3f}',
              f'{fit_row["seconds_per_face"]:.1f}'] if fit_row else [''] * 3
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)

if __name__ == '__main__':
  _define_flags()
  app.run(main)
