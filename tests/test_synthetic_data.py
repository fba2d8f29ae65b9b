"""The synthetic corpus and the input pipeline."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofa_ml.data import head as head_lib
from mofa_ml.data import input_pipeline
from mofa_ml.data import synthetic
from mofa_ml.facemodel import ict
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.learning import objective
from mofa_ml.rendering import camera


@pytest.fixture(scope='module')
def faces(ict_model):
  layout = layout_lib.ParameterLayout.for_model(ict_model)
  return jax.device_get(synthetic.generate_batch(
      jax.random.PRNGKey(3), ict_model, layout, camera.default_intrinsics(),
      synthetic.SyntheticConfig(), 6))


def test_generated_faces_have_consistent_ground_truth(ict_model, faces):
  n = ict_model.num_vertices
  chex.assert_shape(faces['image'], (6, 240, 240, 3))
  chex.assert_shape(faces['landmarks'], (6, 68, 2))
  chex.assert_shape([faces['vertices'], faces['albedo']], (6, n, 3))
  assert not faces['overflow'].any()
  assert 0.0 <= faces['image'].min() and faces['image'].max() <= 1.0
  layout = layout_lib.ParameterLayout.for_model(ict_model, 0, False)
  for index in range(6):
    params = layout.split(jnp.asarray(faces['params'][index]))
    base = ict_model.geometry(params.shape, params.expression)
    # Out-of-space: the true surface leaves the base model by up to a few
    # mm, but stays close to it.
    deviation = np.linalg.norm(faces['vertices'][index] - base, axis=-1)
    assert 0.3 < deviation.max() < 8.0
    # Landmarks lie inside the image and on the face.
    marks = faces['landmarks'][index]
    assert np.all((marks > 0) & (marks < 239))


def test_ground_truth_parameters_explain_the_landmarks(ict_model, faces):
  # Projecting the true surface's landmark vertices with the true pose
  # reproduces the fixed (inner) landmarks exactly.
  layout = layout_lib.ParameterLayout.for_model(ict_model, 0, False)
  intrinsics = camera.default_intrinsics()
  params = layout.split(jnp.asarray(faces['params'][0]))
  points = camera.rigid_transform(jnp.asarray(faces['vertices'][0]),
                                  camera.pose_rotation(params.rotation),
                                  params.translation)
  pixels = camera.project(points, intrinsics)
  fixed = np.asarray(ict_model.landmark_vertices)[17:]
  np.testing.assert_allclose(pixels[fixed], faces['landmarks'][0][17:],
                             atol=1e-3)
  # The objective at the ground truth is small for the landmarks.
  terms = objective.face_objective(
      ict_model, intrinsics, objective.LossConfig.for_stage('stage1'), params,
      jnp.zeros((ict_model.num_vertices, 3)),
      jnp.zeros((ict_model.num_vertices, 3)), jnp.asarray(faces['image'][0]),
      jnp.asarray(faces['landmarks'][0]),
      jnp.asarray(faces['landmark_confidence'][0]), jax.random.PRNGKey(0))
  assert float(terms['landmark_error_px']) < 3.0


def test_inside_polygon_by_hand():
  square = jnp.asarray([[2.0, 2.0], [6.0, 2.0], [6.0, 6.0], [2.0, 6.0]])
  inside = synthetic._inside_polygon(square, 9, 1.0)  # pylint: disable=protected-access
  expected = np.zeros((9, 9), bool)
  expected[2:7, 2:7] = True  # rows (y) and columns (x) 2..6, edges included
  np.testing.assert_array_equal(inside, expected)
  np.testing.assert_array_equal(  # either winding
      synthetic._inside_polygon(square[::-1], 9, 1.0), expected)  # pylint: disable=protected-access
  assert int(synthetic._inside_polygon(square, 9, 1.5).sum()) == 49  # pylint: disable=protected-access


def test_painted_openings_change_only_the_eye_and_mouth_holes(ict_model,
                                                               faces):
  layout = layout_lib.ParameterLayout.for_model(ict_model)
  painted = jax.device_get(synthetic.generate_batch(
      jax.random.PRNGKey(3), ict_model, layout, camera.default_intrinsics(),
      synthetic.SyntheticConfig(painted_openings=True), 6))
  for key in ('landmarks', 'params', 'vertices', 'albedo'):
    np.testing.assert_array_equal(painted[key], faces[key])
  pupils = 0
  for index in range(6):
    changed = np.any(painted['image'][index] != faces['image'][index], -1)
    marks = np.asarray(faces['landmarks'][index])
    holes = np.zeros_like(changed)
    for opening in (range(36, 42), range(42, 48), range(60, 68)):
      holes |= np.asarray(synthetic._inside_polygon(  # pylint: disable=protected-access
          jnp.asarray(marks[list(opening)]), 240, 1.3))
    assert changed.any() and not (changed & ~holes).any()
    for eye in (range(36, 42), range(42, 48)):
      column, row = np.round(marks[list(eye)].mean(0)).astype(int)
      if changed[row, column]:  # the eye's centre shows: a dark pupil
        assert painted['image'][index][row, column].max() < 0.1
        pupils += 1
  assert pupils >= 6


def test_head_is_the_ict_head_under_the_same_blendshape_weights(ict_model):
  # The face's shape and expression coefficients are combinations of ICT's
  # blendshapes: the head under them is the ICT head under those weights,
  # so face and head meet without a seam.
  head = head_lib.load_head(ict_model)
  source, derived = ict.load_source(), ict.load_derived()
  keys = jax.random.split(jax.random.PRNGKey(0))
  shape = jax.random.normal(keys[0], (ict_model.num_shape,)) * \
      ict_model.shape_sigma
  expression = 0.3 * jax.random.normal(
      keys[1], (ict_model.num_expression,)) * ict_model.expression_sigma
  both = np.concatenate([ict_model.geometry(shape, expression),
                         head_lib.geometry(head, shape, expression)])
  identity_weights = np.asarray(shape) @ derived['identity_combination']
  expression_weights = (np.asarray(expression) @
                        derived['expression_combination'])
  blended = 10.0 * (source['neutral'] + np.einsum(
      'b,bnd->nd', identity_weights, source['identity_basis']) + np.einsum(
          'b,bnd->nd', expression_weights, source['expression_basis']))
  np.testing.assert_allclose(both, blended, atol=0.05)  # mm
  assert int(head.eyeball.sum()) == 2 * 1570
  with pytest.raises(ValueError, match='bundled ICT model'):
    head_lib.load_head(ict_model.replace(name='bfm09'))


def test_head_albedo_puts_pupils_at_the_gaze_and_skin_elsewhere(ict_model):
  head = head_lib.load_head(ict_model)
  skin = jnp.asarray([0.6, 0.4, 0.3])
  albedo = np.asarray(head_lib.albedo(jax.random.PRNGKey(1), head, skin))
  gaze = np.degrees(np.arccos(np.clip(np.asarray(head.gaze_cosine), -1, 1)))
  eyeball = np.asarray(head.eyeball)
  np.testing.assert_allclose(albedo[eyeball & (gaze < 8)], 0.02)
  np.testing.assert_allclose(albedo[eyeball & (gaze > 30)],
                             np.broadcast_to(head_lib.SCLERA, (np.sum(
                                 eyeball & (gaze > 30)), 3)), atol=1e-6)
  # Below the brows (ears, neck) the head is skin, whatever the hair.
  low = ~eyeball & (np.asarray(head.height) < -40)
  np.testing.assert_allclose(albedo[low], np.broadcast_to(skin, (
      low.sum(), 3)), atol=1e-3)


def test_head_renders_keep_the_ground_truth_and_fill_the_eyes(ict_model,
                                                              faces):
  layout = layout_lib.ParameterLayout.for_model(ict_model)
  with_head = jax.device_get(synthetic.generate_batch(
      jax.random.PRNGKey(3), ict_model, layout, camera.default_intrinsics(),
      synthetic.SyntheticConfig(), 6, head_lib.load_head(ict_model)))
  assert not with_head['overflow'].any()
  np.testing.assert_array_equal(with_head['params'], faces['params'])
  # Only the bumps near the seam see the head's normals (and the colour
  # patches follow the bumps).
  np.testing.assert_allclose(with_head['landmarks'][:, 17:],
                             faces['landmarks'][:, 17:], atol=1e-3)
  moved = np.linalg.norm(with_head['vertices'] - faces['vertices'], axis=-1)
  assert np.median(moved) < 1e-4 and moved.max() < 2.0
  recoloured = np.abs(with_head['albedo'] - faces['albedo']).max(-1)
  assert np.median(recoloured) < 1e-4 and recoloured.max() < 0.05
  for index in range(6):
    grey = lambda image: np.asarray(image).mean(-1)
    difference = np.abs(grey(with_head['image'][index]) -
                        grey(faces['image'][index]))
    assert (difference > 0.02).mean() > 0.05  # hair, ears, neck
    # The eye openings show eyeballs instead of the background.
    for opening in (range(36, 42), range(42, 48)):
      inside = np.asarray(synthetic._inside_polygon(  # pylint: disable=protected-access
          jnp.asarray(faces['landmarks'][index][list(opening)]), 240, 0.8))
      assert (difference[inside] > 0.02).mean() > 0.8


def test_generation_is_a_pure_function_of_the_key(ict_model):
  layout = layout_lib.ParameterLayout.for_model(ict_model)
  make = lambda seed: synthetic.generate_batch(
      jax.random.PRNGKey(seed), ict_model, layout,
      camera.default_intrinsics(), synthetic.SyntheticConfig(), 2)
  first, again, other = make(11), make(11), make(12)
  np.testing.assert_array_equal(first['image'], again['image'])
  assert np.abs(first['image'] - other['image']).mean() > 0.01


def test_tfds_corpus_loads_through_the_training_pipeline(tiny_data_dir):
  source = input_pipeline.load_source('mofa_synthetic/tiny', 'train',
                                      tiny_data_dir)
  assert len(source) == 40
  example = source[0]
  assert example['image'].dtype == np.uint8
  assert example['vertices'].dtype == np.float16
  batches = input_pipeline.training_batches(source, 5, seed=3)
  batch = next(batches)
  chex.assert_shape(batch['image'], (5, 240, 240, 3))
  chex.assert_shape(batch['landmarks'], (5, 68, 2))
  chex.assert_shape(batch['landmark_confidence'], (5, 68))
  assert batch['image'].dtype == np.uint8
  # Resuming at step 7 reads what an uninterrupted reader reads there.
  uninterrupted = [next(batches)['landmarks'] for _ in range(7)][-1]
  resumed = next(input_pipeline.training_batches(source, 5, seed=3,
                                                 start_step=7))['landmarks']
  np.testing.assert_array_equal(uninterrupted, resumed)
  test = input_pipeline.load_source('mofa_synthetic/tiny', 'test',
                                    tiny_data_dir)
  sizes = [len(b['image']) for b in input_pipeline.evaluation_batches(test, 6)]
  assert sizes == [6, 6, 4]


def test_pipeline_errors_are_clear(tiny_data_dir):
  with pytest.raises(ValueError, match='unknown dataset'):
    input_pipeline.load_source('no_such_dataset_here', 'train', tiny_data_dir)
  with pytest.raises(ValueError, match='no split'):
    input_pipeline.load_source('mofa_synthetic/tiny', 'holdout', tiny_data_dir)
  source = input_pipeline.load_source('mofa_synthetic/tiny', 'validation',
                                      tiny_data_dir)
  with pytest.raises(ValueError, match='fewer than one batch'):
    input_pipeline.training_batches(source, 9, seed=0)
