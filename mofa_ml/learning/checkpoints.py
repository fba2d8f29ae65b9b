"""Training checkpoints: orbax managers, their metadata, compatibility.

A checkpoint holds two items: 'state' (the `train.TrainState` pytree) and
'meta' (JSON: stage, parameter layout, face model name and fingerprint, the
run's config). Older checkpoints' configs are brought up to date on reading
(`upgrade_config`), so a run trained before a config field was renamed still
loads.

Reading verifies what it reads (`verify_step`): a step whose files were
truncated, zeroed, bit-flipped or lost, or whose commit never finished, is
damaged, and the newest intact step is used instead, with a one-line notice;
orbax itself would end in pages of tracebacks. `save` records a SHA-256 of
every file of a step (CHECKSUMS), which is what catches a flipped bit.
"""

import contextlib
import hashlib
import json
import logging
import os
import re
import sys
from typing import Any, Callable, Dict, Optional

import jax
import ml_collections
import orbax.checkpoint as ocp

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib

ITEMS = ('state', 'meta')
CHECKSUMS = 'mofa_checksums.json'
COMMIT_MARKER = 'commit_success.txt'
# What orbax says, as warnings, on opening any folder for reading and on
# reading a step saved by an older orbax.
_ROUTINE_ORBAX_WARNINGS = ('Given directory is read only',
                           'setting save_interval_steps=0',
                           'Metadata file does not exist')


class _DropRoutine(logging.Filter):

  def filter(self, record: logging.LogRecord) -> bool:
    return not any(text in record.getMessage()
                   for text in _ROUTINE_ORBAX_WARNINGS)


class DamagedStep(ValueError):
  """A step that cannot be read as written; `file` names what is wrong."""

  def __init__(self, step: int, file: str):
    super().__init__(f'checkpoint step {step} is damaged ({file})')
    self.step, self.file = step, file


def manager(directory: str, max_to_keep: Optional[int] = None,
            read_only: bool = False) -> ocp.CheckpointManager:
  """An orbax manager of `directory` (created unless `read_only`)."""
  if read_only:
    options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                           save_interval_steps=0)
  else:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        enable_async_checkpointing=False)
  with _quiet_orbax():
    return ocp.CheckpointManager(os.path.abspath(directory),
                                 options=options, item_names=ITEMS)


