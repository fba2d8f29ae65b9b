"""Per-image fitting: the landmark pose start and the ladder's first steps."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofa_ml.data import synthetic
from mofa_ml import metrics
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.learning import network
from mofa_ml.learning import objective
from mofa_ml.fitting import fit
from mofa_ml.fitting import pose_start
from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh

# Ladder step (a): in-space, frontal, ambient light, grey background.
STEP_A = synthetic.SyntheticConfig(out_of_space=False, max_yaw=0.0,
                                   max_pitch=0.0, max_roll=0.0,
                                   ambient_only=True, background_grey=0.5)
STEP_B = dataclasses.replace(STEP_A, ambient_only=False)


def test_landmark_pose_recovers_a_known_pose(ict_model):
  intrinsics = camera.default_intrinsics()
  angles = jnp.asarray([0.15, -0.5, 0.08])
  translation = jnp.asarray([12.0, -8.0, 1150.0])
  points = camera.rigid_transform(
      ict_model.mean_shape[ict_model.landmark_vertices],
      camera.pose_rotation(angles), translation)
  landmarks = camera.project(points, intrinsics)
  rotation, found = pose_start.landmark_pose(ict_model, intrinsics,
                                             landmarks, jnp.ones(68))
  np.testing.assert_allclose(rotation, angles, atol=2e-3)
  np.testing.assert_allclose(found, translation, atol=1.0)  # mm at 1.15 m


def _geometry_mm(model, params, vertices, offsets=0.0):
  """Mean aligned error (mm) of the base level plus `offsets` (N, 3)."""
  points = camera.rigid_transform(
      model.geometry(params.shape, params.expression) + offsets,
      camera.pose_rotation(params.rotation), params.translation)
  return float(metrics.aligned_vertex_errors(points, vertices).mean())


# The ladder's renders light faces with coloured lights and in-space
# reflectances beyond [0, 1]: the appearance priors, chosen for real photos,
# are off in this test of the code (the truth recovered in-space).
# From the truth no continuation: the fit must stay at the objective's
# optimum, which is the truth in-space.
IN_SPACE = fit.FitConfig(final_steps=0, light_colour_prior=0.0,
                         reflectance_bound=0.0, prediction_stages=())


def _ladder_errors(model, config, count, fit_config=IN_SPACE):
  """Base-level geometry errors (mm) of fits on `count` faces of a ladder
  step: from the truth, from the mean face, and the mean face itself."""
  layout = layout_lib.ParameterLayout.for_model(model)
  base_layout = layout_lib.ParameterLayout.for_model(model, 0, False)
  intrinsics = camera.default_intrinsics()
  faces = jax.device_get(synthetic.generate_batch(
      jax.random.PRNGKey(7), model, layout, intrinsics, config, count))
  zeros = jnp.zeros((model.num_vertices, 3))
  errors = {'truth': [], 'mean': [], 'mean_face': []}
  for index in range(count):
    truth = base_layout.split(jnp.asarray(faces['params'][index]))
    vertices = jnp.asarray(faces['vertices'][index])
    arguments = (model, intrinsics, jnp.asarray(faces['image'][index]),
                 jnp.asarray(faces['landmarks'][index]),
                 jnp.asarray(faces['landmark_confidence'][index]),
                 fit_config)
    fitted = {
        'truth': fit.fit_face(*arguments, network.Prediction(truth, zeros,
                                                             zeros)).params,
        'mean': fit.fit_face(*arguments).params,
        'mean_face': truth._replace(
            shape=jnp.zeros_like(truth.shape),
            expression=jnp.zeros_like(truth.expression)),
    }
    for name, params in fitted.items():
      errors[name].append(_geometry_mm(model, params, vertices))
  print(errors)
  return {name: float(np.mean(values)) for name, values in errors.items()}


def test_ladder_steps_a_and_b_stay_at_the_truth_and_beat_the_mean_face(
    ict_model):
  # Measured (docs/results.md, ladder, 4 faces, Levenberg-Marquardt):
  # step a 0.51 mm from the truth (Adam: 1.05, the paper's fitter: 2.13),
  # 1.08 mm from the mean face's 3.95 (Adam: 2.69). Ambient light leaves
  # shape directions that only the prior fixes; with a directional light
  # (step b) the fit from the truth stays within 0.06 mm and from the mean
  # reaches 0.41 mm (the shading's dependence on the shape in the Jacobian;
  # without it 1.19 mm).
  step_a = _ladder_errors(ict_model, STEP_A, 2)
  assert step_a['truth'] < 0.8
  assert step_a['mean'] < 1.6 < step_a['mean_face']
  step_b = _ladder_errors(ict_model, STEP_B, 2)
  assert step_b['truth'] < 0.15
  assert step_b['mean'] < 0.8 < 3.0 < step_b['mean_face']


@pytest.mark.heavy
def test_noisy_landmarks_lose_weight_instead_of_pulling_the_shape_away(
    ict_model):
  # Ladder step d (pose, light, backgrounds) with 8 px of Gaussian noise on
  # the landmarks (NME ~0.1, like the detector on einstein). Measured on 8
  # validation faces from the mean: 0.84 mm with the landmark term's noise
  # weight (0.93 at 3 px), 7.28 mm without (the mean face: ~3.9).
  noisy = dataclasses.replace(STEP_B, max_yaw=45.0, max_pitch=15.0,
                              max_roll=10.0, background_grey=-1.0,
                              landmark_noise_px=8.0)
  adaptive = _ladder_errors(ict_model, noisy, 2)
  fixed = _ladder_errors(ict_model, noisy, 2, dataclasses.replace(
      IN_SPACE, landmark_noise_px=0.0))
  assert adaptive['mean'] < 2.0 < adaptive['mean_face']
  assert adaptive['truth'] < 2.0
  assert 2 * adaptive['mean'] < fixed['mean']


def test_smooth_displacement_modes_are_unit_and_along_the_normals(
    ict_model):
  model = ict_model
  joint = fm.with_smooth_displacements(model, 20, 0.8)
  assert joint.num_shape == model.num_shape + 20
  np.testing.assert_array_equal(joint.shape_basis[:model.num_shape],
                                model.shape_basis)
  modes = joint.shape_basis[model.num_shape:]
  np.testing.assert_allclose(jnp.sum(modes**2, (1, 2)), 1.0, rtol=1e-5)
  normals = mesh.vertex_normals(model.mean_shape, model.triangles)
  np.testing.assert_allclose(jnp.cross(modes, normals), 0.0, atol=1e-6)
  # Under the prior the modes together move a vertex by 0.8 mm RMS.
  sigma = joint.shape_sigma[model.num_shape:]
  np.testing.assert_allclose(
      jnp.sqrt(jnp.sum(sigma**2 * jnp.mean(jnp.sum(modes**2, -1), -1))),
      0.8, rtol=1e-5)
  with pytest.raises(ValueError, match='has 72'):
    fm.with_smooth_displacements(model, 73, 0.8)


def test_corrective_harmonics_belong_to_levenberg_marquardt():
  assert fit.FitConfig().harmonic_count == fit.DEFAULT_HARMONICS
  assert fit.FitConfig(base_solver='adam').harmonic_count == 0
  assert fit.FitConfig(fixed_identity=True).harmonic_count == 0
  with pytest.raises(ValueError, match='gauss_newton only'):
    fit.FitConfig(base_solver='adam', corrective_harmonics=5)
  with pytest.raises(ValueError, match='positive'):
    fit.FitConfig(corrective_rms_mm=0.0)


def test_smooth_correctives_take_up_what_the_identity_cannot(ict_model):
  # Faces drawn from the model plus smooth displacements (the modes of the
  # fit's joint solve, 1.5 mm RMS), lit by a directional light. Measured:
  # base 1.35 / 0.96 mm, base + smooth correctives 0.71 / 0.37, the truth's
  # own identity and expression 1.23 / 0.92, the mean face 5.6 / 3.5.
  model = ict_model
  joint = fm.with_smooth_displacements(model, fit.DEFAULT_HARMONICS, 1.5)
  intrinsics = camera.default_intrinsics()
  faces = jax.device_get(synthetic.generate_batch(
      jax.random.PRNGKey(5), joint, layout_lib.ParameterLayout.for_model(joint),
      intrinsics, STEP_B, 2))
  for index in range(2):
    result = fit.fit_face(model, intrinsics,
                          jnp.asarray(faces['image'][index]),
                          jnp.asarray(faces['landmarks'][index]),
                          jnp.asarray(faces['landmark_confidence'][index]),
                          fit.FitConfig(final_steps=0))
    truth = jnp.asarray(faces['vertices'][index])
    errors = {
        'base': _geometry_mm(model, result.params, truth),
        'final': _geometry_mm(model, result.params, truth,
                              result.geometry_offsets),
    }
    true_params = layout_lib.ParameterLayout.for_model(joint, 0, False).split(
        jnp.asarray(faces['params'][index]))
    identity = _geometry_mm(model, true_params._replace(
        shape=true_params.shape[:model.num_shape]), truth)
    assert errors['final'] < 0.7 * errors['base'], errors
    assert errors['base'] < 1.2 * identity, (errors, identity)


def test_the_default_schedule_is_the_continuation_then_the_loss_weights():
  def iterations(stages):
    return [(stage.terms, stage.prior_scale) for stage in stages
            for _ in range(stage.iterations)]

  config = fit.FitConfig()
  assert iterations(config.base_schedule(from_mean=True)) == (
      [('landmarks', 300.0)] * 5 + [('all', 100.0)] * 4 +
      [('all', 30.0)] * 4 + [('all', 10.0)] * 4 + [('all', 3.0)] * 4 +
      [('all', 1.0)] * 12)
  # From a prediction: a short continuation (a regressor's pose is not the
  # landmarks' yet).
  assert iterations(config.base_schedule(from_mean=False)) == (
      [('landmarks', 300.0)] * 5 + [('all', 10.0)] * 4 + [('all', 1.0)] * 12)
  hash(config)  # a static jit argument
  with pytest.raises(TypeError, match='ContinuationStage'):
    fit.FitConfig(continuation=(300.0, (100.0, 4)))


def test_the_final_phase_keeps_the_prior_at_stage_one_strength():
  stage1 = objective.paper_weights('stage1')
  stage2 = objective.paper_weights('stage2')
  weights = dict(fit.final_phase_loss().weights)
  assert weights['reg'] == stage1['reg']
  for name in ('smo', 'ref', 'sta'):  # effective weights unchanged
    np.testing.assert_allclose(weights['reg'] * weights[name],
                               stage2['reg'] * stage2[name], rtol=1e-9)
  # The global constancy at its stage-1 effective weight (see the docstring).
  np.testing.assert_allclose(weights['reg'] * weights['glo'],
                             stage1['reg'] * stage2['glo'], rtol=1e-9)
  assert weights['photo'] == stage2['photo']


def test_final_phase_moves_vertices_along_the_base_normals_only(ict_model):
  model = ict_model
  layout = layout_lib.ParameterLayout.for_model(model)
  intrinsics = camera.default_intrinsics()
  face = jax.device_get(synthetic.generate_batch(
      jax.random.PRNGKey(3), model, layout, intrinsics,
      synthetic.SyntheticConfig(), 1))
  truth = layout_lib.ParameterLayout.for_model(model, 0, False).split(
      jnp.asarray(face['params'][0]))
  start = 0.3 * jax.random.normal(jax.random.PRNGKey(0),
                                  (model.num_vertices, 3))
  result = fit.fit_face(
      model, intrinsics, jnp.asarray(face['image'][0]),
      jnp.asarray(face['landmarks'][0]),
      jnp.asarray(face['landmark_confidence'][0]),
      fit.FitConfig(base_steps=0, final_steps=10, prediction_stages=()),
      network.Prediction(truth, start, jnp.zeros_like(start)))
  base = model.geometry(result.params.shape, result.params.expression)
  normals = mesh.vertex_normals(base, model.triangles)
  moved = result.geometry_offsets - start  # a start's offsets are kept
  along = jnp.sum(moved * normals, -1)
  assert float(jnp.abs(along).max()) > 0.05  # mm: the correctives moved
  np.testing.assert_allclose(moved, along[:, None] * normals, atol=1e-5)


def _one_face(model, config):
  """(the face's arrays, its true base-level FaceParams, the crop camera)."""
  layout = layout_lib.ParameterLayout.for_model(model)
  intrinsics = camera.default_intrinsics()
  face = jax.device_get(synthetic.generate_batch(
      jax.random.PRNGKey(3), model, layout, intrinsics, config, 1))
  face = {name: value[0] for name, value in face.items()}
  truth = layout_lib.ParameterLayout.for_model(model, 0, False).split(
      jnp.asarray(face['params']))
  return face, truth, intrinsics


def test_raster_support_makes_the_truth_photometrically_exact(ict_model):
  face, params, intrinsics = _one_face(ict_model, STEP_A)
  zeros = jnp.zeros((ict_model.num_vertices, 3))
  terms = {}
  for visibility, correction in (('backface', False), ('raster', True)):
    loss = objective.LossConfig.for_stage(
        'stage1', visibility=visibility, raster_correction=correction)
    terms[visibility] = objective.face_objective(
        ict_model, intrinsics, loss, params, zeros, zeros,
        jnp.asarray(face['image']), jnp.asarray(face['landmarks']),
        jnp.asarray(face['landmark_confidence']), jax.random.PRNGKey(0))
  # The paper's comparison leaves silhouette and hidden vertices on the
  # background; the rendered-picture comparison is exact up to 8-bit noise.
  assert float(terms['backface']['photometric_error_base']) > 0.005
  assert float(terms['raster']['photometric_error_base']) < 0.002


def test_a_fit_from_a_poor_prediction_reaches_the_landmarks(ict_model):
  # A regressor's pose is off (here 15 degrees of yaw and 15 mm): the
  # prediction's schedule starts with the landmarks, so the fit ends on them
  # as one from the mean face does.
  face, truth, intrinsics = _one_face(
      ict_model, dataclasses.replace(STEP_B, max_yaw=30.0))
  poor = truth._replace(
      shape=jnp.zeros_like(truth.shape),
      expression=jnp.zeros_like(truth.expression),
      rotation=truth.rotation + jnp.asarray([0.0, np.radians(15.0), 0.0]),
      translation=truth.translation + jnp.asarray([15.0, -10.0, 40.0]))
  zeros = jnp.zeros((ict_model.num_vertices, 3))
  result = fit.fit_face(
      ict_model, intrinsics, jnp.asarray(face['image']),
      jnp.asarray(face['landmarks']),
      jnp.asarray(face['landmark_confidence']),
      dataclasses.replace(IN_SPACE, prediction_stages=fit.FitConfig(
      ).prediction_stages), network.Prediction(poor, zeros, zeros))
  assert float(result.start['landmark_error_px']) > 10.0
  assert float(result.end['landmark_error_px']) < 1.5
  assert _geometry_mm(ict_model, result.params,
                      jnp.asarray(face['vertices'])) < 1.5


def test_a_fit_without_its_terms_fits_the_same_face(ict_model):
  # Video frames skip the two evaluations of the final loss: the fitted
  # parameters must not change with them.
  face, truth, intrinsics = _one_face(ict_model, STEP_B)
  moved = truth._replace(
      expression=jnp.zeros_like(truth.expression),
      rotation=truth.rotation + jnp.asarray([0.0, 0.1, 0.0]))
  zeros = jnp.zeros((ict_model.num_vertices, 3))
  config = fit.FitConfig(base_steps=1, final_steps=0, fixed_identity=True,
                         prediction_stages=())
  results = [fit.fit_face(
      ict_model, intrinsics, jnp.asarray(face['image']),
      jnp.asarray(face['landmarks']),
      jnp.asarray(face['landmark_confidence']),
      dataclasses.replace(config, report_terms=report),
      network.Prediction(moved, zeros, zeros)) for report in (True, False)]
  assert results[0].end['landmark_error_px'] < results[0].start[
      'landmark_error_px']
  assert results[1].start == {} and results[1].end == {}
  for with_terms, without in zip(results[0].params, results[1].params):
    np.testing.assert_allclose(with_terms, without, atol=1e-5)
