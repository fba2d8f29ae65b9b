"""Evaluation: the ground truth scores perfectly; `mofa eval` end to end."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from mofa_ml.data import input_pipeline
from mofa_ml.evaluation import evaluate
from mofa_ml.evaluation import report
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.fitting import fit
from mofa_ml.rendering import camera


def _truth_method(model):
  """The batch's true parameters and corrective fields: perfect."""
  layout = layout_lib.ParameterLayout.for_model(model, 0, False)

  def reconstruct(batch):
    params = layout.split(batch['params'])
    base_geometry = jax.vmap(model.geometry)(params.shape, params.expression)
    base_albedo = jax.vmap(model.reflectance)(params.reflectance)
    return (params, batch['vertices'] - base_geometry,
            batch['albedo'] - base_albedo)
  return reconstruct


def test_ground_truth_scores_perfectly(ict_model, tiny_data_dir):
  source = input_pipeline.load_source('mofa_synthetic/tiny', 'test',
                                      tiny_data_dir)
  reconstruct = _truth_method(ict_model)
  per_image = evaluate.evaluate(
      ict_model, camera.default_intrinsics(), reconstruct,
      input_pipeline.evaluation_batches(source, 4), limit=6)
  assert len(per_image['seconds']) == 6
  # The final level is the truth (up to float16 storage); the base level
  # misses the out-of-space bumps.
  assert per_image['geometry_mm_final'].max() < 0.02
  assert per_image['hausdorff_mm_final'].max() < 0.1
  assert per_image['geometry_mm_base'].min() > 0.1
  # Point colours against the rasterized uint8 photo: only quantisation,
  # bilinear sampling across silhouettes and eye holes and per-pixel against
  # per-vertex shading remain.
  assert per_image['photometric_final'].max() < 0.04
  assert np.all(per_image['photometric_final'] <
                per_image['photometric_base'])
  assert per_image['landmark_nme_final'].max() < 0.01
  # The true base parameters alone: both levels equal, off by the bumps.
  floor = evaluate.evaluate(
      ict_model, camera.default_intrinsics(),
      evaluate.true_base_method(ict_model),
      input_pipeline.evaluation_batches(source, 4), limit=6)
  np.testing.assert_allclose(floor['geometry_mm_base'],
                             per_image['geometry_mm_base'], rtol=1e-4)
  np.testing.assert_array_equal(floor['geometry_mm_base'],
                                floor['geometry_mm_final'])
  summary = report.summarize(per_image)
  assert summary['count'] == 6
  np.testing.assert_allclose(summary['geometry_mm']['final']['mean'],
                             per_image['geometry_mm_final'].mean())
  table = report.markdown_table(summary, 'truth')
  assert '| Geometric error (mm) |' in table and '1.84 ± 0.38' in table
  files = report.report_files(ict_model, per_image, {'mode': 'truth'},
                                'truth')
  assert set(files) == {'eval.json', 'eval.md', 'histograms.png',
                        'heat_map.png'}
  assert all(files[name].startswith(b'\x89PNG') for name in
             ('histograms.png', 'heat_map.png'))


def _mofa(*args):
  return subprocess.run([sys.executable, '-m', 'mofa_ml.cli', *args],
                        capture_output=True, text=True, check=False)


def test_eval_command_end_to_end(tiny_data_dir, tmp_path):
  output = tmp_path / 'eval'
  args = ['eval', '--dataset=mofa_synthetic/tiny', f'--data_dir={tiny_data_dir}',
          '--limit=2', '--fit_steps=3,2', f'--output={output}']
  done = _mofa(*args)
  assert done.returncode == 0, done.stderr
  assert '| Photometric error |' in done.stdout
  result = json.loads((output / 'eval.json').read_text())
  assert result['summary']['count'] == 2
  assert result['summary']['mode'] == 'fitting'
  assert len(result['per_image']['geometry_mm_final']) == 2
  assert (output / 'heat_map.png').stat().st_size > 1000
  again = _mofa(*args)
  assert again.returncode != 0
  assert 'exists; pass --overwrite' in again.stderr
  assert 'Traceback' not in again.stderr


@pytest.mark.parametrize('flag, message', [
    ('--dataset=no_such_set', 'unknown dataset'),
    ('--dataset=mofa_faces/never_prepared', 'lives in the <output>/tfds'),
    ('--checkpoint=/no/such/run', 'checkpoint folder not found'),
])
def test_eval_command_bad_input(tmp_path, flag, message):
  done = _mofa('eval', flag, f'--output={tmp_path / "out"}')
  assert done.returncode != 0
  assert message in done.stderr
  assert 'Traceback' not in done.stderr


def test_photo_datasets_without_geometry_get_the_other_metrics(
    ict_model, tiny_data_dir):
  source = input_pipeline.load_source('mofa_synthetic/tiny', 'test',
                                      tiny_data_dir)
  examples = [source[i] for i in range(2)]
  batches = [{key: np.stack([e[key] for e in examples]) for key in
              ('image', 'landmarks', 'landmark_confidence', 'params')}]
  per_image = evaluate.evaluate(
      ict_model, camera.default_intrinsics(),
      evaluate.true_base_method(ict_model), batches)
  assert not any(key.startswith(('geometry', 'hausdorff', 'vertex_error'))
                 for key in per_image)
  assert per_image['photometric_base'].max() < 0.25
  files = report.report_files(ict_model, per_image, {}, 'photos')
  assert set(files) == {'eval.json', 'eval.md', 'histograms.png'}
  assert 'Geometric' not in files['eval.md'].decode()


def test_fitting_can_start_from_the_true_base_parameters(ict_model,
                                                        tiny_data_dir):
  source = input_pipeline.load_source('mofa_synthetic/tiny', 'test',
                                      tiny_data_dir)
  intrinsics = camera.default_intrinsics()
  floor = evaluate.evaluate(ict_model, intrinsics,
                            evaluate.true_base_method(ict_model),
                            input_pipeline.evaluation_batches(source, 2),
                            limit=2)
  # One small step from the truth stays next to it; from the mean face the
  # same step lands far away.
  config = fit.FitConfig(base_steps=0, final_steps=1)
  near = evaluate.evaluate(
      ict_model, intrinsics,
      evaluate.fitting_method(ict_model, intrinsics, config,
                              start_from_truth=True),
      input_pipeline.evaluation_batches(source, 2), limit=2)
  far = evaluate.evaluate(
      ict_model, intrinsics,
      evaluate.fitting_method(ict_model, intrinsics, config),
      input_pipeline.evaluation_batches(source, 2), limit=2)
  np.testing.assert_allclose(near['geometry_mm_base'],
                             floor['geometry_mm_base'], atol=0.3)
  assert np.all(far['geometry_mm_base'] > floor['geometry_mm_base'] + 0.5)
