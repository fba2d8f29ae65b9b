"""`mofa eval`: a regressor or per-image fitting over a dataset split.

    mofa eval --checkpoint=runs/synthetic_alexnet --output=eval/alexnet
    mofa eval --dataset=mofa_faces/mine --split=train --output=eval/fit

Writes into --output: eval.json (summary, the paper's values, per-image
metrics), eval.md (the paper's table form: mean ± SD of base and final
levels), histograms.png and, where the dataset has ground-truth geometry
(the synthetic corpus), heat_map.png (mean per-vertex error on the mean
face). Without --checkpoint every face is fitted per image (with the face
model of --face_model); with one the network alone is evaluated unless
--fit. The default dataset, the synthetic benchmark, is generated on first
use (a few minutes on a CPU).
"""

import os

from absl import app
from absl import flags
import jax
import numpy as np
import tqdm

from mofa_ml import cli
from mofa_ml.commands import common
from mofa_ml.data import input_pipeline
from mofa_ml.evaluation import evaluate
from mofa_ml.evaluation import report
from mofa_ml.export import meshes

_RECONSTRUCTION = common.define_reconstruction_flags(fit_by_default=False)
_FACE_MODEL = common.define_face_model_flag()
_DATASET = flags.DEFINE_string('dataset', 'mofa_synthetic/benchmark',
                               'TFDS name/config.')
_SPLIT = flags.DEFINE_string('split', 'test', 'Dataset split.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data folder.')
_LIMIT = flags.DEFINE_integer('limit', None, 'Evaluate at most this many '
                              'images.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Images per network call.')
_TITLE = flags.DEFINE_string('title', None, 'Heading of the markdown table.')
_OUTPUT = flags.DEFINE_string('output', None, 'Folder for the results.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace existing result files.')
flags.mark_flags_as_required(['output'])


def _fail(message: str):
  raise SystemExit(f'mofa eval: {message}')


def _check_output(output: str, overwrite: bool):
  """Refuses, before any work, an --output the results cannot go to."""
  if os.path.lexists(output) and not os.path.isdir(output):
    _fail(f'--output {output} is a file; name a folder')
  parent = output
  while not os.path.lexists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    _fail(f'--output {output}: {parent} is a file, not a folder')
  if not os.access(parent, os.W_OK):
    _fail(f'--output {output}: {parent} is not writable')
  existing = [name for name in report.REPORT_FILES
              if os.path.exists(os.path.join(output, name))]
  if existing and not overwrite:
    _fail(f'{os.path.join(output, existing[0])} exists; pass --overwrite to '
          'replace it')


def _load_split(name: str, split: str, data_dir, batch_size: int):
  """(count, batches) of the split, its first and last records read.

  A damaged dataset (its dataset_info.json, a truncated record file) makes
  TFDS, protobuf or grain raise anything; each ends here in one line.
  """
  where = f'dataset {name} ({split}' + (f' in {data_dir})' if data_dir
                                         else ')')
  try:
    source = input_pipeline.load_source(name, split, data_dir)
    count = len(source)
    for index in sorted({0, count - 1} if count else ()):
      source[index]  # pylint: disable=pointless-statement
  except ValueError as e:
    _fail(str(e))
  except Exception as e:  # pylint: disable=broad-except
    _fail(f'{where} cannot be read: {cli.one_line(e)[:300]}')
  if not count:
    _fail(f'{where} is empty')
  return count, _numeric_batches(
      input_pipeline.evaluation_batches(source, batch_size), where)


def _numeric_batches(batches, where: str):
  """The batches without text fields (`mofa prepare`'s 'source' path),
  which the metrics would try to read as numbers; a record that cannot be
  read is a ValueError naming the dataset."""
  while True:
    try:
      batch = next(batches)
    except StopIteration:
      return
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f'{where}: a record cannot be read: '
                       f'{cli.one_line(e)[:300]}') from None
    yield {key: value for key, value in batch.items()
           if np.asarray(value).dtype.kind in 'biuf'}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  fit_config = common.fit_config(_RECONSTRUCTION.fit_steps.value,
                                 _RECONSTRUCTION.fit_solver.value)
  if _BATCH.value < 1 or (_LIMIT.value is not None and _LIMIT.value < 1):
    raise app.UsageError('--batch_size and --limit must be positive')
  if not _OUTPUT.value.strip():
    raise app.UsageError('--output is empty; name a folder')
  output = os.path.abspath(_OUTPUT.value)
  _check_output(output, _OVERWRITE.value)
  checkpoint = _RECONSTRUCTION.checkpoint.value
  fitting = _RECONSTRUCTION.fit.value or not checkpoint
  try:
    method = evaluate.select_method(checkpoint,
                                    fit_config if fitting else None,
                                    _FACE_MODEL.value)
  except (ValueError, FileNotFoundError) as e:
    _fail(str(e))
  count, batches = _load_split(_DATASET.value, _SPLIT.value, _DATA_DIR.value,
                               _BATCH.value)
  total = count if _LIMIT.value is None else min(count, _LIMIT.value)
  bar = tqdm.tqdm(total=total, unit='image', desc='eval')
  try:
    per_image = evaluate.evaluate(
        method.model, method.intrinsics, method.reconstruct, batches, total,
        progress=lambda done: bar.update(done - bar.n))
  except ValueError as e:
    _fail(str(e))
  finally:
    bar.close()
  info = {'mode': method.mode, 'checkpoint': checkpoint,
          'dataset': _DATASET.value, 'split': _SPLIT.value,
          'device': jax.devices()[0].device_kind,
          'face_model': method.model.name}
  title = _TITLE.value or (f'{method.mode} on {_DATASET.value} '
                           f'({_SPLIT.value})')
  files = report.report_files(method.model, per_image, info, title)
  try:
    with cli.interrupts_held():  # not eval.json without its table
      os.makedirs(output, exist_ok=True)
      meshes.write_files(output, files, overwrite=_OVERWRITE.value)
  except (FileExistsError, OSError) as e:
    _fail(str(e))
  print(files['eval.md'].decode())
  print(f'wrote {", ".join(files)} into {output}')
