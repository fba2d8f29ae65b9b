"""Two-stage self-supervised training (paper Sec. 7, supplement Sec. 1).

    mofa train --config=smoke --workdir=/tmp/smoke

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

import json
import os
import signal
import threading
import time
from typing import Any, Dict, Optional

import flax
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import ml_collections
import numpy as np
import optax
import tqdm

from mofa_ml.data import head as head_lib
from mofa_ml.data import on_device
from mofa_ml.learning import checkpoints
from mofa_ml.learning import configs
from mofa_ml.learning import network
from mofa_ml.learning import objective
from mofa_ml.learning import regressor
from mofa_ml.learning import summaries
from mofa_ml.learning import supervision

BASE, GEOMETRY, REFLECTANCE = 'base', 'geometry', 'reflectance'
STAGES = objective.STAGES


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


class Stopped(Exception):
  """Training ended early by a signal, after saving a checkpoint."""

  def __init__(self, signal_number: int, step: int):
    super().__init__(f'stopped by {signal.Signals(signal_number).name} '
                     f'after step {step} (checkpoint saved; rerun to resume)')
    self.signal_number = signal_number


def loss_config(stage: ml_collections.ConfigDict, stage_name: str,
                units: ml_collections.ConfigDict) -> objective.LossConfig:
  """The objective's settings for one stage of the config; weights the
  config does not set keep the paper's value for the stage."""
  return objective.LossConfig.for_stage(
      stage_name, **stage.loss.to_dict(), final_level=stage.final_level,
      landmark_unit_px=units.landmark_unit_px,
      length_unit_mm=units.length_unit_mm)


