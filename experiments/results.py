"""Regenerates docs/results.md: the synthetic benchmark and the speed tables.

    python experiments/results.py --workdir=runs/results

Steps, each skipped when its output exists (pass --rerun to redo them):
  1. trains the synthetic benchmark's two runs
     (experiments/configs/synthetic.py: alexnet and light) in
     <workdir>/<backbone>; an interrupted run resumes;
  2. evaluates both regressors on the fixed test split of
     `mofa_synthetic/benchmark`, and per-image fitting on its first
     --fit_limit images, into docs/results/<method>/ (eval.json, eval.md,
     histograms.png, heat_map.png);
  3. runs experiments/bench.py into docs/results/bench_<device>.json;
  4. writes docs/results.md from every docs/results/*/eval.json and
     docs/results/bench_*.json (so a GPU run's JSON, copied there, shows up
     next to the CPU's).
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

from experiments import ladder
from experiments.configs import synthetic
from mofa_ml import image_io
from mofa_ml.evaluation import evaluate
from mofa_ml.evaluation import report
from mofa_ml.facemodel import levels
from mofa_ml.learning import train
from mofa_ml.export import meshes
from mofa_ml.fitting import fit

_WORKDIR = flags.DEFINE_string('workdir', 'runs/results',
                               'Training runs go here.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data folder.')
_DOCS = flags.DEFINE_string('docs', 'docs', 'Folder of results.md.')
_FIT_LIMIT = flags.DEFINE_integer('fit_limit', 50,
                                  'Test images for the fitting baseline.')
_RERUN = flags.DEFINE_bool('rerun', False, 'Redo steps whose outputs exist.')
_BACKBONES = ('alexnet', 'light')
_TITLES = {'alexnet': 'Regressor, AlexNet (width 0.25)',
           'light': 'Regressor, light backbone (width 0.5)',
           'fitting': 'Per-image fitting (Levenberg-Marquardt + 60 steps)',
           'fitting_from_truth': ('Per-image fitting, final phase only, '
                                  'from the true base parameters'),
           'truth_base': 'True base-level parameters (the base level\'s floor)'}


def train_runs():
  for backbone in _BACKBONES:
    config = synthetic.get_config(backbone)
    config.data_dir = _DATA_DIR.value or ''
    print(f'training {backbone} in {_WORKDIR.value}/{backbone}')
    train.train(config, os.path.join(_WORKDIR.value, backbone))


def evaluate_methods(results: str):
  methods = {backbone: os.path.join(_WORKDIR.value, backbone)
             for backbone in _BACKBONES}
  methods.update(fitting=None, fitting_from_truth=None, truth_base=None)
  for name, workdir in methods.items():
    folder = os.path.join(results, name)
    if os.path.exists(os.path.join(folder, 'eval.json')) and not (
        _RERUN.value):
      continue
    count, batches = evaluate.load_split('mofa_synthetic/benchmark', 'test',
                                         _DATA_DIR.value)
    if name == 'truth_base':
      method = evaluate.select_method(true_base=True)
    elif name.startswith('fitting'):
      from_truth = name == 'fitting_from_truth'
      method = evaluate.select_method(
          fit_config=fit.FitConfig(base_steps=0) if from_truth else
          fit.FitConfig(), start_from_truth=from_truth)
    else:
      method = evaluate.select_method(workdir)
    limit = _FIT_LIMIT.value if name.startswith('fitting') else count
    print(f'evaluating {name} on {limit} test images')
    per_image = evaluate.evaluate(method.model, method.intrinsics,
                                  method.reconstruct, batches, limit)
    info = {'mode': method.mode, 'checkpoint': workdir,
            'dataset': 'mofa_synthetic/benchmark', 'split': 'test',
            'device': jax.devices()[0].device_kind,
            'face_model': method.model.name}
    os.makedirs(folder, exist_ok=True)
    meshes.write_files(folder, report.report_files(
        method.model, per_image, info, _TITLES[name]), overwrite=True)


def run_bench(results: str):
  device = re.sub(r'[^a-z0-9]+', '_', jax.devices()[0].device_kind.lower())
  output = os.path.join(results, f'bench_{device}.json')
  if os.path.exists(output) and not _RERUN.value:
    return
  subprocess.run([sys.executable, os.path.join('experiments', 'bench.py'),
                  f'--output={output}', '--overwrite'], check=True)


def _cell(stats, digits):
  return f'{stats["mean"]:.{digits}f} ± {stats["std"]:.{digits}f}'


def synthetic_table(results: str) -> str:
  lines = ['| Method | Images | Geometry base (mm) | Geometry final (mm) | '
           'Hausdorff base | Hausdorff final | Photometric base | '
           'Photometric final | NME base | NME final | ms / image |',
           '|---|---|---|---|---|---|---|---|---|---|---|']
  for name in _TITLES:
    path = os.path.join(results, name, 'eval.json')
    if not os.path.exists(path):
      continue
    with open(path, encoding='utf-8') as f:
      summary = json.load(f)['summary']
    cells = [_TITLES[name], str(summary['count'])]
    for key, digits in (('geometry_mm', 2), ('hausdorff_mm', 2),
                        ('photometric', 3), ('landmark_nme', 4)):
      cells += [_cell(summary[key][level], digits)
                for level in levels.LEVELS]
    cells.append(f'{summary["ms_per_image"]:.2f}')
    lines.append('| ' + ' | '.join(cells) + ' |')
  paper = report.PAPER
  lines.append(
      '| Paper (FaceWarehouse geometry; validation photometry) | | ' +
      ' | '.join(f'{paper["geometry_mm"][l][0]:.2f} ± '
                 f'{paper["geometry_mm"][l][1]:.2f}'
                 for l in levels.LEVELS) + ' | | | ' +
      ' | '.join(f'{paper["photometric"][l][0]:.3f} ± '
                 f'{paper["photometric"][l][1]:.3f}'
                 for l in levels.LEVELS) + ' | | | |')
  return '\n'.join(lines)


def speed_tables(results: str) -> str:
  parts = []
  for path in sorted(glob.glob(os.path.join(results, 'bench_*.json'))):
    with open(path, encoding='utf-8') as f:
      bench = json.load(f)
    parts.append(
        f'### {bench["device"]} ({bench["cpu"]}, {bench["cpu_count"]} '
        f'CPU cores, JAX {bench["jax"]}, {bench["date"]})\n\n'
        f'Attainable FLOP/s: {bench["matmul"]["size"]}³ float32 matmul, '
        f'{bench["matmul"]["gflop_per_s"]:.0f} GFLOP/s. Source: '
        f'`{os.path.relpath(path, _DOCS.value)}`.\n')
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
  return '\n'.join(parts)


def targets_table(results: str) -> str:
  """The issue's speed targets against every benchmark JSON found."""
  lines = ['| Device | Target | Measured | Met |', '|---|---|---|---|']
  for path in sorted(glob.glob(os.path.join(results, 'bench_*.json'))):
    with open(path, encoding='utf-8') as f:
      bench = json.load(f)
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


