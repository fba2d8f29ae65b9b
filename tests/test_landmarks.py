"""68-point markup files and groups; the sliding contour."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from mofa_ml import image_io
from mofa_ml import samples
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh


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


def test_outer_eye_distance_of_known_corners():
  points = np.zeros((2, lm.NUM_LANDMARKS, 2), np.float32)
  points[0, lm.RIGHT_EYE_OUTER_CORNER] = [10.0, 20.0]
  points[0, lm.LEFT_EYE_OUTER_CORNER] = [40.0, 60.0]  # a 3-4-5 triangle
  points[1, lm.LEFT_EYE_OUTER_CORNER] = [0.0, 7.0]
  np.testing.assert_allclose(lm.outer_eye_distance(points), [50.0, 7.0])
  assert float(lm.outer_eye_distance(points[0])) == pytest.approx(50.0)


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


def test_sliding_landmarks_pick_the_silhouette_of_a_rotated_sphere():
  unit, _ = mesh.icosphere(4)
  radius, centre = 80.0, np.array([20.0, -10.0, 600.0])
  rotation = np.asarray(camera.euler_to_rotation(jnp.asarray([0.3, 0.8, 0.1])))
  points = (unit @ rotation.T) * radius + centre
  intrinsics = camera.default_intrinsics()
  # Candidates: the vertices near one great circle (x = 0 in the sphere's
  # own frame), like a strip across the jaw line.
  strip = np.flatnonzero(np.abs(unit[:, 0]) < 0.03)
  # Silhouette: where the view ray is tangent, (p - c) . p = 0.
  tangency = np.abs(np.sum((points[strip] - centre) * points[strip], 1))
  tangency /= np.linalg.norm(points[strip], axis=1) * radius
  target = strip[np.argmin(tangency)]
  detected = camera.project(jnp.asarray(points[target][None]), intrinsics)
  chosen = lm.sliding_contour_vertices(
      jnp.asarray(points, jnp.float32), detected, intrinsics,
      jnp.asarray(strip[None]), jnp.ones((1, len(strip)), bool))
  assert int(chosen[0]) == target
  # Padded slots never win, even if they are closer.
  padded = np.concatenate([strip[strip != target], [target]])[None]
  mask = np.ones_like(padded, bool)
  mask[0, -1] = False
  chosen = lm.sliding_contour_vertices(
      jnp.asarray(points, jnp.float32), detected, intrinsics,
      jnp.asarray(padded), jnp.asarray(mask))
  assert int(chosen[0]) != target
