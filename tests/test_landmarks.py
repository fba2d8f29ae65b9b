"""68-point markup files and groups."""

import os

import numpy as np
import pytest

from mofa_ml import image_io
from mofa_ml import landmarks as lm
from mofa_ml import samples


def test_groups_partition_the_68_points():
  groups = (lm.JAW, lm.RIGHT_BROW, lm.LEFT_BROW, lm.NOSE_BRIDGE, lm.NOSTRILS,
            lm.RIGHT_EYE, lm.LEFT_EYE, lm.OUTER_LIPS, lm.INNER_LIPS)
  assert sorted(sum(groups, ())) == list(range(68))
  assert sorted(lm.CONTOUR + lm.FIXED) == list(range(68))


@pytest.mark.parametrize('name', samples.SAMPLE_NAMES)
def test_bundled_ground_truth_lies_on_the_face(name):
  sample = samples.sample_faces()[name]
  points = lm.read_pts(sample.landmarks_path)
  image = image_io.load_image(sample.image_path)
  assert points.shape == (68, 2) and points.dtype == np.float32
  height, width = image.shape[:2]
  assert np.all((points >= 0) & (points < [width, height]))
  # Anatomy: the subject's right eye corner is left of the left one in the
  # image, the chin lies below the nose tip, the nose tip below the brows.
  assert points[lm.RIGHT_EYE_OUTER_CORNER, 0] < points[
      lm.LEFT_EYE_OUTER_CORNER, 0]
  assert points[8, 1] > points[30, 1] > points[19, 1]


def test_write_read_round_trip_and_one_based_origin(tmp_path):
  points = np.random.default_rng(0).uniform(0, 200, (68, 2)).astype(np.float32)
  path = os.path.join(tmp_path, 'face.pts')
  lm.write_pts(path, points)
  np.testing.assert_allclose(lm.read_pts(path), points, atol=1e-3)
  np.testing.assert_allclose(lm.read_pts(path, one_based=False), points + 1,
                             atol=1e-3)


def test_bad_files_give_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='not found'):
    lm.read_pts(os.path.join(tmp_path, 'none.pts'))
  short = os.path.join(tmp_path, 'short.pts')
  with open(short, 'w') as f:
    f.write('version: 1\nn_points: 5\n{\n' + '1 2\n' * 5 + '}\n')
  with pytest.raises(ValueError, match='expected 68 landmarks'):
    lm.read_pts(short)
  lying = os.path.join(tmp_path, 'lying.pts')
  with open(lying, 'w') as f:
    f.write('version: 1\nn_points: 68\n{\n' + '1 2\n' * 67 + '}\n')
  with pytest.raises(ValueError, match='declares 68'):
    lm.read_pts(lying)
  junk = os.path.join(tmp_path, 'junk.pts')
  with open(junk, 'w') as f:
    f.write('hello')
  with pytest.raises(ValueError, match='not a .pts file'):
    lm.read_pts(junk)
