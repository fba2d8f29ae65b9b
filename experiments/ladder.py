"""Identifiability ladder: per-image fitting on synthetic faces, one nuisance
added per step, from the truth and from the mean face.

    python -m experiments.ladder --faces=2 --output=docs/results/ladder.json

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
For every step and fitter: the base- and final-level geometry error (mm,
after a similarity alignment, as `mofa eval`), landmark NME against the
landmarks the fit was given, photometric error, seconds per face; next to
the truth's own base level and the mean face at the true pose. Writes JSON
and prints a markdown table.
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

from experiments import photo_albedo
from mofa_ml import compilation_cache
from mofa_ml import image_io
from mofa_ml.data import detection
from mofa_ml.data import head as head_lib
from mofa_ml.data import synthetic
from mofa_ml.evaluation import evaluate
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.learning import objective
from mofa_ml.fitting import fit
from mofa_ml.rendering import camera

_FACES = flags.DEFINE_integer('faces', 4, 'Faces per step.')
_STEPS = flags.DEFINE_string('steps', 'abcdef', 'Which steps.')
_FITTERS = flags.DEFINE_list('fitters', ['paper', 'adam', 'gauss_newton'],
                             'Fitters to compare (see FITTERS).')
_NOISE_PX = flags.DEFINE_list(
    'noise_px', ['2', '4', '8'], 'Landmark noise levels (pixels, standard '
    'deviation per axis) for the noisy-landmark steps on step d\'s faces.')
_APPEARANCE = flags.DEFINE_list(
    'appearance', ['takeo'], 'Bundled photos whose albedo steps e and f are '
    'rendered with as well (steps "e@<photo>", "f@<photo>").')
_OUTPUT = flags.DEFINE_string('output', 'ladder.json', 'JSON to write.')
_OVERWRITE = flags.DEFINE_bool(
    'overwrite', False, 'Start afresh; without it, rows already in --output '
    'are kept (a resumed run).')

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
    # The fitter before the ladder: the paper's stage weights, backface
    # visibility, 24 px landmark units, constant Adam rates, 150 final steps.
    'paper': fit.FitConfig(
        base_loss=objective.LossConfig.for_stage('stage1'),
        final_loss=objective.LossConfig.for_stage('stage2'),
        base_solver='adam', final_rate_fraction=1.0, refit_base=True,
        final_steps=150),
    # The objective of 'gauss_newton' with Adam as the base solver, the
    # final phase refitting the base in 150 steps (the default before
    # Levenberg-Marquardt).
    'adam': fit.FitConfig(base_solver='adam', refit_base=True,
                          final_steps=150),
    'gauss_newton': fit.FitConfig(),
}

# The row of '@<photo>' steps fitted with the rendered albedo as the model's
# mean reflectance (the default fitter, from the mean face).
ALBEDO_KNOWN = 'gauss_newton_albedo_known_from_mean'


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
  results = {'faces_per_step': _FACES.value, 'steps': {}}
  if os.path.exists(_OUTPUT.value) and not _OVERWRITE.value:
    with open(_OUTPUT.value, encoding='utf-8') as f:
      results = json.load(f)  # resume: rows already there are kept
  steps = list(_STEPS.value) + [f'd+{float(px):g}px' for px in _NOISE_PX.value]
  steps += [f'{letter}@{photo}' for photo in _APPEARANCE.value
            for letter in 'ef' if letter in _STEPS.value]
  albedos = {}
  for step in steps:
    rows = results['steps'].setdefault(step, {})
    methods = {'truth_base': evaluate.true_base_method(model),
               'mean_face': mean_face_method(model)}
    for name in _FITTERS.value:
      for start in ('truth', 'mean'):
        methods[f'{name}_from_{start}'] = evaluate.fitting_method(
            model, intrinsics, FITTERS[name],
            start_from_truth=start == 'truth')
    if _step_parts(step)[2]:
      methods[ALBEDO_KNOWN] = None  # needs the step's albedo: made below
    if all(name in rows for name in methods):
      continue
    faces = faces_of_step(model, step, _FACES.value, landmarker, albedos)
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
            {n: repr(dataclasses.asdict(FITTERS[n])) for n in _FITTERS.value})
        image_io.atomic_write_bytes(_OUTPUT.value,
                                    json.dumps(results, indent=1).encode(),
                                    overwrite=True)
  print(table(results))


def table(results: dict) -> str:
  """Markdown: one row per step and method."""
  lines = ['| step | method | geometry base / final (mm) | landmark NME | '
           'photometric base / final | s/face |', '|---|---|---|---|---|---|']
  for step in sorted(results['steps'], key=_step_parts):
    rows = results['steps'][step]
    for name, row in rows.items():
      if name == 'count':
        continue
      lines.append(
          f'| {step} ({rows["count"]}) | {name} | '
          f'{row["geometry_mm_base"]:.2f} / {row["geometry_mm_final"]:.2f} | '
          f'{row["landmark_nme_base"]:.4f} | '
          f'{row["photometric_base"]:.3f} / {row["photometric_final"]:.3f} | '
          f'{row["seconds_per_face"]:.1f} |')
  return '\n'.join(lines)


if __name__ == '__main__':
  app.run(main)
