"""Two-stage self-supervised training (paper Sec. 7, supplement Sec. 1).

    python -m mofa_ml.train --config=experiments/configs/smoke.py \
        --workdir=/tmp/mofa_smoke

Stage 1 trains the base level (trunk, base head) with the corrective groups
frozen; stage 2 fine-tunes everything with per-group learning rates through
`optax.multi_transform` over three groups: base (trunk, base and final-SH
heads), geometry correctives (head + Theta_g), reflectance correctives
(head + Theta_r). AdaDelta, as in the paper.

The job is data-parallel over every local device (a 1-D `Mesh`, the batch
sharded, parameters replicated) and over hosts with `--distributed`
(`jax.distributed.initialize()`). It resumes from the newest checkpoint in
the workdir by itself: batch s and the step's random key are pure functions
of (seed, s), so a resumed run repeats an uninterrupted one.
"""

import functools
import json
import os
import time
from typing import Any, Dict, Optional

import flax
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

from mofa_ml import camera
from mofa_ml import face_model as fm
from mofa_ml import layout as layout_lib
from mofa_ml import network
from mofa_ml import objective
from mofa_ml import viz
from mofa_ml.data import input_pipeline

BASE, GEOMETRY, REFLECTANCE = 'base', 'geometry', 'reflectance'
STAGES = ('stage1', 'stage2')


def default_config() -> ml_collections.ConfigDict:
  """The paper's two-stage schedule and weights (supplement Sec. 1).

  Configs in experiments/configs start from this and override fields.
  """
  config = ml_collections.ConfigDict()
  config.dataset = 'mofa_synthetic/default'  # TFDS name/config
  config.data_dir = ''  # TFDS data folder; '' for TFDS's default
  config.seed = 0
  config.batch_size = 5
  config.image_size = 240
  config.focal_length = camera.DEFAULT_FOCAL_LENGTH
  config.num_data_threads = 4
  config.init_checkpoint = ''  # a previous run's workdir/checkpoints

  config.model = ml_collections.ConfigDict()
  config.model.bfm_path = ''  # '' for the bundled ICT model
  config.model.num_correctives = 500
  config.model.separate_final_sh = True
  config.model.backbone = 'alexnet'  # or 'light' (encoder.TRUNKS)
  config.model.width = 1.0
  config.model.dense_size = 4096
  config.model.corrective_hidden_sizes = ()

  config.units = ml_collections.ConfigDict()
  config.units.landmark_unit_px = 24.0
  config.units.length_unit_mm = 10.0

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adadelta'
  config.optimizer.rho = 0.95  # Caffe's AdaDelta momentum
  config.optimizer.eps = 1e-6  # Caffe's AdaDelta delta

  stage1_loss = objective.LossConfig()
  stage2_loss = objective.LossConfig.stage2()
  for name, steps, rates, loss in (
      ('stage1', 200_000, (0.01, 0.0, 0.0), stage1_loss),
      ('stage2', 190_000, (0.001, 0.005, 0.01), stage2_loss)):
    stage = ml_collections.ConfigDict()
    stage.steps = steps
    stage.learning_rate_base = rates[0]
    stage.learning_rate_geometry = rates[1]
    stage.learning_rate_reflectance = rates[2]
    stage.final_level = loss.final_level
    stage.loss = ml_collections.ConfigDict({
        name: getattr(loss, name)
        for name in ('photo', 'reg', 'rstd', 'smo', 'ref', 'glo', 'sta')})
    config[name] = stage

  config.log_every = 100
  config.image_every = 5000
  config.checkpoint_every = 5000
  config.keep_checkpoints = 3
  return config


@flax.struct.dataclass
class TrainState:
  """The whole training state: a pytree, checkpointed as one item."""
  step: jax.Array
  params: Any
  opt_state: Any


