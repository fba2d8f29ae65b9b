"""Regenerates docs/results.md: accuracy, the ARKit weights and speed.

    python -m experiments.results --workdir=runs/results

from the repository root. Steps, each skipped when its output exists (pass
--rerun to redo them), so that with the committed docs/results/ only the
last one runs (seconds):
  1. trains the synthetic benchmark's two runs (`synthetic:alexnet` and
     `synthetic:light`, mofa_ml/configs/synthetic.py) in
     <workdir>/<backbone>, unless their evaluation (step 2) exists; an
     interrupted run resumes;
  2. evaluates both regressors on the fixed test split of
     `mofa_synthetic/benchmark`, and per-image fitting on its first
     --fit_limit images, into docs/results/<method>/ (eval.json, eval.md,
     histograms.png, heat_map.png);
  3. runs `python -m experiments.bench` into docs/results/bench_<device>.json;
  4. writes docs/results.md from experiments/results_template.md, every
     table and number from the JSONs under docs/results/ (`render`; a GPU
     run's bench JSON, copied there, shows up next to the CPU's).
The ladder, ARKit and landmark JSONs come from their own commands (the
placeholder of a missing one says which).

Template placeholders: {{SYNTHETIC_TABLE}}, {{LADDER_TABLE}},
{{PHOTO_LANDMARKS_TABLE}}, {{ARKIT_TABLE}}, {{SPEED_TABLES}},
{{TARGETS_TABLE}}, and {{<file>:<key>/<key>/...:<format>}}, one value of a
JSON under docs/results (e.g. {{arkit.json:routes/zeros/mae:.3f}}).
"""

import glob
import json
import os
import re
import subprocess
import sys

from absl import app
from absl import flags
from absl import logging
import jax

from experiments import arkit_bench
from experiments import photo_landmarks
from experiments import real_report
from experiments.research import ladder
from mofa_ml import image_io
from mofa_ml.configs import synthetic
from mofa_ml.evaluation import evaluate
from mofa_ml.evaluation import report
from mofa_ml.export import meshes
from mofa_ml.facemodel import levels
from mofa_ml.fitting import fit
from mofa_ml.learning import train

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, 'experiments', 'results_template.md')
_BACKBONES = ('alexnet', 'light')
_TITLES = {'alexnet': 'Regressor, AlexNet (width 0.25)',
           'light': 'Regressor, light backbone (width 0.5)',
           'fitting': 'Per-image fitting (Levenberg-Marquardt + 60 steps)',
           'fitting_from_truth': ('Per-image fitting, final phase only, '
                                  'from the true base parameters'),
           'truth_base': 'True base-level parameters (the base level\'s floor)'}


def _define_flags():
  """The command's flags (defined only when run as a script, so that two
  experiments imported into one process do not both define --output)."""
  flags.DEFINE_string('workdir', 'runs/results', 'Training runs go here.')
  flags.DEFINE_string('data_dir', None, 'TFDS data folder.')
  flags.DEFINE_string('docs', 'docs', 'Folder of results.md.')
  flags.DEFINE_integer('fit_limit', 50,
                       'Test images for the fitting baseline.')
  flags.DEFINE_bool('rerun', False, 'Redo steps whose outputs exist.')


def _evaluated(results: str, name: str) -> bool:
  return os.path.exists(os.path.join(results, name, 'eval.json'))


def train_runs(results: str, workdir: str, data_dir, rerun: bool):
  for backbone in _BACKBONES:
    if _evaluated(results, backbone) and not rerun:
      continue
    config = synthetic.get_config(backbone)
    config.data_dir = data_dir or ''
    print(f'training {backbone} in {workdir}/{backbone}')
    train.train(config, os.path.join(workdir, backbone))


def evaluate_methods(results: str, workdir: str, data_dir, fit_limit: int,
                     rerun: bool):
  methods = {backbone: os.path.join(workdir, backbone)
             for backbone in _BACKBONES}
  methods.update(fitting=None, fitting_from_truth=None, truth_base=None)
  for name, checkpoint in methods.items():
    if _evaluated(results, name) and not rerun:
      continue
    count, batches = evaluate.load_split('mofa_synthetic/benchmark', 'test',
                                         data_dir)
    if name == 'truth_base':
      method = evaluate.select_method(true_base=True)
    elif name.startswith('fitting'):
      from_truth = name == 'fitting_from_truth'
      method = evaluate.select_method(
          fit_config=fit.FitConfig(base_steps=0) if from_truth else
          fit.FitConfig(), start_from_truth=from_truth)
    else:
      method = evaluate.select_method(checkpoint)
    limit = fit_limit if name.startswith('fitting') else count
    print(f'evaluating {name} on {limit} test images')
    per_image = evaluate.evaluate(method.model, method.intrinsics,
                                  method.reconstruct, batches, limit)
    info = {'mode': method.mode, 'checkpoint': checkpoint,
            'dataset': 'mofa_synthetic/benchmark', 'split': 'test',
            'device': jax.devices()[0].device_kind,
            'face_model': method.model.name}
    folder = os.path.join(results, name)
    os.makedirs(folder, exist_ok=True)
    meshes.write_files(folder, report.report_files(
        method.model, per_image, info, _TITLES[name]), overwrite=True)


