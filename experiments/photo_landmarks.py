"""Landmark accuracy on the bundled photos against their 68-point truth.

    python -m experiments.photo_landmarks \
        --output=docs/results/photo_landmarks.json

(writes the JSON and its markdown table, docs/results/photo_landmarks.md;
`experiments/results.py` puts the same table, `table`, into docs/results.md).

For each bundled photo: the detector's landmarks (`data/detection.py`), the
mean face at the fitted pose (the fit's identity and expression set to zero:
what the fit adds over it), the fitted model's projected landmarks
(`mofa reconstruct`'s fit, sliding jaw contour included) and the same fit
given the true landmarks instead of the detector's (what is left of the
model's error when the detector is perfect: the objective's share), each as
NME against the truth, overall and per region. The fit is repeated with the
detections shifted by +-`--shift_px` along x and y: the spread of those
five fits is the fit's own sensitivity, against which a change of the
method has to be judged.
"""

import dataclasses
import json

from absl import app
from absl import flags
import numpy as np
from PIL import Image

import experiments
from mofa_ml import compilation_cache
from mofa_ml import samples
from mofa_ml.data import detection
from mofa_ml import metrics
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.fitting import fit
from mofa_ml.export import outputs
from mofa_ml.reconstruction import reconstructor as reconstructor_lib

FLAGS = flags.FLAGS


def _define_flags():
  """The command's flags (defined only when run as a script, so that two
  experiments imported into one process do not both define --output)."""
  flags.DEFINE_string('output', 'photo_landmarks.json',
                      'JSON to write (and its .md beside it).')
  flags.DEFINE_float(
      'shift_px', 0.3, 'Shift of the detections for the repeated fits, '
      'photo pixels; 0 fits once.')


REGIONS = {'jaw': lm.JAW, 'brows': lm.RIGHT_BROW + lm.LEFT_BROW,
           'nose': lm.NOSE_BRIDGE + lm.NOSTRILS,
           'eyes': lm.RIGHT_EYE + lm.LEFT_EYE,
           'mouth': lm.OUTER_LIPS + lm.INNER_LIPS}
# The target for the fitted model's NME on each bundled photo.
TARGET_NME = 0.05


def region_errors(points: np.ndarray, truth: np.ndarray) -> dict:
  """{'all': NME, region: NME over its points} of (68, 2) points, all
  normalised by the truth's outer-eye-corner distance."""
  distances = np.linalg.norm(points - truth, axis=1) / float(
      lm.outer_eye_distance(truth))
  errors = {'all': float(metrics.landmark_nme(points, truth))}
  errors.update({name: float(distances[list(points_of)].mean())
                 for name, points_of in REGIONS.items()})
  return errors


def model_landmarks(model, reconstructor, face, photo_shape) -> np.ndarray:
  """(68, 2) photo pixels: the face's projected model landmarks, as
  `mofa reconstruct` reports them (sliding jaw contour included)."""
  return np.asarray(outputs.description(
      model, reconstructor.intrinsics, face, photo_shape)['landmarks']
                    ['model_projected'], np.float64)


def evaluate_photo(model, reconstructor, finder, image, truth, shift_px):
  """The detector, the mean face and the model on one photo (see module
  docstring)."""
  found = finder.detect(image)
  if not found:
    raise ValueError('no face found')
  detected = found[0]
  shifts = [(0.0, 0.0)]
  if shift_px > 0:
    shifts += [(shift_px, 0.0), (-shift_px, 0.0), (0.0, shift_px),
               (0.0, -shift_px)]
  faces = [reconstructor.reconstruct_face(
      image, detected.landmarks + np.float32(shift),
      detected.point_confidence) for shift in shifts]
  fits = [region_errors(model_landmarks(model, reconstructor, face,
                                        image.shape), truth)
          for face in faces]
  given_truth = reconstructor.reconstruct_face(
      image, truth.astype(np.float32), np.ones(len(truth), np.float32))
  unshifted = faces[0]
  mean_params = unshifted.params._replace(
      shape=np.zeros_like(unshifted.params.shape),
      expression=np.zeros_like(unshifted.params.expression))
  mean_face = region_errors(model_landmarks(
      model, reconstructor, dataclasses.replace(unshifted, params=mean_params),
      image.shape), truth)
  seconds = [face.seconds for face in faces]
  overall = [f['all'] for f in fits]
  return {
      'eye_distance_px': float(lm.outer_eye_distance(truth)),
      'detector': region_errors(detected.landmarks.astype(np.float64), truth),
      'mean_face_at_fitted_pose': mean_face,
      'model': {name: float(np.mean([f[name] for f in fits]))
                for name in fits[0]},
      'model_range': [float(min(overall)), float(max(overall))],
      'model_given_true_landmarks': region_errors(model_landmarks(
          model, reconstructor, given_truth, image.shape), truth),
      'fits': len(fits),
      # The first fit of the first photo may include compiling.
      'seconds_per_fit': float(np.mean(seconds[1:] or seconds)),
  }


def table(results: dict) -> str:
  """Markdown: one row per photo and source."""
  lines = ['| photo | landmarks | NME | ' + ' | '.join(REGIONS) +
           f' | NME <= {TARGET_NME} |', '|---' * (len(REGIONS) + 4) + '|']
  for name, row in results['photos'].items():
    for source, label in (('detector', 'detector'),
                          ('mean_face_at_fitted_pose',
                           'mean face at the fitted pose'),
                          ('model', f'fitted model (mean of {row["fits"]})'),
                          ('model_given_true_landmarks',
                           'fitted model given the true landmarks')):
      errors = row[source]
      overall = f'{errors["all"]:.3f}'
      if source == 'model' and row['fits'] > 1:
        overall += ' [{:.3f}-{:.3f}]'.format(*row['model_range'])
      met = ('yes' if errors['all'] <= TARGET_NME else 'no'
             ) if source == 'model' else ''
      lines.append(f'| {name} | {label} | {overall} | ' + ' | '.join(
          f'{errors[region]:.3f}' for region in REGIONS) + f' | {met} |')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  compilation_cache.enable()
  model = fm.load_face_model()
  reconstructor = reconstructor_lib.Reconstructor(model, None, fit.FitConfig())
  finder = detection.FaceLandmarker()
  results = {'shift_px': FLAGS.shift_px, 'target_nme': TARGET_NME,
             'photos': {}}
  for name, sample in samples.sample_faces().items():
    image = np.asarray(Image.open(sample.image_path).convert('RGB'))
    truth = lm.read_pts(sample.landmarks_path).astype(np.float64)
    results['photos'][name] = evaluate_photo(
        model, reconstructor, finder, image, truth, FLAGS.shift_px)
    print(name, json.dumps(results['photos'][name]), flush=True)
  experiments.write_results(FLAGS.output, results, table(results))


if __name__ == '__main__':
  _define_flags()
  app.run(main)