def parameter_groups(params) -> Any:
  """Pytree of group labels (base / geometry / reflectance) for `params`."""
  def label(path, _):
    names = [getattr(entry, 'key', str(entry)) for entry in path]
    if network.GEOMETRY_CORRECTIVES in names or 'geometry_head' in names:
      return GEOMETRY
    if network.REFLECTANCE_CORRECTIVES in names or 'reflectance_head' in names:
      return REFLECTANCE
    return BASE
  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(stage: ml_collections.ConfigDict,
                   optimizer: ml_collections.ConfigDict
                   ) -> optax.GradientTransformation:
  """One optimiser per group with the stage's learning rates; a group with
  rate 0 is frozen (`set_to_zero`: its parameters stay bit-identical).

  `optimizer.name` is 'adadelta' (the paper's; rho and eps as Caffe's
  momentum and delta) or 'adam' (for short CPU runs, where AdaDelta's
  eps-limited first steps are too slow to show learning).
  """
  def group(rate):
    if rate == 0:
      return optax.set_to_zero()
    if optimizer.name == 'adadelta':
      return optax.adadelta(rate, rho=optimizer.rho, eps=optimizer.eps)
    if optimizer.name == 'adam':
      return optax.adam(rate)
    raise ValueError(f'unknown optimizer {optimizer.name!r} (adadelta, adam)')
  return optax.multi_transform(
      {BASE: group(stage.learning_rate_base),
       GEOMETRY: group(stage.learning_rate_geometry),
       REFLECTANCE: group(stage.learning_rate_reflectance)},
      parameter_groups)


def loss_config(stage: ml_collections.ConfigDict,
                units: ml_collections.ConfigDict) -> objective.LossConfig:
  """The objective's settings for one stage of the config."""
  weights = stage.loss
  return objective.LossConfig(
      photo=weights.photo, reg=weights.reg, rstd=weights.rstd,
      smo=weights.smo, ref=weights.ref, glo=weights.glo, sta=weights.sta,
      final_level=stage.final_level, landmark_unit_px=units.landmark_unit_px,
      length_unit_mm=units.length_unit_mm)


class Trainer:
  """Everything fixed for a run: model, network, shardings, step functions."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.face_model = fm.load_face_model(config.model.bfm_path or None)
    self.layout = layout_lib.ParameterLayout.for_model(
        self.face_model, config.model.num_correctives,
        config.model.separate_final_sh)
    self.intrinsics = camera.default_intrinsics(config.image_size,
                                                config.focal_length)
    self.scaling = network.parameter_scaling(self.face_model, self.layout)
    self.network = network.FaceAutoencoder(
        layout=self.layout, num_vertices=self.face_model.num_vertices,
        width=config.model.width, dense_size=config.model.dense_size,
        backbone=config.model.get('backbone', 'alexnet'),
        corrective_hidden_sizes=tuple(config.model.corrective_hidden_sizes))
    self.mesh = Mesh(np.asarray(jax.devices()), ('data',))
    self.replicated = NamedSharding(self.mesh, PartitionSpec())
    self.data_sharding = NamedSharding(self.mesh, PartitionSpec('data'))
    if config.batch_size % jax.device_count():
      raise ValueError(f'batch_size {config.batch_size} is not divisible by '
                       f'the {jax.device_count()} devices')
    self.stage_end = np.cumsum([config[name].steps for name in STAGES])
    self.total_steps = int(self.stage_end[-1])
    self.constants = jax.device_put(
        (self.face_model, self.scaling, self.intrinsics), self.replicated)
    self._steps = {}

  def stage_index(self, step: int) -> int:
    """Which stage runs step `step` (0-based)."""
    return int(np.searchsorted(self.stage_end, step, side='right'))

  def optimizer(self, stage_index: int) -> optax.GradientTransformation:
    return make_optimizer(self.config[STAGES[stage_index]],
                          self.config.optimizer)

  def init_params(self, key: jax.Array):
    size = self.config.image_size
    images = jnp.zeros((1, size, size, 3), jnp.float32)
    return self.network.init(key, images, self.scaling)['params']

  def new_state(self, params, stage_index: int, step: int) -> TrainState:
    opt_state = self.optimizer(stage_index).init(params)
    state = TrainState(step=jnp.asarray(step, jnp.int32), params=params,
                       opt_state=opt_state)
    return jax.device_put(state, self.replicated)

  def train_step(self, stage_index: int):
    """The jitted step of a stage: (state, batch) -> (state, metrics)."""
    if stage_index in self._steps:
      return self._steps[stage_index]
    tx = self.optimizer(stage_index)
    losses = loss_config(self.config[STAGES[stage_index]], self.config.units)
    seed = self.config.seed

    def step_fn(state, batch, constants):
      model, scaling, intrinsics = constants
      key = jax.random.fold_in(jax.random.PRNGKey(seed), state.step)
      batch = dict(batch, image=batch['image'].astype(jnp.float32) / 255.0)

      def loss_fn(params):
        prediction = self.network.apply({'params': params}, batch['image'],
                                        scaling)
        terms = objective.batch_objective(model, intrinsics, losses,
                                          prediction, batch, key)
        return terms['total'], terms

      (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          state.params)
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      terms['gradient_norm'] = optax.tree.norm(grads)
      return TrainState(state.step + 1, params, opt_state), terms

    self._steps[stage_index] = jax.jit(
        step_fn, in_shardings=(self.replicated, self.data_sharding,
                               self.replicated),
        out_shardings=(self.replicated, self.replicated), donate_argnums=0)
    return self._steps[stage_index]

  @functools.partial(jax.jit, static_argnums=0)
  def predict(self, params, images):
    """Network prediction for (B, H, W, 3) float images (no loss)."""
    return self.network.apply({'params': params}, images, self.scaling)

  def start_stage2(self, params):
    """Stage 2 starts with the final level's light equal to the base one."""
    if not self.layout.separate_final_sh:
      return params
    start, stop = self.layout.offsets['sh_base']
    encoder = dict(params[network.ENCODER])
    base = encoder['base_head']
    encoder['sh_final_head'] = {'kernel': base['kernel'][:, start:stop],
                                'bias': base['bias'][start:stop]}
    return dict(params, **{network.ENCODER: encoder})


