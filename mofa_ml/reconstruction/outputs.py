"""The files of one reconstruction: meshes, compact code, JSON, pictures.

Every function returns {file name: bytes}; `export.write_files` writes them
atomically. Mesh formats themselves live in `export`.
"""

import dataclasses
import io
import json
from typing import Dict, Optional

import jax.numpy as jnp
import numpy as np

from mofa_ml import image_io
from mofa_ml.data import crop
from mofa_ml.evaluation import metrics as metrics_lib
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.facemodel import levels
from mofa_ml.reconstruction import export
from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh
from mofa_ml.rendering import shading
from mofa_ml.rendering import viz

TEXTURE_SIZE = 1024


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
  """
  params: layout_lib.FaceParams
  geometry_offsets: np.ndarray
  reflectance_offsets: np.ndarray
  crop_transform: np.ndarray
  landmarks_photo: np.ndarray
  landmark_confidence: Optional[np.ndarray]
  metrics: Dict[str, float]
  seconds: float


def face_files(model: fm.FaceModel, crop_camera: camera.Intrinsics,
               photo: np.ndarray, face: Reconstruction) -> Dict[str, bytes]:
  """Every output of one face.

  The compact code holds what the parameters are: with a regressor alone,
  the base level, both lights and the corrective coefficients (decoded with
  the checkpoint's corrective space); after per-image fitting, whose
  correctives are free per-vertex fields, the base level and both lights
  (the final level is in the meshes).
  """
  triangles = np.asarray(model.triangles)
  outputs = {}
  surfaces = levels.surfaces(model, face.params, face.geometry_offsets,
                             face.reflectance_offsets)
  for level, surface in zip(levels.LEVELS, surfaces):
    vertices = np.asarray(surface.vertices)
    albedo = np.clip(np.asarray(surface.reflectance), 0, 1)
    outputs[f'mesh_{level}.ply'] = export.ply_bytes(vertices, triangles,
                                                    albedo)
    outputs[f'mesh_{level}.obj'] = export.obj_bytes(vertices, triangles,
                                                    albedo)
    if level == 'final':
      uv = export.cylindrical_uv(np.asarray(model.mean_shape))
      texture = export.bake_texture(uv, triangles, albedo, TEXTURE_SIZE)
      outputs.update(export.textured_obj_files(
          'textured_final', vertices, triangles, uv, texture))
  layout = layout_lib.ParameterLayout.for_model(
      model, face.params.correctives_geometry.shape[-1],
      face.params.sh_final is not None)
  outputs['code.mofa'] = layout_lib.encode(
      np.asarray(layout.join(face.params)), layout, model.name)
  outputs['reconstruction.json'] = json.dumps(
      description(model, crop_camera, face, photo.shape), indent=2).encode()
  for name, picture in pictures(model, crop_camera, photo, face).items():
    outputs[name] = png_bytes(picture)
  return outputs


def description(model: fm.FaceModel, crop_camera: camera.Intrinsics,
                face: Reconstruction, photo_shape) -> Dict:
  """JSON-ready pose, light, cameras, landmarks and metrics."""
  params = face.params
  photo_camera = camera.photo_intrinsics(crop_camera, face.crop_transform)
  points = camera.rigid_transform(
      levels.surfaces(model, params)[0].vertices,
      camera.pose_rotation(params.rotation), params.translation)
  projected = camera.project(points, photo_camera)[
      np.asarray(model.landmark_vertices)]
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
      'seconds': face.seconds,
  }


def pictures(model: fm.FaceModel, crop_camera: camera.Intrinsics,
             photo: np.ndarray, face: Reconstruction
             ) -> Dict[str, np.ndarray]:
  """Overlays on the photo, reflectance, shading and the lit sphere."""
  params = face.params
  base, final = levels.surfaces(model, params, face.geometry_offsets,
                                face.reflectance_offsets)
  photo_camera = camera.photo_intrinsics(crop_camera, face.crop_transform)
  result = {
      'overlay_base.png': overlay_on_photo(model, photo, face, base,
                                           photo_camera),
      'overlay.png': overlay_on_photo(model, photo, face, final,
                                      photo_camera),
  }
  size = crop.CROP_SIZE
  background = np.full((size, size, 3), 0.15, np.float32)
  pose = (params.rotation, params.translation)
  result['reflectance.png'], _ = viz.render_shaded(
      final.vertices, jnp.clip(final.reflectance, 0, 1), model.triangles,
      *pose, jnp.asarray(shading.AMBIENT_WHITE), crop_camera, size, size,
      background)
  # Shading alone: a grey albedo scaled so the brightest vertex is 0.9.
  normals = mesh.vertex_normals(camera.rigid_transform(
      final.vertices, camera.pose_rotation(params.rotation),
      params.translation), model.triangles)
  peak = jnp.max(shading.irradiance(normals, final.sh))
  result['shading.png'], _ = viz.render_shaded(
      final.vertices, jnp.full_like(final.reflectance, 0.9) /
      jnp.maximum(peak, 1e-6), model.triangles, *pose, final.sh, crop_camera,
      size, size, background)
  result['lit_sphere.png'] = viz.lit_sphere(final.sh)
  return result


def overlay_on_photo(model: fm.FaceModel, photo: np.ndarray,
                     face: Reconstruction, surface: levels.Surface,
                     photo_camera: camera.Intrinsics) -> np.ndarray:
  """(H, W, 3) float photo with the shaded surface drawn over the region
  around the face's crop (rendering only that region keeps it fast)."""
  height, width = photo.shape[:2]
  inverse = crop.invert_transform(face.crop_transform)
  corners = crop.apply_transform(
      inverse, np.array([[0, 0], [crop.CROP_SIZE - 1] * 2]))
  x0, y0 = np.clip(np.floor(corners[0]).astype(int), 0, [width, height])
  x1, y1 = np.clip(np.ceil(corners[1]).astype(int) + 1, 0, [width, height])
  region = photo[y0:y1, x0:x1].astype(np.float32) / 255.0
  local = camera.Intrinsics(
      photo_camera.focal_length,
      photo_camera.principal_point - jnp.asarray([x0, y0]))
  result = photo.astype(np.float32) / 255.0
  result[y0:y1, x0:x1] = viz.overlay(region, surface, model.triangles,
                                     face.params, local)
  return result


def png_bytes(image: np.ndarray) -> bytes:
  import PIL.Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  PIL.Image.fromarray(image_io.to_uint8(image)).save(buffer, format='PNG')
  return buffer.getvalue()
