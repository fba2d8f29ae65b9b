"""The trained network as a reconstructor: crops in, face parameters out.

`Setup` is everything a training config fixes about the network and its face
model (shared by the trainer); `Regressor` adds trained parameters and is
what inference uses (`mofa reconstruct`, `mofa eval`, benchmarks):

    regressor = Regressor.load('runs/stage2')
    prediction = regressor.predict(crops)  # (B, 240, 240, 3) in [0, 1]
"""

import dataclasses
import functools
import io
import json
import os
from typing import Any

from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mofa_ml import image_io
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.learning import checkpoints
from mofa_ml.learning import network
from mofa_ml.rendering import camera


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
  """The face model, parameter layout, output scaling, crop camera and
  network of a config. Compared and hashed by identity, so `predict`
  compiles once per setup."""
  face_model: fm.FaceModel
  layout: layout_lib.ParameterLayout
  scaling: layout_lib.ParameterScaling
  intrinsics: camera.Intrinsics
  network: network.FaceNetwork
  image_size: int

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'Setup':
    """Raises ValueError (or FileNotFoundError) for an unusable face model
    or backbone."""
    model = fm.load_face_model(config.model.face_model)
    layout = layout_lib.ParameterLayout.for_model(
        model, config.model.num_correctives, config.model.separate_final_sh)
    return cls(
        face_model=model, layout=layout,
        scaling=layout_lib.parameter_scaling(model, layout),
        intrinsics=camera.default_intrinsics(config.image_size,
                                             config.focal_length),
        network=network.FaceNetwork(
            layout=layout, num_vertices=model.num_vertices,
            width=config.model.width, dense_size=config.model.dense_size,
            backbone=config.model.get('backbone', 'alexnet'),
            corrective_hidden_sizes=tuple(
                config.model.corrective_hidden_sizes)),
        image_size=config.image_size)

  def init_params(self, key: jax.Array) -> Any:
    images = jnp.zeros((1, self.image_size, self.image_size, 3), jnp.float32)
    return self.network.init(key, images, self.scaling)['params']

  @functools.partial(jax.jit, static_argnums=0)
  def predict(self, params: Any, images: jax.Array) -> network.Prediction:
    """Prediction for (B, H, W, 3) float crops in [0, 1]."""
    return self.network.apply({'params': params}, images, self.scaling)


@dataclasses.dataclass(frozen=True)
class Regressor:
  """A setup with trained parameters."""
  setup: Setup
  params: Any
  config: ml_collections.ConfigDict

  @property
  def face_model(self) -> fm.FaceModel:
    return self.setup.face_model

  @property
  def intrinsics(self) -> camera.Intrinsics:
    return self.setup.intrinsics

  @property
  def layout(self) -> layout_lib.ParameterLayout:
    return self.setup.layout

  def predict(self, images: jax.Array) -> network.Prediction:
    """Prediction for (B, H, W, 3) float crops in [0, 1]."""
    return self.setup.predict(self.params, images)

  @classmethod
  def load(cls, directory: str) -> 'Regressor':
    """The newest checkpoint of a training run, or a weights file.

    Args:
      directory: a training workdir, its checkpoints/ folder, or a weights
        file (.npz) that `save_weights` wrote.

    Raises:
      ValueError: no checkpoint there, or one this code cannot use.
    """
    if directory.endswith(WEIGHTS_SUFFIX):
      return cls.load_weights(directory)
    manager = checkpoints.manager(checkpoints.find(directory), read_only=True)
    meta = checkpoints.read_meta(manager)
    config = ml_collections.ConfigDict(meta['config'])
    setup = Setup.from_config(config)
    where = f'{manager.directory}/{meta["step"]}'
    checkpoints.check_compatible(meta, setup.face_model, setup.layout, where)
    stored = checkpoints.restore_state(manager, meta['step'])
    expected = jax.eval_shape(setup.init_params, jax.random.PRNGKey(0))
    # Keep the modules this code builds (a head an older version built but
    # never used is dropped); a missing or misshapen one is an error.
    params = _matching(stored['params'], expected, where)
    return cls(setup, params, config)

  def save_weights(self, path: str, overwrite: bool = False):
    """Writes the network's parameters (float16) with the run's config and
    the face model's fingerprint into one .npz: what a package ships
    (a few MB; a checkpoint also holds the optimiser's state)."""
    if not path.endswith(WEIGHTS_SUFFIX):
      raise ValueError(f'a weights file ends in {WEIGHTS_SUFFIX}: {path}')
    leaves = traverse_util.flatten_dict(
        jax.tree_util.tree_map(lambda x: np.asarray(x, np.float16),
                               self.params), sep='/')
    meta = checkpoints.metadata(-1, self.layout, self.face_model, self.config)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{_META: np.asarray(json.dumps(meta))},
                        **{f'{_PARAMS}/{name}': value
                           for name, value in leaves.items()})
    image_io.atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)

  @classmethod
  def load_weights(cls, path: str) -> 'Regressor':
    """A regressor from a `save_weights` file.

    Raises:
      ValueError: not such a file, or one for another model or network.
    """
    if not os.path.isfile(path):
      raise ValueError(f'weights file not found: {path}')
    try:
      with np.load(path, allow_pickle=False) as stored:
        meta = json.loads(str(stored[_META]))
        arrays = {name[len(_PARAMS) + 1:]: stored[name]
                  for name in stored.files if name.startswith(_PARAMS + '/')}
    except (OSError, ValueError, KeyError, EOFError) as e:
      raise ValueError(f'{path}: not a weights file of this package '
                       f'({type(e).__name__})') from None
    config = ml_collections.ConfigDict(
        checkpoints.upgrade_config(meta['config']))
    setup = Setup.from_config(config)
    checkpoints.check_compatible(meta, setup.face_model, setup.layout, path)
    expected = jax.eval_shape(setup.init_params, jax.random.PRNGKey(0))
    return cls(setup, _matching(traverse_util.unflatten_dict(arrays, sep='/'),
                                expected, path), config)


WEIGHTS_SUFFIX = '.npz'
_META, _PARAMS = 'meta', 'params'


def _matching(stored: Any, expected: Any, where: str) -> Any:
  if isinstance(expected, dict):
    if not isinstance(stored, dict):
      raise ValueError(f'{where}: parameters do not match this network')
    missing = sorted(set(expected) - set(stored))
    if missing:
      raise ValueError(f'{where}: parameters lack {", ".join(missing)}')
    return {key: _matching(stored[key], value, f'{where}/{key}')
            for key, value in expected.items()}
  if tuple(stored.shape) != tuple(expected.shape):
    raise ValueError(f'{where}: shape {tuple(stored.shape)}, the network '
                     f'needs {tuple(expected.shape)}')
  return jnp.asarray(stored, expected.dtype)