def metadata(stage: int, layout: layout_lib.ParameterLayout,
             model: fm.FaceModel,
             config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """The 'meta' item of a checkpoint."""
  return {'stage': stage, 'layout': layout.__dict__,
          'face_model': model.name,
          'face_model_fingerprint': model.fingerprint(),
          'config': config.to_dict()}


def upgrade_config(config: Dict[str, Any]) -> Dict[str, Any]:
  """A stored config in the current form (a copy).

  Before `model.face_model` (a spec, see `face_model.load_face_model`),
  configs had `model.bfm_path` ('' for the bundled model).
  """
  config = dict(config, model=dict(config['model']))
  model = config['model']
  if 'face_model' not in model:
    path = model.pop('bfm_path', '')
    model['face_model'] = f'bfm09:{path}' if path else fm.DEFAULT_SPEC
  return config


def _notice(line: str):
  print(f'mofa: {line}', file=sys.stderr)


def read_meta(checkpoints: ocp.CheckpointManager,
              step: Optional[int] = None,
              notice: Callable[[str], None] = _notice) -> Dict[str, Any]:
  """The 'meta' item of a step (default: the newest intact one), config
  upgraded, after `verify_step`.

  Args:
    checkpoints: the manager.
    step: the step to read; None for the newest that is intact (a damaged
      newer one is skipped with a line to `notice`).
    notice: called with the line that says a damaged step was skipped.

  Raises:
    ValueError: no checkpoint, not one of ours, or damaged (with no intact
      step to fall back to, or `step` itself damaged): one line naming the
      folder, the step and the file.
  """
  directory = str(checkpoints.directory)
  steps = sorted(checkpoints.all_steps(), reverse=True)
  if step is None and not steps:
    raise ValueError(f'no checkpoint in {directory}')
  damaged = None
  for candidate in ([step] if step is not None else steps):
    try:
      meta = verify_step(checkpoints, candidate)
    except DamagedStep as e:
      damaged = damaged or e
      continue
    if damaged is not None:
      notice(f'{directory}: {damaged}; using the newest intact step, '
             f'{candidate}')
    return meta
  raise ValueError(f'{directory}: {damaged}; ' + (
      'no intact step' if step is None else 'choose another step'))


def _step_directory(checkpoints: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(str(checkpoints.directory), str(step))


def _damaged_file(error: BaseException, folder: str) -> str:
  """The file (or array) under `folder` that an orbax / TensorStore error
  names, relative to `folder`."""
  text = str(error)
  paths = [path for path in re.findall(r'[\'"](/[^\'"]+)[\'"]', text)
           if path.startswith(folder + os.sep)]
  files = [path for path in paths if not path.endswith('/')]
  if files:
    return os.path.relpath(files[0], folder)
  arrays = re.findall(r"'path': '([^/'][^']*)'", text)
  if arrays:  # TensorStore names the array whose chunk could not be read
    return f'state, array {arrays[-1].rstrip("/")}'
  if paths:
    return os.path.relpath(paths[0], folder)
  return f'{type(error).__name__}: {" ".join(text.split())[:120]}'


def _check_files(folder: str, step: int):
  """Commit markers, the JSON files orbax reads, and CHECKSUMS if saved.

  Raises:
    DamagedStep: naming the first file that is wrong.
  """
  if not any(os.path.isdir(os.path.join(folder, item)) for item in ITEMS):
    held = sorted(name for name in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, name)))
    raise ValueError(f'{folder} is not a mofa_ml checkpoint (it holds '
                     f'{", ".join(held) or "no items"}, not state and meta)')
  markers = [os.path.join(folder, *parts, COMMIT_MARKER)
             for parts in [()] + [(item,) for item in ITEMS]]
  present = [os.path.isfile(marker) for marker in markers]
  # orbax of this version marks the step and each item; a checkpoint from
  # one that marks nothing is legacy, a partly marked one never finished.
  if any(present) and not all(present):
    raise DamagedStep(step, os.path.relpath(
        markers[present.index(False)], folder) + ' is missing: the save '
                      'never finished')
  if any(present) and not os.path.isfile(
      os.path.join(folder, '_CHECKPOINT_METADATA')):
    raise DamagedStep(step, '_CHECKPOINT_METADATA is missing')
  for item in ITEMS:
    if not os.path.isdir(os.path.join(folder, item)):
      raise DamagedStep(step, f'{item}/ is missing')
  optional = ('_CHECKPOINT_METADATA', 'state/_sharding')  # not in old ones
  for name in optional + ('meta/metadata', 'state/_METADATA'):
    path = os.path.join(folder, name)
    if name in optional and not os.path.exists(path):
      continue
    try:
      with open(path, 'rb') as f:
        json.loads(f.read())
    except (OSError, ValueError) as e:
      raise DamagedStep(step, f'{name}: {type(e).__name__}') from None
  listed = os.path.join(folder, CHECKSUMS)
  if not os.path.exists(listed):
    return
  try:
    with open(listed, encoding='utf-8') as f:
      expected = json.load(f)
  except (OSError, ValueError) as e:
    raise DamagedStep(step, f'{CHECKSUMS}: {type(e).__name__}') from None
  for name, digest in sorted(expected.items()):
    try:
      actual = _sha256(os.path.join(folder, name))
    except OSError:
      raise DamagedStep(step, f'{name} is missing') from None
    if actual != digest:
      raise DamagedStep(step, f'{name}: its contents changed since the save')


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def verify_step(checkpoints: ocp.CheckpointManager,
                step: int) -> Dict[str, Any]:
  """The 'meta' item of a step, after checking the step can be read.

  A step saved by `save` is checked against its CHECKSUMS; an older one,
  which has none, is read whole (and read again by `restore_state`: the
  price of old checkpoints, instead of a module-level cache).

  Raises:
    DamagedStep: the step is damaged.
    ValueError: a readable step that is not a mofa_ml checkpoint.
  """
  folder = _step_directory(checkpoints, step)
  where = f'{checkpoints.directory}/{step}'
  _check_files(folder, step)
  with _quiet_orbax():
    try:
      meta = checkpoints.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))['meta']
    except (KeyError, ValueError, FileNotFoundError, TypeError) as e:
      raise DamagedStep(step, f'meta: {type(e).__name__}') from None
    try:
      meta['config'] = upgrade_config(meta['config'])
    except (KeyError, TypeError) as e:
      raise ValueError(f'{where} is not a mofa_ml checkpoint (no {e})'
                       ) from None
    meta['step'] = step
    if not os.path.exists(os.path.join(folder, CHECKSUMS)):
      _restore(checkpoints, step, None)
  return meta


@contextlib.contextmanager
def _quiet_orbax():
  routine = _DropRoutine()
  logger = logging.getLogger('absl')  # where orbax's warnings go
  logger.addFilter(routine)
  try:
    yield
  finally:
    logger.removeFilter(routine)


def _not_an_orbax_read(record: logging.LogRecord) -> bool:
  """False for asyncio's '<future> exception was never retrieved' of
  orbax's reads: raised in orbax, or set by TensorStore (no Python frame)."""
  if 'exception was never retrieved' not in record.getMessage():
    return True
  trace = record.exc_info[2] if record.exc_info else None
  while trace and '/orbax/' not in trace.tb_frame.f_code.co_filename:
    trace = trace.tb_next
  return bool(record.exc_info and record.exc_info[2]) and trace is None


