"""The files of one reconstruction: meshes, compact code, JSON, pictures.

Every function returns {file name: bytes}; `meshes.write_files` writes them
atomically. Mesh formats themselves live in `export`.
"""

import dataclasses
import json
from typing import Dict, Iterator, Optional, Tuple

import jax.numpy as jnp
import numpy as np

from mofa_ml import image_io
from mofa_ml.data import crop
from mofa_ml import metrics as metrics_lib
from mofa_ml.facemodel import arkit
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.export import animation
from mofa_ml.export import meshes
from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh
from mofa_ml.rendering import shading
from mofa_ml.rendering import viz

TEXTURE_SIZE = 1024
OVERLAY_RENDER_SIDE = 640
# The overlays' square canvases (one compiled renderer each): a region is
# drawn on the smallest that holds it (a face: 13 ms at 320, 32 at 480,
# 49 at 640): a 720p video frame's face region (about 430 px) is drawn on
# the 480 canvas.
OVERLAY_CANVAS_SIDES = tuple(OVERLAY_RENDER_SIDE * k // 4 for k in range(1, 5))
# What `face_files` writes.
FACE_FILES = ('mesh_base.ply', 'mesh_base.obj', 'mesh_final.ply',
              'mesh_final.obj', 'textured_final.obj', 'textured_final.mtl',
              'textured_final_albedo.png', animation.GLB, 'code.mofa',
              'reconstruction.json', 'overlay_base.png', 'overlay.png',
              'reflectance.png', 'shading.png', 'lit_sphere.png')


@dataclasses.dataclass
class Reconstruction:
  """One reconstructed face (host arrays).

  Attributes:
    params: FaceParams.
    geometry_offsets, reflectance_offsets: (N, 3) F_g (mm), F_r.
    crop_transform: (2, 3) photo -> crop pixels.
    landmarks_photo: (68, 2) detected landmarks, photo pixels.
    landmark_confidence: (68,).
    metrics: named errors of the fit.
    seconds: time spent.
    blendshapes: the expression fitted as blendshape weights
      (`blendshape_fit`), or None (they follow from the coefficients).
    fallback: what the geometry fell back to and why, where the fit was
      not trusted; None where it was.
  """
  params: layout_lib.FaceParams
  geometry_offsets: np.ndarray
  reflectance_offsets: np.ndarray
  crop_transform: np.ndarray
  landmarks_photo: np.ndarray
  landmark_confidence: Optional[np.ndarray]
  metrics: Dict[str, float]
  seconds: float
  blendshapes: Optional[animation.BlendshapeFace] = None
  fallback: Optional[str] = None


def texture_map(model: fm.FaceModel) -> meshes.TextureMap:
  """The albedo textures' `meshes.TextureMap` (cylindrical UV of the mean
  face, `TEXTURE_SIZE` texels square)."""
  return meshes.texture_map(meshes.cylindrical_uv(np.asarray(
      model.mean_shape)), np.asarray(model.triangles), TEXTURE_SIZE)


def face_files(model: fm.FaceModel, crop_camera: camera.Intrinsics,
               photo: np.ndarray, face: Reconstruction,
               texture: meshes.TextureMap,
               rig: Optional[arkit.BlendshapeRig] = None
               ) -> Dict[str, bytes]:
  """Every output of one face.

  The compact code holds what the parameters are: with a regressor alone,
  the base level, both lights and the corrective coefficients (decoded with
  the checkpoint's corrective space); after per-image fitting, whose
  correctives are free per-vertex fields, the base level and both lights
  (the final level is in the meshes). With the model's blendshape `rig`
  (`arkit.load_rig`), reconstruction.json holds the ARKit weights and the
  .glb their morph targets. `texture` is the model's `texture_map`.
  """
  triangles = np.asarray(model.triangles)
  blendshapes = face.blendshapes
  if rig is not None and blendshapes is None:
    blendshapes = animation.BlendshapeFace(
        *arkit.weights(rig, face.params.expression, arkit.DEFAULT_SPARSITY),
        shape=face.params.shape)
  outputs = {}
  surfaces = levels.surfaces(model, face.params, face.geometry_offsets,
                             face.reflectance_offsets)
  for level, surface in zip(levels.LEVELS, surfaces):
    vertices = np.asarray(surface.vertices)
    albedo = np.clip(np.asarray(surface.reflectance), 0, 1)
    outputs[f'mesh_{level}.ply'] = meshes.ply_bytes(vertices, triangles,
                                                    albedo)
    outputs[f'mesh_{level}.obj'] = meshes.obj_bytes(vertices, triangles,
                                                    albedo)
    if level == 'final':
      uv = meshes.cylindrical_uv(np.asarray(model.mean_shape))
      outputs.update(meshes.textured_obj_files(
          'textured_final', vertices, triangles, uv,
          meshes.bake_texture(texture, albedo)))
      outputs[animation.GLB] = animation.face_glb(
          model, rig, face.params, face.geometry_offsets,
          face.reflectance_offsets, outputs['textured_final_albedo.png'],
          blendshapes)
  layout = layout_lib.ParameterLayout.for_model(
      model, face.params.correctives_geometry.shape[-1],
      face.params.sh_final is not None)
  outputs['code.mofa'] = layout_lib.encode(
      np.asarray(layout.join(face.params)), layout, model.name)
  summary = description(model, crop_camera, face, photo.shape)
  if rig is not None:
    summary['arkit'] = animation.describe_weights(rig, blendshapes)
  outputs['reconstruction.json'] = json.dumps(summary, indent=2).encode()
  for name, picture in pictures(model, crop_camera, photo, face):
    # One photo-sized picture in memory at a time, encoded without a copy.
    outputs[name] = png_bytes(picture, overwrite_input=True)
    del picture
  return outputs


def description(model: fm.FaceModel, crop_camera: camera.Intrinsics,
                face: Reconstruction, photo_shape) -> Dict:
  """JSON-ready pose, light, cameras, landmarks and metrics."""
  params = face.params
  photo_camera = camera.photo_intrinsics(crop_camera, face.crop_transform)
  projected = levels.projected_landmarks(
      model, levels.surfaces(model, params)[0].vertices, params,
      jnp.asarray(face.landmarks_photo, jnp.float32), photo_camera)
  as_list = lambda x: np.asarray(x, np.float64).round(6).tolist()
  return {
      'face_model': model.name,
      'units': {'length': 'mm', 'angles': 'degrees', 'pixels': 'photo'},
      'pose': {
          'pitch_yaw_roll': as_list(np.degrees(params.rotation)),
          'rotation_matrix': as_list(camera.pose_rotation(params.rotation)),
          'translation': as_list(params.translation),
          'convention': 'camera = R model + t; OpenCV camera axes; model '
                        'y up, z towards the viewer',
      },
      'illumination': {'sh_base': as_list(params.sh_base),
                       'sh_final': as_list(levels.final_light(params)),
                       'basis': 'real SH bands 0-2, (9, 3), camera frame'},
      'camera': {
          'photo_size': list(photo_shape[:2]),
          'focal_length_px': float(photo_camera.focal_length),
          'principal_point_px': as_list(photo_camera.principal_point),
          'crop_transform': as_list(face.crop_transform),
          'crop_focal_length_px': float(crop_camera.focal_length),
      },
      'landmarks': {
          'detected': as_list(face.landmarks_photo),
          'confidence': as_list(face.landmark_confidence),
          'model_projected': as_list(projected),
          'nme_model_vs_detected': float(metrics_lib.landmark_nme(
              jnp.asarray(projected), jnp.asarray(face.landmarks_photo))),
      },
      'coefficients': {'shape': as_list(params.shape),
                       'expression': as_list(params.expression),
                       'reflectance': as_list(params.reflectance)},
      'metrics': face.metrics,
      'fallback': face.fallback,
      'seconds': face.seconds,
  }


def pictures(model: fm.FaceModel, crop_camera: camera.Intrinsics,
             photo: np.ndarray, face: Reconstruction
             ) -> Iterator[Tuple[str, np.ndarray]]:
  """(file name, picture) of the overlays on the photo, reflectance,
  shading and the lit sphere, made one at a time."""
  params = face.params
  base, final = levels.surfaces(model, params, face.geometry_offsets,
                                face.reflectance_offsets)
  photo_camera = camera.photo_intrinsics(crop_camera, face.crop_transform)
  yield 'overlay_base.png', overlay_on_photo(model, photo, face, base,
                                             photo_camera)
  yield 'overlay.png', overlay_on_photo(model, photo, face, final,
                                        photo_camera)
  size = crop.CROP_SIZE
  background = np.full((size, size, 3), 0.15, np.float32)
  pose = (params.rotation, params.translation)
  yield 'reflectance.png', viz.render_shaded(
      final.vertices, jnp.clip(final.reflectance, 0, 1), model.triangles,
      *pose, jnp.asarray(shading.AMBIENT_WHITE), crop_camera, size, size,
      background)[0]
  # Shading alone: a grey albedo scaled so the brightest vertex is 0.9.
  normals = mesh.vertex_normals(camera.rigid_transform(
      final.vertices, camera.pose_rotation(params.rotation),
      params.translation), model.triangles)
  peak = jnp.max(shading.irradiance(normals, final.sh))
  yield 'shading.png', viz.render_shaded(
      final.vertices, jnp.full_like(final.reflectance, 0.9) /
      jnp.maximum(peak, 1e-6), model.triangles, *pose, final.sh, crop_camera,
      size, size, background)[0]
  yield 'lit_sphere.png', viz.lit_sphere(final.sh)


def overlay_on_photo(model: fm.FaceModel, photo: np.ndarray,
                     face: Reconstruction, surface: levels.Surface,
                     photo_camera: camera.Intrinsics) -> np.ndarray:
  """(H, W, 3) uint8: the photo with the shaded surface drawn over the
  region around the face's crop.

  Only that region is rendered, at most `OVERLAY_RENDER_SIDE` pixels on a
  side (then scaled up over the photo), so a 50-megapixel photo costs one
  uint8 copy rather than gigabytes of rasterizer buffers.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  height, width = photo.shape[:2]
  inverse = crop.invert_transform(face.crop_transform)
  corners = crop.apply_transform(
      inverse, np.array([[0, 0], [crop.CROP_SIZE - 1] * 2]))
  x0, y0 = np.clip(np.floor(corners[0]).astype(int), 0, [width, height])
  x1, y1 = np.clip(np.ceil(corners[1]).astype(int) + 1, 0, [width, height])
  result = np.array(photo, np.uint8)
  if x1 <= x0 or y1 <= y0:
    return result
  region = photo[y0:y1, x0:x1]
  scale = min(1.0, OVERLAY_RENDER_SIDE / max(region.shape[:2]))
  size = (max(1, round(region.shape[1] * scale)),
          max(1, round(region.shape[0] * scale)))
  scale_xy = np.array([size[0] / region.shape[1], size[1] / region.shape[0]])
  # Pixel centres: x_small = (x - x0 + 0.5) * s - 0.5.
  local = camera.Intrinsics(
      photo_camera.focal_length * jnp.asarray(scale_xy),
      (photo_camera.principal_point - jnp.asarray([x0, y0]) + 0.5) *
      jnp.asarray(scale_xy) - 0.5)
  # Drawn on the smallest square canvas that holds it, so that a run over
  # photos of every size compiles the renderer for three sizes only.
  canvas = next(side for side in OVERLAY_CANVAS_SIDES if side >= max(size))
  rendered, mask = viz.render_shaded(
      surface.vertices, jnp.clip(surface.reflectance, 0.0, 1.0),
      model.triangles, face.params.rotation, face.params.translation,
      surface.sh, local, canvas, canvas)
  rendered = image_io.to_uint8(rendered[:size[1], :size[0]])
  mask = mask[:size[1], :size[0]]
  alpha = mask.astype(np.float32)
  if scale < 1.0:
    full = (region.shape[1], region.shape[0])
    rendered = cv2.resize(rendered, full, interpolation=cv2.INTER_LINEAR)
    alpha = cv2.resize(alpha, full, interpolation=cv2.INTER_LINEAR)
  for top in range(0, region.shape[0], 256):  # bounded float temporaries
    rows = slice(top, top + 256)
    a = alpha[rows, :, None]
    blended = a * rendered[rows] + (1.0 - a) * region[rows]
    result[y0 + top:y0 + top + blended.shape[0], x0:x1] = np.round(
        blended).astype(np.uint8)
  return result


def png_bytes(image: np.ndarray, overwrite_input: bool = False) -> bytes:
  """PNG of an (H, W, 3) image (float in [0, 1] or uint8).

  With `overwrite_input`, a uint8 `image` is turned into OpenCV's BGR order
  in place (its contents are lost) instead of being copied.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  # OpenCV encodes from the array itself (Pillow would first copy it into
  # a 4-byte-per-pixel image). Photo-sized overlays take level 1: 3.4x
  # faster than level 6 on a 1920 x 1080 overlay, for 8% more bytes.
  converted = image_io.to_uint8(image)
  in_place = (overwrite_input or converted is not image) and (
      converted.flags.writeable and converted.flags.c_contiguous)
  bgr = cv2.cvtColor(converted, cv2.COLOR_RGB2BGR,
                     dst=converted if in_place else None)
  level = 1 if bgr.shape[0] * bgr.shape[1] > 250_000 else 6
  ok, encoded = cv2.imencode('.png', bgr,
                             [cv2.IMWRITE_PNG_COMPRESSION, level])
  if not ok:
    raise ValueError(f'PNG encoding failed for an image of {image.shape}')
  return encoded.tobytes()
