"""`experiments/photo_landmarks.py`'s scoring and table (the fits themselves
are `mofa reconstruct`'s, tested in test_reconstruct)."""

import numpy as np

from experiments import photo_landmarks
from mofa_ml import metrics
from mofa_ml import samples
from mofa_ml.facemodel import landmarks as lm


def test_region_errors_of_known_displacements():
  truth = lm.read_pts(samples.sample_faces()['takeo'].landmarks_path)
  truth = truth.astype(np.float64)
  eyes = np.linalg.norm(truth[36] - truth[45])
  moved = truth.copy()
  # The brows 0.2 eye distances up, everything else 0.05 sideways.
  moved[:, 0] += 0.05 * eyes
  moved[list(lm.RIGHT_BROW + lm.LEFT_BROW)] = (
      truth[list(lm.RIGHT_BROW + lm.LEFT_BROW)] - [0.0, 0.2 * eyes])
  errors = photo_landmarks.region_errors(moved, truth)
  np.testing.assert_allclose(errors['brows'], 0.2, rtol=1e-6)
  for region in ('jaw', 'nose', 'eyes', 'mouth'):
    np.testing.assert_allclose(errors[region], 0.05, rtol=1e-6)
  np.testing.assert_allclose(errors['all'], (10 * 0.2 + 58 * 0.05) / 68,
                             rtol=1e-6)
  np.testing.assert_allclose(
      errors['all'], float(metrics.landmark_nme(moved, truth)), rtol=1e-6)
  # The regions partition the 68 points.
  assert sorted(i for points in photo_landmarks.REGIONS.values()
                for i in points) == list(range(lm.NUM_LANDMARKS))


def test_table_marks_the_target_on_the_model_rows_only():
  errors = lambda value: dict({'all': value}, **{
      region: value for region in photo_landmarks.REGIONS})
  row = {'detector': errors(0.04), 'mean_face_at_fitted_pose': errors(0.09),
         'model': errors(0.06), 'model_range': [0.055, 0.065], 'fits': 5,
         'model_given_true_landmarks': errors(0.03)}
  good = dict(row, model=errors(0.049), model_range=[0.048, 0.05])
  text = photo_landmarks.table({'photos': {'a': row, 'b': good}})
  lines = text.splitlines()
  assert len(lines) == 2 + 2 * 4
  assert lines[4].startswith('| a | fitted model (mean of 5) | 0.060 '
                             '[0.055-0.065] |') and lines[4].endswith('| no |')
  assert lines[5].startswith('| a | fitted model given the true landmarks '
                             '| 0.030 |')
  assert lines[8].endswith('| yes |')
  assert all(line.endswith('|  |')
             for line in lines[2:4] + lines[5:8] + lines[9:])
