"""ARKit weight accuracy on synthetic faces rendered from known weights.

    python -m experiments.arkit_bench --faces=50 \
        --output=docs/results/arkit.json

(writes the JSON and its markdown table, docs/results/arkit.md;
`experiments/results.py` puts the same table, `table`, into docs/results.md).

Each face has 0-4 active blendshapes (the ten common ones of `COMMON` four
times as likely as the others) with weights in [0.2, 1], an identity,
reflectance, light and background from the synthetic prior, pose up to 40
degrees of yaw, and its true landmarks with detector-like noise. The face
is fitted (`fit.fit_face`) and its weights read by two routes:
  convert: bounded least squares of the fitted PCA expression on the vertex
    offsets with an L1 pull (`arkit.weights`; `mofa reconstruct` writes it
    for video frames, whose identity is shared);
  box_refine: then the weights themselves, in [0, 1] with an L1 pull,
    refined jointly with the identity under the fitter's final loss
    (`blendshape_fit.refine`, what `mofa reconstruct` writes for photos);
and for reference: `convert_nearest`, the conversion without the L1 pull
towards 0; `clip`, the unbounded weights clipped to [0, 1]; `zeros`, a
neutral face (what MAE over all 53 mostly measures with sparse truths);
`convert_true_identity`, the convert route after a fit given the true
identity, reflectance, pose and light (what the fitter's confusion of
identity and expression costs).
Reports mean absolute weight error, the error of each common shape,
precision and recall of "active" (> 0.3) and the residual the bounds cost.
"""

import io
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import experiments
from mofa_ml import compilation_cache
from mofa_ml import image_io
from mofa_ml.data import synthetic
from mofa_ml.facemodel import arkit
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.learning import network
from mofa_ml.fitting import blendshape_fit
from mofa_ml.fitting import fit
from mofa_ml.rendering import camera

FLAGS = flags.FLAGS


def _define_flags():
  """The command's flags (defined only when run as a script, so that two
  experiments imported into one process do not both define --output)."""
  flags.DEFINE_integer('faces', 50, 'Synthetic faces.')
  flags.DEFINE_integer('seed', 0, 'Seed of the faces.')
  flags.DEFINE_float('landmark_noise_px', 2.0,
                     'Std of the landmark noise, crop pixels.')
  flags.DEFINE_integer(
      'refine_steps', blendshape_fit.RefineConfig().steps,
      'Steps of the box_refine route.')
  flags.DEFINE_float(
      'sparsity', arkit.DEFAULT_SPARSITY,
      'L1 weight (mm^2 per unit weight) of the convert route.')
  flags.DEFINE_float(
      'refine_sparsity', blendshape_fit.RefineConfig().sparsity,
      'L1 weight of the box_refine route (loss units per unit weight).')
  flags.DEFINE_bool('oracle', True, 'Run the true-identity route.')
  flags.DEFINE_string('output', 'arkit.json', 'JSON to write.')
  flags.DEFINE_string('fitted', '', 'Optional .npz of the true '
                      'weights and fitted expressions.')


COMMON = ('jawOpen', 'eyeBlink_L', 'eyeBlink_R', 'mouthSmile_L',
          'mouthSmile_R', 'browInnerUp_L', 'browInnerUp_R', 'mouthFunnel',
          'mouthPucker', 'browDown_L')
ACTIVE = 0.3


def sparse_weights(rng: np.random.Generator, names) -> np.ndarray:
  """(K,) weights: 0-4 active shapes with values in [0.2, 1]."""
  odds = np.asarray([4.0 if n in COMMON else 1.0 for n in names])
  chosen = rng.choice(len(names), size=rng.integers(0, 5), replace=False,
                      p=odds / odds.sum())
  weights = np.zeros(len(names))
  weights[chosen] = rng.uniform(0.2, 1.0, len(chosen))
  return weights


def scores(truth: np.ndarray, estimates: np.ndarray, names) -> dict:
  """Errors of (F, K) estimated weights against the truth."""
  error = np.abs(estimates - truth)
  true_active, found = truth > ACTIVE, estimates > ACTIVE
  hits = np.sum(true_active & found)
  return {
      'mae': float(error.mean()),
      'mae_active': float(error[truth > 0].mean()),
      'per_shape_mae': {n: float(error[:, names.index(n)].mean())
                        for n in COMMON},
      'precision': float(hits / max(1, found.sum())),
      'recall': float(hits / max(1, true_active.sum())),
  }