def run_bench(results: str, rerun: bool):
  device = re.sub(r'[^a-z0-9]+', '_', jax.devices()[0].device_kind.lower())
  output = os.path.abspath(os.path.join(results, f'bench_{device}.json'))
  if os.path.exists(output) and not rerun:
    return
  # A process of its own: its timings do not share memory or threads with
  # the training and evaluation above.
  subprocess.run([sys.executable, '-m', 'experiments.bench',
                  f'--output={output}', '--overwrite'], check=True, cwd=ROOT)


def _load(path: str):
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def _cell(stats, digits):
  return f'{stats["mean"]:.{digits}f} ± {stats["std"]:.{digits}f}'


def synthetic_table(results: str) -> str:
  """One row per evaluated method, then the paper's (from the eval JSONs)."""
  lines = ['| Method | Images | Geometry base (mm) | Geometry final (mm) | '
           'Hausdorff base | Hausdorff final | Photometric base | '
           'Photometric final | NME base | NME final | ms / image |',
           '|---|---|---|---|---|---|---|---|---|---|---|']
  paper = None
  for name in _TITLES:
    path = os.path.join(results, name, 'eval.json')
    if not os.path.exists(path):
      continue
    evaluation = _load(path)
    summary, paper = evaluation['summary'], evaluation.get('paper', paper)
    cells = [_TITLES[name], str(summary['count'])]
    for key, digits in (('geometry_mm', 2), ('hausdorff_mm', 2),
                        ('photometric', 3), ('landmark_nme', 4)):
      cells += [_cell(summary[key][level], digits)
                for level in levels.LEVELS]
    cells.append(f'{summary["ms_per_image"]:.2f}')
    lines.append('| ' + ' | '.join(cells) + ' |')
  if paper:
    paired = lambda key, digits: ' | '.join(
        f'{paper[key][l][0]:.{digits}f} ± {paper[key][l][1]:.{digits}f}'
        for l in levels.LEVELS)
    lines.append('| Paper (FaceWarehouse geometry; validation photometry) '
                 f'| | {paired("geometry_mm", 2)} | | | '
                 f'{paired("photometric", 3)} | | | |')
  return '\n'.join(lines)


def _bench_files(results: str):
  return [(path, _load(path)) for path in
          sorted(glob.glob(os.path.join(results, 'bench_*.json')))]


def speed_tables(results: str) -> str:
  parts = []
  for path, bench in _bench_files(results):
    parts.append(
        f'### {bench["device"]} ({bench["cpu"]}, {bench["cpu_count"]} '
        f'CPU cores, JAX {bench["jax"]}, {bench["date"]})\n\n'
        f'Attainable FLOP/s: {bench["matmul"]["size"]}³ float32 matmul, '
        f'{bench["matmul"]["gflop_per_s"]:.0f} GFLOP/s. Source: '
        f'`docs/results/{os.path.basename(path)}`.\n')
    for model in bench['models']:
      parts.append(
          f'**{model["backbone"]}** (`{model["config"]}`: width '
          f'{model["width"]}, C = {model["num_correctives"]}, '
          f'{model["parameters"] / 1e6:.1f} M parameters, encoder '
          f'{model["inference"][0]["encoder_gflop_per_image"]:.3f} '
          'GFLOP per image)\n\n'
          '| Batch | Encoder ms | Encoder images/s | Fraction of matmul '
          'FLOP/s | End-to-end ms | End-to-end images/s | End to end / '
          'encoder |\n|---|---|---|---|---|---|---|')
      for row in model['inference']:
        parts.append(
            f'| {row["batch"]} | {row["encoder_ms"]:.2f} | '
            f'{row["encoder_images_per_s"]:.0f} | '
            f'{row["encoder_fraction_of_matmul"]:.0%} | '
            f'{row["end_to_end_ms"]:.2f} | '
            f'{row["end_to_end_images_per_s"]:.0f} | '
            f'{row["end_to_end_over_encoder"]:.2f} |')
      parts.append('\nTraining (stage 2, all terms): ' + ', '.join(
          f'batch {row["batch"]}: {row["steps_per_s"]:.2f} steps/s '
          f'({row["images_per_s"]:.0f} images/s)'
          for row in model['training']) + '.\n')
    if 'alexnet_layers' in bench:
      profile = bench['alexnet_layers']
      parts.append(f'Where AlexNet\'s time goes (each layer alone, batch '
                   f'{profile["batch"]}):\n\n| Layer | ms | GFLOP | Fraction '
                   'of matmul FLOP/s |\n|---|---|---|---|')
      parts += [f'| {row["layer"]} | {row["ms"]:.1f} | {row["gflop"]:.2f} | '
                f'{row["fraction_of_matmul"]:.0%} |'
                for row in profile['layers']]
      parts.append('')
    formation = bench['formation']
    parts.append('Image formation alone (both levels, with image sampling): ' +
                 ', '.join(f'batch {row["batch"]}: {row["ms"]:.2f} ms '
                           f'({row["images_per_s"]:.0f} images/s)'
                           for row in formation['both_levels']) +
                 f'; rasterizer 240 × 240: '
                 f'{formation["rasterizer_240px_ms"]:.1f} ms.\n')
  return '\n'.join(parts).strip() or '(run `python -m experiments.bench`)'


