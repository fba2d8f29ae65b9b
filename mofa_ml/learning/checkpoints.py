"""Training checkpoints: orbax managers, their metadata, compatibility.

A checkpoint holds two items: 'state' (the `train.TrainState` pytree) and
'meta' (JSON: stage, parameter layout, face model name and fingerprint, the
run's config). Older checkpoints' configs are brought up to date on reading
(`upgrade_config`), so a run trained before a config field was renamed still
loads.
"""

import os
from typing import Any, Dict, Optional

import ml_collections
import orbax.checkpoint as ocp

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib

ITEMS = ('state', 'meta')


def manager(directory: str, max_to_keep: Optional[int] = None,
            read_only: bool = False) -> ocp.CheckpointManager:
  """An orbax manager of `directory` (created unless `read_only`)."""
  if read_only:
    options = ocp.CheckpointManagerOptions(read_only=True, create=False)
  else:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_names=ITEMS)


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


def read_meta(checkpoints: ocp.CheckpointManager,
              step: Optional[int] = None) -> Dict[str, Any]:
  """The 'meta' item of a step (default: the newest), config upgraded.

  Raises:
    ValueError: no checkpoint, or not one of ours.
  """
  step = checkpoints.latest_step() if step is None else step
  where = f'{checkpoints.directory}/{step}'
  if step is None:
    raise ValueError(f'no checkpoint in {checkpoints.directory}')
  try:
    meta = checkpoints.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))['meta']
    meta['config'] = upgrade_config(meta['config'])
  except (KeyError, ValueError, FileNotFoundError, TypeError) as e:
    raise ValueError(f'{where} is not a mofa_ml checkpoint ({e})') from None
  meta['step'] = step
  return meta


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
  or shape-dtype structs), or as stored (nested dicts) without one."""
  restore = (ocp.args.StandardRestore() if target is None else
             ocp.args.StandardRestore(target))
  return checkpoints.restore(step, args=ocp.args.Composite(
      state=restore))['state']


def save(checkpoints: ocp.CheckpointManager, step: int, state: Any,
         meta: Dict[str, Any]):
  checkpoints.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))


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