def _ignore_closed_loop_callbacks():
  """Drops the noise of the other reads in flight when one fails.

  When one array of a damaged step fails, orbax closes its event loop while
  reads of the other arrays are in flight; each then reports, through
  sys.unraisablehook or asyncio's log and possibly after the restore has
  returned (at exit), a traceback that says nothing about the checkpoint.
  Other unraisable errors still reach the previous hook.
  """
  previous = sys.unraisablehook
  if getattr(previous, 'ignores_closed_loop', False):
    return

  def hook(unraisable):
    code = getattr(unraisable.object, 'cr_code', None)  # a coroutine's
    if not (str(unraisable.exc_value) == 'Event loop is closed' or
            (code and '/orbax/' in code.co_filename)):
      previous(unraisable)

  hook.ignores_closed_loop = True
  sys.unraisablehook = hook
  logging.getLogger('asyncio').addFilter(_not_an_orbax_read)


def _restore(checkpoints: ocp.CheckpointManager, step: int,
             target: Any) -> Any:
  _ignore_closed_loop_callbacks()
  restore = (ocp.args.StandardRestore() if target is None else
             ocp.args.StandardRestore(target))
  try:
    return checkpoints.restore(step, args=ocp.args.Composite(
        state=restore))['state']
  except Exception as e:  # pylint: disable=broad-except
    # TensorStore reports a damaged file as a bare Exception, a ValueError
    # or a KeyError, each with a page of details.
    raise DamagedStep(step, _damaged_file(
        e, _step_directory(checkpoints, step))) from None


def check_compatible(meta: Dict[str, Any], model: fm.FaceModel,
                     layout: layout_lib.ParameterLayout, where: str):
  """Raises ValueError if a checkpoint was made for another model/layout."""
  if meta['face_model_fingerprint'] != model.fingerprint():
    raise ValueError(f'{where} was trained with face model '
                     f'{meta["face_model"]!r} (fingerprint '
                     f'{meta["face_model_fingerprint"]}), not '
                     f'{model.name!r} ({model.fingerprint()})')
  if meta['layout'] != layout.__dict__:
    raise ValueError(f'{where} has parameter layout {meta["layout"]}, the '
                     f'config gives {layout.__dict__}')


def restore_state(checkpoints: ocp.CheckpointManager, step: int,
                  target: Any = None) -> Any:
  """The 'state' item of a step: shaped like `target` (a pytree of arrays
  or shape-dtype structs), or as stored (nested dicts) without one.

  Raises:
    ValueError: the step is damaged (one line naming the file).
  """
  try:
    return _restore(checkpoints, step, target)
  except DamagedStep as e:
    raise ValueError(f'{checkpoints.directory}: {e}') from None


def save(checkpoints: ocp.CheckpointManager, step: int, state: Any,
         meta: Dict[str, Any]):
  """Saves a step and, beside its files, their SHA-256 (CHECKSUMS)."""
  checkpoints.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
  checkpoints.wait_until_finished()
  if jax.process_index() != 0:
    return
  folder = _step_directory(checkpoints, step)
  if not os.path.isdir(folder):
    return  # orbax chose not to save this step
  digests = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      digests[os.path.relpath(path, folder)] = _sha256(path)
  digests.pop(CHECKSUMS, None)
  temporary = os.path.join(folder, f'.{CHECKSUMS}.partial')
  with open(temporary, 'w', encoding='utf-8') as f:
    json.dump(digests, f, indent=0, sort_keys=True)
  os.replace(temporary, os.path.join(folder, CHECKSUMS))


def find(directory: str) -> str:
  """The checkpoints/ folder of a training workdir, or `directory` itself.

  Raises:
    ValueError: the folder does not exist.
  """
  folder = os.path.join(directory, 'checkpoints')
  folder = folder if os.path.isdir(folder) else directory
  if not os.path.isdir(folder):
    raise ValueError(f'checkpoint folder not found: {directory}')
  return folder


def set_aside_steps_after(manager, step: int,
                          report: Callable[[str], None]):
  """Renames the damaged steps newer than the restored one to
  '<step>.damaged' (restoring fell back past them), so that the run can
  save those steps again and the damaged files stay for inspection."""
  # The folder, not `all_steps()`: a step without its commit marker is not
  # listed, yet its folder would still block saving that step.
  directory = str(manager.directory)
  newer = sorted(int(name) for name in os.listdir(directory)
                 if name.isdigit() and int(name) > step)
  if not newer or jax.process_index() != 0:
    return
  for damaged in newer:
    folder = os.path.join(directory, str(damaged))
    os.rename(folder, folder + '.damaged')
    report(f'set aside damaged checkpoint step {damaged} as {folder}.damaged')
  manager.reload()