class Trainer:
  """Everything fixed for a run: the setup, shardings and step functions."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.setup = regressor.Setup.from_config(config)
    self.mesh = Mesh(np.asarray(jax.devices()), ('data',))
    self.replicated = NamedSharding(self.mesh, PartitionSpec())
    self.data_sharding = NamedSharding(self.mesh, PartitionSpec('data'))
    if config.batch_size % jax.device_count():
      raise ValueError(f'batch_size {config.batch_size} is not divisible by '
                       f'the {jax.device_count()} devices')
    self.stage_end = np.cumsum([config[name].steps for name in STAGES])
    self.total_steps = int(self.stage_end[-1])
    # On-device data: the step draws its own batch (data/on_device.py).
    self.distribution = None
    head = None
    if config.dataset == on_device.DATASET:
      self.distribution = on_device.Distribution.from_config(config)
      if self.distribution.head:
        head = head_lib.load_head(self.setup.face_model)
    self.constants = jax.device_put(
        (self.setup.face_model, self.setup.scaling, self.setup.intrinsics,
         head), self.replicated)
    self._steps = {}
    self._sample = None

  def stage_index(self, step: int) -> int:
    """Which stage runs step `step` (0-based)."""
    return int(np.searchsorted(self.stage_end, step, side='right'))

  def optimizer(self, stage_index: int) -> optax.GradientTransformation:
    return make_optimizer(self.config[STAGES[stage_index]],
                          self.config.optimizer)

  def new_state(self, params, stage_index: int, step: int) -> TrainState:
    opt_state = self.optimizer(stage_index).init(params)
    state = TrainState(step=jnp.asarray(step, jnp.int32), params=params,
                       opt_state=opt_state)
    return jax.device_put(state, self.replicated)

  def on_device_batch(self, key: jax.Array, constants) -> Dict[str, Any]:
    """The batch of the on-device distribution for `key` (inside `jit`),
    sharded over the devices."""
    model, _, intrinsics, head = constants
    batch = on_device.batch(key, model, self.setup.layout, intrinsics, head,
                            self.distribution, self.config.batch_size)
    return jax.lax.with_sharding_constraint(batch, self.data_sharding)

  def sample_batch(self, step: int) -> Dict[str, np.ndarray]:
    """The on-device batch of `step`, on the host (for image summaries)."""
    if self._sample is None:
      self._sample = jax.jit(self.on_device_batch)
    batch = jax.device_get(self._sample(self.data_key(step), self.constants))
    return dict(batch, image=np.round(batch['image'] * 255).astype(np.uint8))

  def data_key(self, step) -> jax.Array:
    """The key of step `step`'s on-device batch."""
    return jax.random.fold_in(jax.random.PRNGKey(self.config.seed + 1), step)

  def train_step(self, stage_index: int):
    """The jitted step of a stage: (state, batch, constants) ->
    (state, terms and metrics); with on-device data `batch` is None."""
    if stage_index in self._steps:
      return self._steps[stage_index]
    tx = self.optimizer(stage_index)
    name = STAGES[stage_index]
    loss = loss_config(self.config[name], name, self.config.units)
    seed = self.config.seed
    net = self.setup.network
    supervised = dict(self.config[name].get('supervision', {}))

    def step_fn(state, batch, constants):
      model, scaling, intrinsics, _ = constants
      key = jax.random.fold_in(jax.random.PRNGKey(seed), state.step)
      truth = batch is None  # drawn here, with its truth
      if truth:
        batch = self.on_device_batch(self.data_key(state.step), constants)
      else:
        batch = dict(batch, image=batch['image'].astype(jnp.float32) / 255.0)

      def loss_fn(params):
        prediction = net.apply({'params': params}, batch['image'], scaling)
        terms = objective.batch_objective(
            model, intrinsics, loss, prediction.params,
            prediction.geometry_offsets, prediction.reflectance_offsets,
            batch, key)
        if truth:
          known = supervision.batch_supervision(
              model, intrinsics, self.setup.layout, prediction.params, batch,
              loss.length_unit_mm, loss.landmark_unit_px)
          for term, value in known.items():
            terms[f'supervised_{term}'] = value
            if term in supervision.TERMS:  # METRICS are logged only
              terms['total'] += supervised.get(term, 0.0) * value
          terms['overflow'] = jnp.mean(batch['overflow'].astype(jnp.float32))
        terms['synthetic'] = jnp.float32(truth)
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

  def start_stage2(self, params):
    """Stage 2 starts with the final level's light equal to the base one."""
    if not self.setup.layout.separate_final_sh:
      return params
    start, stop = self.setup.layout.offsets['sh_base']
    encoder = dict(params[network.ENCODER])
    base = encoder['base_head']
    encoder['sh_final_head'] = {'kernel': base['kernel'][:, start:stop],
                                'bias': base['bias'][start:stop]}
    return dict(params, **{network.ENCODER: encoder})

  def meta(self, stage_index: int) -> Dict[str, Any]:
    return checkpoints.metadata(stage_index, self.setup.layout,
                                self.setup.face_model, self.config)

  def restore(self, manager, step: Optional[int] = None):
    """(TrainState, meta) of a checkpoint (default: the newest)."""
    meta = checkpoints.read_meta(manager, step)
    checkpoints.check_compatible(meta, self.setup.face_model,
                                 self.setup.layout,
                                 f'checkpoint {manager.directory}/'
                                 f'{meta["step"]}')
    params = self.setup.init_params(jax.random.PRNGKey(0))
    target = self.new_state(params, meta['stage'], meta['step'])
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        target)
    return checkpoints.restore_state(manager, meta['step'], abstract), meta


def _global_batch(trainer: Trainer, batch: Dict[str, np.ndarray]):
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(trainer.data_sharding,
                                                       x), batch)


def _initial_state(trainer: Trainer, config: ml_collections.ConfigDict,
                   manager, workdir: str):
  """(state, stage index): resumed, from `init_checkpoint`, or new."""
  if manager.latest_step() is not None:
    state, meta = trainer.restore(manager)
    checkpoints.set_aside_steps_after(manager, int(state.step),
                                      tqdm.tqdm.write)
    tqdm.tqdm.write(f'resumed from step {int(state.step)} '
                    f'(stage {meta["stage"] + 1}) in {workdir}')
    return state, meta['stage']
  stage_index = trainer.stage_index(0)
  if config.init_checkpoint:
    source = checkpoints.manager(config.init_checkpoint, read_only=True)
    if source.latest_step() is None:
      raise ValueError(f'init_checkpoint {config.init_checkpoint} holds no '
                       'checkpoint')
    params = trainer.restore(source)[0].params
    if stage_index == 1:
      params = trainer.start_stage2(params)
  else:
    params = trainer.setup.init_params(jax.random.PRNGKey(config.seed))
  return trainer.new_state(params, stage_index, 0), stage_index


