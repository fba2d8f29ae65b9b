"""Levenberg-Marquardt on the base parameters: its Jacobian against
autodiff and finite differences, its steps against the exact objective."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofa_ml.data import synthetic
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.learning import objective
from mofa_ml.fitting import appearance_prior
from mofa_ml.fitting import fit
from mofa_ml.fitting import gauss_newton
from mofa_ml.fitting import least_squares
from mofa_ml.rendering import camera
from mofa_ml.rendering import formation

# A directional light: the shading depends on the normals, so the
# Jacobian's normal derivatives are checked too.
LIT = synthetic.SyntheticConfig(out_of_space=False, max_yaw=20.0,
                                ambient_only=False, background_grey=0.5)


@pytest.fixture(scope='module')
def setting(ict_model):
  layout = fit.fit_layout(ict_model)
  scaling = layout_lib.parameter_scaling(ict_model, layout)
  intrinsics = camera.default_intrinsics()
  face = jax.device_get(synthetic.generate_batch(
      jax.random.PRNGKey(11), ict_model,
      layout_lib.ParameterLayout.for_model(ict_model), intrinsics, LIT,
      1))
  truth = layout_lib.ParameterLayout.for_model(ict_model, 0, False).split(
      jnp.asarray(face['params'][0]))
  raw = (layout.join(truth._replace(
      correctives_geometry=jnp.zeros(0), correctives_reflectance=jnp.zeros(0),
      sh_final=truth.sh_base)) - scaling.offset) / scaling.scale
  problem = least_squares.Problem(
      jnp.asarray(face['image'][0]), jnp.asarray(face['landmarks'][0]),
      jnp.asarray(face['landmark_confidence'][0]))
  loss = fit.FitConfig().base_loss
  zeros = jnp.zeros((ict_model.num_vertices, 3))
  support = objective.supports(ict_model, intrinsics, loss, truth, zeros,
                               zeros, problem.image)
  return dict(model=ict_model, layout=layout, scaling=scaling,
              intrinsics=intrinsics, raw=raw, problem=problem, loss=loss,
              support=support, truth=truth, vertices=face['vertices'][0])


def _rows(s, raw, sample_size):
  columns = least_squares.free_columns(s['layout'], least_squares.BASE_GROUPS)
  return columns, least_squares.rows(
      s['model'], s['intrinsics'], s['loss'], s['layout'], s['scaling'],
      s['problem'], raw, s['support'], columns, 1e-3, sample_size)


def test_jacobian_rows_match_autodiff_of_the_rendering(setting):
  s = setting
  model, layout, scaling = s['model'], s['layout'], s['scaling']
  # Away from the truth (the light kept), every visible vertex sampled.
  noise = 0.05 * jax.random.normal(jax.random.PRNGKey(0), s['raw'].shape)
  raw = s['raw'] + noise.at[slice(*layout.offsets['sh_base'])].set(0.0)
  columns = least_squares.free_columns(layout, least_squares.BASE_GROUPS)
  found = jax.jit(lambda r: _rows(s, r, model.num_vertices)[1])(raw)
  used = np.asarray(found.photo_weight > 0)
  vertices = np.asarray(found.photo_vertices)[used]
  assert used.sum() > 1000

  def photo(raw_free):
    params = scaling.params(layout, raw.at[columns].set(raw_free))
    surface, _ = levels.surfaces(model, params)
    rendering = levels.render(model, surface, params, s['intrinsics'])
    observed, _ = formation.sample_image(s['problem'].image,
                                         rendering.pixels)
    return (observed - rendering.colors -
            s['support'][0].correction)[vertices]

  def marks(raw_free):
    params = scaling.params(layout, raw.at[columns].set(raw_free))
    surface, _ = levels.surfaces(model, params)
    rendering = levels.render(model, surface, params, s['intrinsics'])
    indices = levels.landmark_vertex_indices(
        model, rendering.points, s['problem'].landmarks, s['intrinsics'])
    return rendering.pixels[indices] - s['problem'].landmarks

  expected = jax.jacfwd(photo)(raw[columns]).reshape(-1, len(columns))
  got = np.asarray(found.photo_jacobian).reshape(-1, 3, len(columns))[used]
  np.testing.assert_allclose(got.reshape(-1, len(columns)), expected,
                             rtol=1e-3, atol=1e-4 * np.abs(expected).max())
  # float32: the normals are rotated before or after they are computed.
  np.testing.assert_allclose(found.photo_residual[used], photo(raw[columns]),
                             atol=5e-5)
  np.testing.assert_allclose(
      found.landmark_jacobian,
      jax.jacfwd(marks)(raw[columns]).reshape(-1, len(columns)),
      rtol=1e-3, atol=1e-3)

  # Finite differences of the inner landmarks' rows (smooth: projection
  # only; the jaw's vertices slide) on pose, shape and expression columns.
  inner = slice(2 * 17, None)
  for group in ('translation', 'rotation', 'shape', 'expression'):
    column = layout.offsets[group][0] + 2
    index = int(np.flatnonzero(columns == column)[0])
    step = 1e-2
    delta = jnp.zeros(len(columns)).at[index].set(step)
    difference = (marks(raw[columns] + delta) -
                  marks(raw[columns] - delta)).reshape(-1) / (2 * step)
    np.testing.assert_allclose(found.landmark_jacobian[inner, index],
                               difference[inner], rtol=2e-2, atol=2e-2)


def test_a_fixed_identitys_rows_are_the_full_rows_columns(setting):
  """With shape and reflectance fixed, the rows (formed only for the free
  groups, with the expression's normal derivatives only) equal those
  columns of every group's rows."""
  s = setting
  model, layout = s['model'], s['layout']
  raw = s['raw'] + 0.05 * jax.random.normal(jax.random.PRNGKey(5),
                                            s['raw'].shape)
  free = least_squares.free_columns(layout, ('expression', 'rotation',
                                             'translation', 'sh_base'))
  vertices = levels.surfaces(model, s['scaling'].params(layout, raw))[0]
  some_normals = least_squares.normal_derivatives(
      model, vertices.vertices, groups=('expression',))
  assert set(some_normals) == {'expression'}
  columns, every = jax.jit(lambda r: _rows(s, r, 1024))(raw)
  found = jax.jit(lambda r: least_squares.rows(
      model, s['intrinsics'], s['loss'], layout, s['scaling'], s['problem'],
      r, s['support'], free, 1e-3, 1024, some_normals))(raw)
  kept = np.searchsorted(columns, free)
  np.testing.assert_array_equal(found.photo_vertices, every.photo_vertices)
  for name in ('photo_jacobian', 'landmark_jacobian'):
    np.testing.assert_allclose(getattr(found, name),
                               getattr(every, name)[:, kept], rtol=1e-5,
                               atol=1e-6 * float(jnp.abs(
                                   getattr(every, name)).max()))


def test_photometric_rows_follow_the_supports_weights(setting):
  """With fractional support weights (`LossConfig.outlier_sigmas`), the
  weighted rows' gradient 2 J^T W r is the exact photometric term's."""
  s = setting
  model, layout, scaling = s['model'], s['layout'], s['scaling']
  raw = s['raw'] + 0.05 * jax.random.normal(jax.random.PRNGKey(3),
                                            s['raw'].shape)
  fraction = jax.random.uniform(jax.random.PRNGKey(4), (model.num_vertices,),
                                minval=0.1, maxval=1.0)
  base = s['support'][0]
  support = (base._replace(visible=base.visible * fraction),
             s['support'][1])
  columns = least_squares.free_columns(layout, least_squares.BASE_GROUPS)
  found = jax.jit(lambda r: least_squares.rows(
      model, s['intrinsics'], s['loss'], layout, scaling, s['problem'], r,
      support, columns, 1e-6, model.num_vertices))(raw)
  weighted = jnp.repeat(found.photo_weight, 3) * found.photo_residual.reshape(
      -1)
  from_rows = 2.0 * found.photo_jacobian.T @ weighted
  zeros = jnp.zeros((model.num_vertices, 3))

  def photometric(raw_free):
    params = scaling.params(layout, raw.at[columns].set(raw_free))
    return s['loss'].weight('photo') * objective.face_objective(
        model, s['intrinsics'], s['loss'], params, zeros, zeros,
        s['problem'].image, s['problem'].landmarks, s['problem'].confidence,
        jax.random.PRNGKey(0), support)['photo_base']

  exact = jax.grad(photometric)(raw[columns])
  np.testing.assert_allclose(from_rows, exact, rtol=2e-2,
                             atol=2e-2 * float(jnp.abs(exact).max()))


def test_an_iteration_lowers_the_exact_objective(setting):
  s = setting
  raw = s['raw'] + 0.3 * jax.random.normal(jax.random.PRNGKey(1),
                                           s['raw'].shape)
  before = _total(s, raw)
  after = _total(s, jax.jit(lambda r: gauss_newton.solve(
      s['model'], s['intrinsics'], s['problem'], r, loss=s['loss'],
      layout=s['layout'], scaling=s['scaling'],
      schedule=(gauss_newton.ContinuationStage('all', 1.0),)))(raw))
  assert after < before


def _total(s, raw):
  zeros = jnp.zeros((s['model'].num_vertices, 3))
  params = s['layout'].split(s['scaling'].offset + s['scaling'].scale * raw)
  return float(objective.face_objective(
      s['model'], s['intrinsics'], s['loss'], params, zeros, zeros,
      s['problem'].image, s['problem'].landmarks, s['problem'].confidence,
      jax.random.PRNGKey(0))['total'])


def test_prior_weights_are_the_objectives_prior(setting):
  """The normal matrix's prior equals the objective's prior terms, with the
  fit's looser shape and tighter expression priors."""
  s = setting
  loss = s['loss']
  assert loss.expression_prior_std < 1.0 < loss.shape_prior_std
  raw = s['raw'] + jax.random.normal(jax.random.PRNGKey(2), s['raw'].shape)
  zeros = jnp.zeros((s['model'].num_vertices, 3))
  terms = objective.face_objective(
      s['model'], s['intrinsics'], loss,
      s['layout'].split(s['scaling'].offset + s['scaling'].scale * raw),
      zeros, zeros, s['problem'].image, s['problem'].landmarks,
      s['problem'].confidence, jax.random.PRNGKey(0))
  prior = loss.weight('reg') * (terms['std_geometry'] + loss.weight('rstd') *
                                terms['std_reflectance'])
  weights = least_squares.prior_weights(s['layout'], loss)
  np.testing.assert_allclose(float(jnp.sum(weights * raw**2)), float(prior),
                             rtol=1e-4)
  expression = slice(*s['layout'].offsets['expression'])
  shape = slice(*s['layout'].offsets['shape'])
  np.testing.assert_allclose(
      weights[expression], loss.weight('reg') / loss.expression_prior_std**2,
      rtol=1e-6)
  np.testing.assert_allclose(
      weights[shape], loss.weight('reg') / loss.shape_prior_std**2,
      rtol=1e-6)


@pytest.mark.parametrize('name', ['shape_prior_std', 'expression_prior_std'])
def test_a_prior_std_of_zero_is_refused(name):
  with pytest.raises(ValueError, match=name):
    objective.LossConfig.for_stage('stage1', **{name: 0.0})


def test_schedule_entries_are_checked():
  stage = gauss_newton.ContinuationStage
  with pytest.raises(ValueError, match='landmarks or all'):
    stage('photo', 1.0)
  with pytest.raises(ValueError, match='0 or more'):
    stage('all', 1.0, iterations=-1)
  assert gauss_newton._runs(  # pylint: disable=protected-access
      (stage('landmarks', 3.0), stage('landmarks', 2.0), stage('all', 1.0))
  ) == [('landmarks', (3.0, 2.0)), ('all', (1.0,))]
  # A stage's iterations repeat its scale; a stage without any is skipped.
  assert gauss_newton._runs(  # pylint: disable=protected-access
      (stage('all', 3.0, 2), stage('landmarks', 2.0, 0), stage('all', 1.0))
  ) == [('all', (3.0, 3.0, 1.0))]


def _dense_targets(s, count=200, noise_px=0.0, seed=3):
  """Dense landmarks at random points of the face's triangles, placed where
  the truth projects them (plus noise)."""
  rng = np.random.default_rng(seed)
  triangles = np.asarray(s['model'].triangles)
  vertices = triangles[rng.choice(len(triangles), count, replace=False)]
  barycentrics = rng.dirichlet(np.ones(3), count).astype(np.float32)
  dense = least_squares.DenseTargets(
      jnp.zeros((count, 2)), jnp.asarray(rng.uniform(0.2, 1.0, count),
                                         jnp.float32),
      jnp.asarray(vertices, jnp.int32), jnp.asarray(barycentrics))
  exact = least_squares.dense_residual(s['model'], s['intrinsics'],
                                       s['truth'], dense)
  return dense._replace(points=exact + noise_px * rng.standard_normal(
      (count, 2)).astype(np.float32))


def test_dense_rows_match_autodiff_and_the_term(setting):
  s = setting
  model, layout, scaling = s['model'], s['layout'], s['scaling']
  dense = _dense_targets(s)
  noise = 0.05 * jax.random.normal(jax.random.PRNGKey(0), s['raw'].shape)
  raw = s['raw'] + noise
  columns = least_squares.free_columns(layout, least_squares.BASE_GROUPS)
  found = jax.jit(lambda r: least_squares.rows(
      model, s['intrinsics'], s['loss'], layout, scaling,
      s['problem']._replace(dense=dense), r, s['support'], columns, 1e-3,
      256))(raw)

  def residual(raw_free):
    return least_squares.dense_residual(
        model, s['intrinsics'],
        scaling.params(layout, raw.at[columns].set(raw_free)), dense)

  np.testing.assert_allclose(found.dense_residual, residual(raw[columns]),
                             atol=1e-3)
  assert np.abs(found.dense_residual).max() > 0.5  # away from the truth
  np.testing.assert_allclose(
      found.dense_jacobian,
      jax.jacfwd(residual)(raw[columns]).reshape(-1, len(columns)),
      rtol=1e-3, atol=1e-3)
  unit = s['loss'].landmark_unit_px
  np.testing.assert_allclose(
      float(jnp.sum(found.dense_weight * jnp.sum(found.dense_residual**2,
                                                 -1))),
      float(jnp.sum(dense.weight * jnp.sum(residual(raw[columns])**2, -1))
            / (len(dense.weight) * unit**2)), rtol=1e-4)


def test_dense_landmarks_pull_the_landmark_stage_onto_them(setting):
  """From the mean face, the landmark stage with dense points at the
  truth's projections ends with those points (measured against the exact
  projections) much closer than with the 68 points alone, and still
  closer when the dense points carry 2 px of noise."""
  s = setting
  model, layout, scaling = s['model'], s['layout'], s['scaling']
  mean = layout.split(scaling.offset)._replace(
      rotation=s['truth'].rotation, translation=s['truth'].translation)
  start = (layout.join(mean) - scaling.offset) / scaling.scale
  schedule = (gauss_newton.ContinuationStage('landmarks', 3.0, 6),)
  exact = _dense_targets(s, 400)
  solve = jax.jit(lambda r, p: gauss_newton.solve(
      model, s['intrinsics'], p, r, loss=s['loss'], layout=layout,
      scaling=scaling, schedule=schedule))

  def dense_error_px(problem):
    params = scaling.params(layout, solve(start, problem))
    residual = least_squares.dense_residual(model, s['intrinsics'], params,
                                            exact)
    return float(jnp.sqrt(jnp.mean(jnp.sum(residual**2, -1))))

  sparse = dense_error_px(s['problem'])
  assert dense_error_px(s['problem']._replace(dense=exact)) < 0.6 * sparse
  noisy = _dense_targets(s, 400, noise_px=2.0)
  assert dense_error_px(s['problem']._replace(dense=noisy)) < 0.8 * sparse


def test_appearance_priors_whiten_the_light_and_bound_the_reflectance(
    setting):
  """From a tinted light and an over-bright reflectance, iterations with the
  appearance priors end with a whiter light and less reflectance outside
  [0, 1] than without them."""
  s = setting
  model, layout, scaling = s['model'], s['layout'], s['scaling']
  truth = s['truth']
  start = truth._replace(
      sh_base=truth.sh_base * jnp.asarray([1.3, 1.0, 0.7]),
      reflectance=truth.reflectance + 3.0 * model.reflectance_sigma)
  raw = (layout.join(start._replace(
      correctives_geometry=jnp.zeros(0), correctives_reflectance=jnp.zeros(0),
      sh_final=start.sh_base)) - scaling.offset) / scaling.scale
  schedule = (gauss_newton.ContinuationStage('all', 1.0, 4),)

  def run(light, bound):
    return scaling.params(layout, jax.jit(lambda r: gauss_newton.solve(
        model, s['intrinsics'], s['problem'], r, loss=s['loss'],
        layout=layout, scaling=scaling, schedule=schedule,
        light_colour_prior=light, reflectance_bound=bound))(raw))

  def colour(params):
    return float(appearance_prior.light_colour_energy(params.sh_base))

  def outside(params):
    return float(appearance_prior.reflectance_bound_energy(
        model.reflectance(params.reflectance)))

  plain, priors = run(0.0, 0.0), run(10.0, 100.0)
  assert outside(scaling.params(layout, raw)) > 0
  assert colour(priors) < 0.5 * colour(plain)
  assert outside(priors) < 0.5 * outside(plain)
