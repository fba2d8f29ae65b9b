"""What a training run writes besides checkpoints: the metrics log and the
image rows of its TensorBoard summaries."""

import json
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.facemodel import levels
from mofa_ml.rendering import viz


def truncate_metrics(path: str, step: int):
  """Drops logged records after `step` (a resumed run logs them again), so
  a resumed run's log equals an uninterrupted one's."""
  if not os.path.exists(path):
    return
  with open(path, encoding='utf-8') as f:
    lines = [line for line in f if line.strip()]
  kept = [line for line in lines if json.loads(line)['step'] <= step]
  if len(kept) != len(lines):
    with open(path, 'w', encoding='utf-8') as f:
      f.writelines(kept)


def image_rows(setup, params: Any, batch: Mapping[str, np.ndarray],
               count: int = 3) -> np.ndarray:
  """Rows of input | base overlay | final overlay, (H', W', 3) in [0, 1].

  Args:
    setup: the run's `regressor.Setup`.
    params: the network's parameters.
    batch: 'image' (B, S, S, 3) uint8; the first `count` faces are shown.
  """
  images = np.asarray(batch['image'][:count], np.float32) / 255.0
  prediction = jax.device_get(setup.predict(params, jnp.asarray(images)))
  rows = []
  for index, image in enumerate(images):
    face = jax.tree_util.tree_map(lambda x, i=index: x[i], prediction)
    surfaces = levels.surfaces(setup.face_model, face.params,
                               face.geometry_offsets, face.reflectance_offsets)
    rows.append(viz.side_by_side([image] + [
        viz.overlay(image, surface, setup.face_model.triangles, face.params,
                    setup.intrinsics) for surface in surfaces]))
  return np.concatenate(rows, axis=0)