def main(argv):
  del argv
  compilation_cache.enable()
  model = fm.load_face_model()
  rig = arkit.load_rig(model)
  names = list(rig.names)
  intrinsics = camera.default_intrinsics()
  layout = layout_lib.ParameterLayout.for_model(model)
  config = synthetic.SyntheticConfig(
      landmark_noise_px=FLAGS.landmark_noise_px, max_yaw=40.0)
  render = jax.jit(synthetic.generate_face,
                   static_argnames=('layout', 'config'))
  fit_config = fit.FitConfig()
  oracle_config = fit.FitConfig(fixed_identity=True)
  base_layout = layout_lib.ParameterLayout.for_model(model, 0, False)
  zeros = jnp.zeros((model.num_vertices, 3))
  to_coefficients = jnp.asarray(rig.to_coefficients, jnp.float32)
  refine_config = blendshape_fit.RefineConfig(
      steps=FLAGS.refine_steps, sparsity=FLAGS.refine_sparsity)
  rng = np.random.default_rng(FLAGS.seed)
  truth, estimates, residuals, seconds = [], {}, [], []
  expressions, changes = [], []
  for index in range(FLAGS.faces):
    weights = sparse_weights(rng, names)
    face = render(jax.random.PRNGKey(1000 * FLAGS.seed + index), model,
                  layout, intrinsics, config,
                  jnp.asarray(weights @ rig.to_coefficients, jnp.float32))
    if bool(face['overflow']):
      continue
    image = jnp.asarray(image_io.to_uint8(np.asarray(face['image'])) / 255.0,
                        jnp.float32)  # as a photo: 8 bits
    start = time.perf_counter()
    result = fit.fit_face(model, intrinsics, image, face['landmarks'],
                          face['landmark_confidence'], fit_config)
    expression = np.asarray(result.params.expression, np.float64)
    converted, residual = arkit.weights(rig, expression, FLAGS.sparsity)
    fitted = time.perf_counter()
    refined = blendshape_fit.refine(
        model, to_coefficients, intrinsics, fit_config.final_loss,
        result.params, result.geometry_offsets, result.reflectance_offsets,
        image, face['landmarks'], face['landmark_confidence'],
        jnp.asarray(converted, jnp.float32), refine_config)
    refined, change = jax.device_get((refined.weights, refined.change_mm))
    changes.append(float(change))
    seconds.append((fitted - start, time.perf_counter() - fitted))
    truth.append(weights)
    expressions.append(expression)
    residuals.append(residual)
    found = {
        'convert': converted,
        'convert_nearest': arkit.weights(rig, expression)[0],
        'box_refine': np.asarray(refined, np.float64),
        'clip': np.clip(expression @ rig.to_weights, 0, 1),
        'zeros': np.zeros_like(weights)}
    if FLAGS.oracle:
      # The same fit given the true identity, reflectance, pose and light:
      # what the weights lose to the fitter's identity-expression confusion.
      true_params = base_layout.split(face['params'])
      oracle = fit.fit_face(
          model, intrinsics, image, face['landmarks'],
          face['landmark_confidence'], oracle_config, network.Prediction(
              true_params._replace(expression=jnp.zeros_like(
                  true_params.expression)), zeros, zeros))
      found['convert_true_identity'] = arkit.weights(
          rig, np.asarray(oracle.params.expression, np.float64),
          FLAGS.sparsity)[0]
    for route, value in found.items():
      estimates.setdefault(route, []).append(value)
    converted = found['convert']
    refined = found['box_refine']
    print(f'{index}: true {np.round(weights[weights > 0], 2).tolist()} '
          f'{[names[k] for k in np.flatnonzero(weights)]}; convert MAE '
          f'{np.abs(converted - weights).mean():.3f}, refined '
          f'{np.abs(refined - weights).mean():.3f}, residual '
          f'{residual:.2f} / {changes[-1]:.2f} mm, {seconds[-1][0]:.1f} + '
          f'{seconds[-1][1]:.1f} s',
          flush=True)
  truth = np.stack(truth)
  results = {
      'faces': len(truth),
      'landmark_noise_px': FLAGS.landmark_noise_px,
      'refine_steps': FLAGS.refine_steps,
      'refine_sparsity': FLAGS.refine_sparsity,
      'sparsity': FLAGS.sparsity,
      'bounds_residual_mm': {
          'convert': {'mean': float(np.mean(residuals)),
                      'max': float(np.max(residuals))},
          'box_refine': {'mean': float(np.mean(changes)),
                         'max': float(np.max(changes))}},
      'seconds_per_face': {'fit_and_convert': float(np.mean(
          [s[0] for s in seconds])), 'box_refine': float(np.mean(
              [s[1] for s in seconds]))},
      'routes': {route: scores(truth, np.stack(rows), names)
                 for route, rows in estimates.items()},
  }
  if FLAGS.fitted:  # to re-score conversions without fitting again
    buffer = io.BytesIO()
    np.savez(buffer, truth=truth, expression=np.stack(expressions),
             box_refine=np.stack(estimates['box_refine']))
    image_io.atomic_write_bytes(FLAGS.fitted, buffer.getvalue(),
                                overwrite=True)
  experiments.write_results(FLAGS.output, results, table(results))


def table(results: dict) -> str:
  """Markdown: one row per route."""
  lines = ['| route | MAE | MAE (active) | ' + ' | '.join(COMMON) +
           ' | precision | recall |', '|---' * (len(COMMON) + 5) + '|']
  for route, row in results['routes'].items():
    shapes = ' | '.join(f'{row["per_shape_mae"][n]:.3f}' for n in COMMON)
    lines.append(f'| {route} | {row["mae"]:.3f} | {row["mae_active"]:.3f} | '
                 f'{shapes} | {row["precision"]:.2f} | {row["recall"]:.2f} |')
  return '\n'.join(lines)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