class _SignalFlag:
  """Records SIGTERM / SIGINT while training (main thread only), so the loop
  can save a checkpoint and stop between steps."""

  def __init__(self):
    self.signal = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for number in (signal.SIGTERM, signal.SIGINT):
        self._previous[number] = signal.signal(number, self._handle)
    return self

  def _handle(self, number, frame):
    del frame
    self.signal = number

  def __exit__(self, *exc):
    for number, handler in self._previous.items():
      signal.signal(number, handler)


def train(config: ml_collections.ConfigDict, workdir: str,
          stop_at: Optional[int] = None) -> TrainState:
  """Runs (or resumes) training; returns the final state.

  Args:
    config: see mofa_ml/configs (`configs.load_config`).
    workdir: checkpoints/, tensorboard/ and metrics.jsonl go here.
    stop_at: stop after this global step (as if killed right after it); the
      run continues from there when called again.
  """
  import tensorboardX  # Only the training job writes summaries.
  configs.check_config(config)
  trainer = Trainer(config)
  manager = checkpoints.manager(os.path.join(workdir, 'checkpoints'),
                                max_to_keep=config.keep_checkpoints)
  state, stage_index = _initial_state(trainer, config, manager, workdir)
  step = int(state.step)
  metrics_path = os.path.join(workdir, 'metrics.jsonl')
  if jax.process_index() == 0:
    summaries.truncate_metrics(metrics_path, step)
  end = trainer.total_steps if stop_at is None else min(stop_at,
                                                        trainer.total_steps)
  batches = on_device.host_batches(config, step, jax.process_count(),
                                   jax.process_index())
  writer = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))
  accumulated, count, interval_start = {}, 0, time.perf_counter()
  progress = tqdm.tqdm(total=end, initial=step, desc='train', unit='step',
                       disable=jax.process_index() != 0)
  stop = _SignalFlag()
  try:
    with stop:
      while step < end and stop.signal is None:
        wanted = trainer.stage_index(step)
        if wanted != stage_index:
          params = trainer.start_stage2(state.params) if wanted == 1 else (
              state.params)
          state = trainer.new_state(params, wanted, step)
          stage_index = wanted
        host_batch = next(batches)
        state, terms = trainer.train_step(stage_index)(
            state, None if host_batch is None else
            _global_batch(trainer, host_batch), trainer.constants)
        step += 1
        # Per term: a mixture's real steps have no supervised terms.
        for name, value in terms.items():
          total, seen = accumulated.get(name, (0.0, 0))
          accumulated[name] = (total + value, seen + 1)
        count += 1
        if step % config.log_every == 0 or step == end:
          scalars = {name: float(total) / seen
                     for name, (total, seen) in accumulated.items()}
          elapsed = time.perf_counter() - interval_start
          scalars['steps_per_second'] = count / elapsed
          for name, value in scalars.items():
            writer.add_scalar(f'{STAGES[stage_index]}/{name}', value, step)
          if jax.process_index() == 0:
            with open(metrics_path, 'a', encoding='utf-8') as f:
              f.write(json.dumps(dict(scalars, step=step,
                                      stage=stage_index + 1)) + '\n')
          progress.set_postfix(loss=f'{scalars["total"]:.4g}',
                               lm_px=f'{scalars["landmark_error_px"]:.2f}',
                               steps_s=f'{scalars["steps_per_second"]:.2f}')
          accumulated, count, interval_start = {}, 0, time.perf_counter()
        if step % config.image_every == 0 or step == end:
          shown = host_batch or trainer.sample_batch(step)
          rows = summaries.image_rows(trainer.setup, state.params, shown)
          writer.add_image('input|base|final', rows, step, dataformats='HWC')
        if (step % config.checkpoint_every == 0 or step == end or
            stop.signal is not None):
          checkpoints.save(manager, step, state, trainer.meta(stage_index))
        progress.update(1)
  finally:
    progress.close()
    writer.close()
    manager.wait_until_finished()
  if stop.signal is not None:
    raise Stopped(stop.signal, step)
  return state