def targets_table(results: str) -> str:
  """The issue's speed targets against every benchmark JSON found."""
  lines = ['| Device | Target | Measured | Met |', '|---|---|---|---|']
  for _, bench in _bench_files(results):
    device = bench['device']
    for model in bench['models']:
      rows = model['inference']
      single = next((r for r in rows if r['batch'] == 1), None)
      best = max(rows, key=lambda r: r['encoder_images_per_s'])
      name = model['backbone']
      if bench['platform'] == 'cpu' and name == 'alexnet':
        fraction = max(r['encoder_fraction_of_matmul'] for r in rows)
        lines.append(f'| {device} | AlexNet encoder >= 75% of matmul FLOP/s '
                     f'| {fraction:.0%} (best batch) | '
                     f'{"yes" if fraction >= 0.75 else "no"} |')
        ratio = max(r['end_to_end_over_encoder'] for r in rows)
        lines.append(f'| {device} | AlexNet end to end within 10% of the '
                     f'encoder | +{ratio - 1:.0%} (worst batch) | '
                     f'{"yes" if ratio <= 1.1 else "no"} |')
      if bench['platform'] == 'cpu' and name == 'light' and single:
        ms = single['end_to_end_ms']
        lines.append(f'| {device} | light backbone, one image end to end '
                     f'< 4 ms | {ms:.2f} ms | {"yes" if ms < 4 else "no"} |')
      if bench['platform'] == 'gpu' and single:
        ms = single['end_to_end_ms']
        rate = best['end_to_end_images_per_s']
        lines.append(f'| {device} | {name}: one image < 1 ms | {ms:.2f} ms | '
                     f'{"yes" if ms < 1 else "no"} |')
        lines.append(f'| {device} | {name}: > 2,500 images/s batched | '
                     f'{rate:.0f} | {"yes" if rate > 2500 else "no"} |')
  return '\n'.join(lines)


def _table_of(results: str, name: str, command: str, render) -> str:
  """`render` of the JSON <results>/<name>.json, or how to make it."""
  path = os.path.join(results, f'{name}.json')
  if not os.path.exists(path):
    return f'(run `{command} --output=docs/results/{name}.json`)'
  return render(_load(path))


def json_value(results: str, spec: str) -> str:
  """'<file>:<key>/<key>/...:<format>' -> that value of <results>/<file>,
  formatted ('arkit.json:routes/zeros/mae:.3f' -> '0.024')."""
  name, path, form = spec.split(':', 2)
  value = _load(os.path.join(results, name))
  for key in path.split('/'):
    value = value[int(key) if isinstance(value, list) else key]
  return format(value, form)


def render(results: str, template: str) -> str:
  """The template with every placeholder replaced from <results>'s JSONs."""
  tables = {
      'SYNTHETIC_TABLE': lambda: synthetic_table(results),
      'LADDER_TABLE': lambda: _table_of(
          results, 'ladder', 'python -m experiments.research.ladder',
          ladder.table),
      'PHOTO_LANDMARKS_TABLE': lambda: _table_of(
          results, 'photo_landmarks', 'python -m experiments.photo_landmarks',
          photo_landmarks.table),
      'ARKIT_TABLE': lambda: _table_of(
          results, 'arkit', 'python -m experiments.arkit_bench',
          arkit_bench.table),
      'REAL_TABLES': lambda: _table_of(
          results, 'real', 'python -m experiments.real --data=<realval>',
          real_report.summary_markdown),
      'SPEED_TABLES': lambda: speed_tables(results),
      'TARGETS_TABLE': lambda: targets_table(results),
  }

  def replace(match):
    key = match.group(1)
    return tables[key]() if key in tables else json_value(results, key)
  return re.sub(r'\{\{([^{}]+)\}\}', replace, template)


def write_markdown(results: str, template_path: str, output: str):
  with open(template_path, encoding='utf-8') as f:
    text = render(results, f.read())
  image_io.atomic_write_bytes(output, text.encode(), overwrite=True)
  print(f'wrote {output}')


def regenerate(docs: str = 'docs', workdir: str = 'runs/results',
               data_dir=None, fit_limit: int = 50, rerun: bool = False):
  """Steps 1-4 of the module docstring; <docs>/results.md at the end."""
  results = os.path.join(docs, 'results')
  os.makedirs(results, exist_ok=True)
  train_runs(results, workdir, data_dir, rerun)
  evaluate_methods(results, workdir, data_dir, fit_limit, rerun)
  run_bench(results, rerun)
  write_markdown(results, TEMPLATE, os.path.join(docs, 'results.md'))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)  # orbax and TFDS narrate at INFO
  regenerate(FLAGS.docs, FLAGS.workdir, FLAGS.data_dir, FLAGS.fit_limit,
             FLAGS.rerun)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