def _checkpoint_manager(directory: str, config) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=config.keep_checkpoints, create=True,
          enable_async_checkpointing=False),
      item_names=('state', 'meta'))


def _meta(trainer: Trainer, stage_index: int) -> Dict[str, Any]:
  return {'stage': stage_index, 'layout': trainer.layout.__dict__,
          'face_model': trainer.face_model.name,
          'face_model_fingerprint': trainer.face_model.fingerprint(),
          'config': trainer.config.to_dict()}


def check_compatible(meta: Dict[str, Any], trainer: Trainer, where: str):
  """Raises ValueError if a checkpoint was made for another model/layout."""
  if meta['face_model_fingerprint'] != trainer.face_model.fingerprint():
    raise ValueError(f'{where} was trained with face model '
                     f'{meta["face_model"]!r} (fingerprint '
                     f'{meta["face_model_fingerprint"]}), not '
                     f'{trainer.face_model.name!r} '
                     f'({trainer.face_model.fingerprint()})')
  if meta['layout'] != trainer.layout.__dict__:
    raise ValueError(f'{where} has parameter layout {meta["layout"]}, the '
                     f'config gives {trainer.layout.__dict__}')


def restore(manager: ocp.CheckpointManager, trainer: Trainer,
            step: Optional[int] = None):
  """(TrainState, meta) of a checkpoint (default: the newest)."""
  step = manager.latest_step() if step is None else step
  meta = manager.restore(step, args=ocp.args.Composite(
      meta=ocp.args.JsonRestore()))['meta']
  check_compatible(meta, trainer, f'checkpoint {manager.directory}/{step}')
  params = trainer.init_params(jax.random.PRNGKey(0))
  target = trainer.new_state(params, meta['stage'], step)
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
  state = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract)))['state']
  return state, meta


def _global_batch(trainer: Trainer, batch: Dict[str, np.ndarray]):
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(trainer.data_sharding,
                                                       x), batch)


