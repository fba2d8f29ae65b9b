"""Animation-ready outputs: ARKit weights, the .glb with morph targets and
the Live Link Face CSV of a video.

The .glb's base mesh is the final level with a neutral expression (identity
and correctives); its morph targets are the model's named blendshapes and
its default weights the face's (`blendshape_fit` for photos, the bounded
conversion `arkit.weights` for video frames, whose identity is shared), so
at those weights it shows the reconstruction up to the residual the bounds
cost. A model without named blendshapes (BFM09) gets the fitted final mesh
alone and no weights.
"""

import io
from typing import Dict, NamedTuple, Optional

import jax.numpy as jnp
import numpy as np

from mofa_ml import image_io
from mofa_ml.facemodel import arkit
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.export import meshes
from mofa_ml.export import gltf
from mofa_ml.export import live_link
from mofa_ml.rendering import mesh

GLB = 'face.glb'
LIVE_LINK_CSV = 'live_link.csv'


class BlendshapeFace(NamedTuple):
  """A face's expression as blendshape weights.

  Attributes:
    weights: (K,) in [0, 1].
    residual_mm: RMS over vertices of the geometry's move from the fitted
      expression (and identity) to these weights, mm: what the bounds cost.
    shape: (ms,) the identity coefficients that go with them (the .glb's
      neutral face).
  """
  weights: np.ndarray
  residual_mm: float
  shape: np.ndarray


def describe_weights(rig: arkit.BlendshapeRig,
                     blendshapes: BlendshapeFace) -> Dict:
  """The `arkit` section of reconstruction.json."""
  return {
      'weights': {name: round(float(w), 6)
                  for name, w in zip(rig.names, blendshapes.weights)},
      'bounds_residual_mm': round(blendshapes.residual_mm, 4),
      'bounds_residual': 'RMS over vertices of what holding the weights in '
                         '[0, 1] (and few) moved the fitted geometry, mm',
  }


def texture_png(texture_map: meshes.TextureMap,
                reflectance: np.ndarray) -> bytes:
  """The UV texture of per-vertex albedo (`outputs.texture_map`), PNG."""
  import PIL.Image  # pylint: disable=g-import-not-at-top
  texture = meshes.bake_texture(texture_map,
                                np.clip(np.asarray(reflectance), 0, 1))
  buffer = io.BytesIO()
  PIL.Image.fromarray(image_io.to_uint8(texture)).save(buffer, format='PNG')
  return buffer.getvalue()


def face_glb(model: fm.FaceModel, rig: Optional[arkit.BlendshapeRig],
             params: layout_lib.FaceParams, geometry_offsets: np.ndarray,
             reflectance_offsets: np.ndarray, texture: bytes,
             blendshapes: Optional[BlendshapeFace] = None,
             times: Optional[np.ndarray] = None,
             weights_over_time: Optional[np.ndarray] = None) -> bytes:
  """The .glb of one face (with `rig`: neutral base, blendshape targets at
  the face's weights, optionally animated: (T,) seconds and (T, K)
  weights).

  Args:
    model, rig: the face model and its rig (None: no morph targets).
    params: the face's FaceParams.
    geometry_offsets, reflectance_offsets: (N, 3) final-level correctives.
    texture: PNG bytes of the albedo in `meshes.cylindrical_uv` coordinates.
    blendshapes: the still pose's weights and identity (with a rig).
    times, weights_over_time: an animation, or None.
  """
  if rig is not None:
    params = params._replace(
        shape=jnp.asarray(blendshapes.shape),
        expression=jnp.zeros_like(params.expression))
  final = levels.surfaces(model, params, jnp.asarray(geometry_offsets),
                          jnp.asarray(reflectance_offsets))[1]
  surface = (np.asarray(final.vertices), np.asarray(
      mesh.vertex_normals(final.vertices, model.triangles)),
             np.asarray(model.triangles),
             meshes.cylindrical_uv(np.asarray(model.mean_shape)), texture)
  if rig is None:
    return gltf.glb_bytes(*surface)
  return gltf.glb_bytes(*surface, rig.blendshapes, rig.names,
                        blendshapes.weights, times, weights_over_time)


def video_files(model: fm.FaceModel, rig: Optional[arkit.BlendshapeRig],
                layout: layout_lib.ParameterLayout, vectors: np.ndarray,
                times: np.ndarray, fps: float,
                geometry_offsets: np.ndarray,
                reflectance_offsets: np.ndarray,
                texture_map: meshes.TextureMap) -> Dict[str, np.ndarray]:
  """The animation files of a video and its per-frame weights.

  Args:
    model, rig: the face model and its rig (None: the .glb alone).
    layout: the layout of `vectors`.
    vectors: (T, size) per-frame (smoothed) parameters.
    times: (T,) seconds of each frame in the video.
    fps: the video's own frame rate (timecodes).
    geometry_offsets, reflectance_offsets: (N, 3) shared correctives.
    texture_map: the albedo texture's (`outputs.texture_map`).

  Returns:
    {file name: bytes}, and the (T, K) weights (None without a rig).
  """
  params = [layout.split(jnp.asarray(v)) for v in vectors]
  first = params[0]
  identity = levels.surfaces(model, first._replace(
      expression=jnp.zeros_like(first.expression)),
                             jnp.asarray(geometry_offsets),
                             jnp.asarray(reflectance_offsets))[1]
  texture = texture_png(texture_map, identity.reflectance)
  if rig is None:
    return {GLB: face_glb(model, None, first, geometry_offsets,
                          reflectance_offsets, texture)}, None
  weights, _ = arkit.weights_over_time(
      rig, np.stack([np.asarray(p.expression) for p in params]),
      arkit.DEFAULT_SPARSITY)
  rotations = np.stack([np.asarray(p.rotation) for p in params])
  files = {
      GLB: face_glb(model, rig, first, geometry_offsets, reflectance_offsets,
                    texture, BlendshapeFace(weights[0], 0.0, first.shape),
                    times - times[0], weights),
      LIVE_LINK_CSV: live_link.csv_bytes(rig.names, weights, times, fps,
                                         rotations),
  }
  return files, weights