def _table_from(path: str, command: str, render) -> str:
  """`render` of the open file at `path`, or how to make it."""
  if not os.path.exists(path):
    return f'(run `{command}`)'
  with open(path, encoding='utf-8') as f:
    return render(f)


def ladder_table(results: str) -> str:
  return _table_from(
      os.path.join(results, 'ladder.json'),
      'python -m experiments.ladder --output=docs/results/ladder.json',
      lambda f: ladder.table(json.load(f)))


def table_beside_json(results: str, name: str, module: str) -> str:
  """The markdown table `experiments/<module>.py` writes beside its JSON,
  <results>/<name>.md."""
  return _table_from(
      os.path.join(results, f'{name}.md'),
      f'python -m experiments.{module} --output=docs/results/{name}.json',
      lambda f: f.read().strip())


def write_markdown(results: str, prose_path: str):
  with open(prose_path, encoding='utf-8') as f:
    template = f.read()
  text = template.replace('{{SYNTHETIC_TABLE}}', synthetic_table(results))
  text = text.replace('{{SPEED_TABLES}}', speed_tables(results))
  text = text.replace('{{TARGETS_TABLE}}', targets_table(results))
  text = text.replace('{{LADDER_TABLE}}', ladder_table(results))
  text = text.replace('{{ARKIT_TABLE}}',
                      table_beside_json(results, 'arkit', 'arkit_bench'))
  text = text.replace('{{PHOTO_LANDMARKS_TABLE}}', table_beside_json(
      results, 'photo_landmarks', 'photo_landmarks'))
  output = os.path.join(_DOCS.value, 'results.md')
  image_io.atomic_write_bytes(output, text.encode(), overwrite=True)
  print(f'wrote {output}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)  # orbax and TFDS narrate at INFO
  results = os.path.join(_DOCS.value, 'results')
  os.makedirs(results, exist_ok=True)
  train_runs()
  evaluate_methods(results)
  run_bench(results)
  write_markdown(results, os.path.join(os.path.dirname(__file__),
                                       'results_template.md'))


if __name__ == '__main__':
  app.run(main)