def _image_summary(trainer: Trainer, params, batch, count: int = 3):
  """Rows of input | base overlay | final overlay, (H', W', 3)."""
  images = np.asarray(batch['image'][:count], np.float32) / 255.0
  prediction = jax.device_get(trainer.predict(params, jnp.asarray(images)))
  rows = []
  for index, image in enumerate(images):
    face = jax.tree_util.tree_map(lambda x: x[index], prediction)
    base = viz.overlay(image, trainer.face_model, face.params,
                       trainer.intrinsics)
    final = viz.overlay(image, trainer.face_model, face.params,
                        trainer.intrinsics, face.geometry_offsets,
                        face.reflectance_offsets)
    rows.append(viz.side_by_side([image, base, final]))
  return np.concatenate(rows, axis=0)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       stop_at: Optional[int] = None) -> TrainState:
  """Runs (or resumes) training; returns the final state.

  Args:
    config: see experiments/configs.
    workdir: checkpoints/ and tensorboard/ go here.
    stop_at: stop after this global step (as if killed right after it); the
      run continues from there when called again.
  """
  import tensorboardX  # Only the training job writes summaries.
  trainer = Trainer(config)
  manager = _checkpoint_manager(os.path.join(workdir, 'checkpoints'), config)
  if manager.latest_step() is not None:
    state, meta = restore(manager, trainer)
    stage_index = meta['stage']
    tqdm.tqdm.write(f'resumed from step {int(state.step)} '
                    f'(stage {stage_index + 1}) in {workdir}')
  elif config.init_checkpoint:
    source = _checkpoint_manager(config.init_checkpoint, config)
    if source.latest_step() is None:
      raise ValueError(f'init_checkpoint {config.init_checkpoint} holds no '
                       'checkpoint')
    previous, _ = restore(source, trainer)
    stage_index = trainer.stage_index(0)
    params = previous.params
    if stage_index == 1:
      params = trainer.start_stage2(params)
    state = trainer.new_state(params, stage_index, 0)
  else:
    params = trainer.init_params(jax.random.PRNGKey(config.seed))
    stage_index = trainer.stage_index(0)
    state = trainer.new_state(params, stage_index, 0)

  step = int(state.step)
  end = trainer.total_steps if stop_at is None else min(stop_at,
                                                        trainer.total_steps)
  source = input_pipeline.load_source(config.dataset, 'train',
                                      config.data_dir or None)
  local_batch = config.batch_size // jax.process_count()
  batches = input_pipeline.training_batches(
      source, local_batch, seed=config.seed + jax.process_index(),
      start_step=step, num_threads=config.num_data_threads)
  writer = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))
  accumulated, count, interval_start = {}, 0, time.perf_counter()
  progress = tqdm.tqdm(total=end, initial=step, desc='train', unit='step',
                       disable=jax.process_index() != 0)
  try:
    while step < end:
      wanted = trainer.stage_index(step)
      if wanted != stage_index:
        params = trainer.start_stage2(state.params) if wanted == 1 else (
            state.params)
        state = trainer.new_state(params, wanted, step)
        stage_index = wanted
      host_batch = next(batches)
      state, terms = trainer.train_step(stage_index)(
          state, _global_batch(trainer, host_batch), trainer.constants)
      step += 1
      for name, value in terms.items():
        accumulated[name] = accumulated.get(name, 0.0) + value
      count += 1
      if step % config.log_every == 0 or step == end:
        scalars = {name: float(value) / count
                   for name, value in accumulated.items()}
        elapsed = time.perf_counter() - interval_start
        scalars['steps_per_second'] = count / elapsed
        for name, value in scalars.items():
          writer.add_scalar(f'{STAGES[stage_index]}/{name}', value, step)
        if jax.process_index() == 0:
          with open(os.path.join(workdir, 'metrics.jsonl'), 'a',
                    encoding='utf-8') as f:
            f.write(json.dumps(dict(scalars, step=step,
                                    stage=stage_index + 1)) + '\n')
        progress.set_postfix(loss=f'{scalars["total"]:.4g}',
                             lm_px=f'{scalars["landmark_error_px"]:.2f}',
                             steps_s=f'{scalars["steps_per_second"]:.2f}')
        accumulated, count, interval_start = {}, 0, time.perf_counter()
      if step % config.image_every == 0 or step == end:
        writer.add_image('input|base|final',
                         _image_summary(trainer, state.params, host_batch),
                         step, dataformats='HWC')
      if step % config.checkpoint_every == 0 or step == end:
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            meta=ocp.args.JsonSave(_meta(trainer, stage_index))))
      progress.update(1)
  finally:
    progress.close()
    writer.close()
    manager.wait_until_finished()
  return state



if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from mofa_ml.commands import train as train_command  # pylint: disable=g-import-not-at-top
  app.run(train_command.main)


def load_regressor(directory: str):
  """(Trainer, params) of a trained run, for inference.

  Args:
    directory: a training workdir or its checkpoints/ folder.

  Raises:
    ValueError: no checkpoint there, or one this code cannot use.
  """
  folder = os.path.join(directory, 'checkpoints')
  folder = folder if os.path.isdir(folder) else directory
  if not os.path.isdir(folder):
    raise ValueError(f'checkpoint folder not found: {directory}')
  manager = ocp.CheckpointManager(
      os.path.abspath(folder), item_names=('state', 'meta'),
      options=ocp.CheckpointManagerOptions(read_only=True, create=False))
  step = manager.latest_step()
  if step is None:
    raise ValueError(f'no checkpoint in {folder}')
  try:
    meta = manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))['meta']
    config = ml_collections.ConfigDict(meta['config'])
  except (KeyError, ValueError, FileNotFoundError) as e:
    raise ValueError(f'{folder}/{step} is not a mofa_ml checkpoint ({e})'
                     ) from None
  trainer = Trainer(config)
  state, _ = restore(manager, trainer, step)
  return trainer, state.params
