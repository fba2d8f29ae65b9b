"""Photo -> 3D face reconstruction(s) and their files.

For each face: crop (`data.crop`), parameters from a trained regressor
and/or per-image fitting (`fit`), then meshes at both levels (PLY, OBJ with
vertex colours, textured OBJ + MTL + PNG), the compact code, a JSON of pose,
light, cameras and landmarks, and pictures (overlays on the photo,
reflectance only, shading only, a lit sphere).
"""

import dataclasses
import io
import json
import time
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml import camera
from mofa_ml import export
from mofa_ml import face_model as fm
from mofa_ml import fit
from mofa_ml import formation
from mofa_ml import image_io
from mofa_ml import layout as layout_lib
from mofa_ml import mesh
from mofa_ml import metrics as metrics_lib
from mofa_ml import network
from mofa_ml import objective
from mofa_ml import shading
from mofa_ml import viz
from mofa_ml.data import crop


@dataclasses.dataclass
class Reconstruction:
  """One reconstructed face (host arrays)."""
  params: layout_lib.FaceParams
  geometry_offsets: np.ndarray
  reflectance_offsets: np.ndarray
  crop_transform: np.ndarray          # (2, 3) photo -> crop
  landmarks_photo: np.ndarray         # (68, 2) detected, photo pixels
  landmark_confidence: np.ndarray     # (68,)
  metrics: Dict[str, float]
  seconds: float


def photo_intrinsics(crop_intrinsics: camera.Intrinsics,
                     crop_transform: np.ndarray) -> camera.Intrinsics:
  """The photo's camera given the crop's: crop = s * photo + t."""
  scale = crop_transform[0, 0]
  shift = crop_transform[:, 2]
  return camera.Intrinsics(
      focal_length=jnp.asarray(crop_intrinsics.focal_length / scale),
      principal_point=jnp.asarray(
          (np.asarray(crop_intrinsics.principal_point) - shift) / scale))


def crop_intrinsics(photo_camera: camera.Intrinsics,
                    crop_transform: np.ndarray) -> camera.Intrinsics:
  """Inverse of `photo_intrinsics`: the crop's camera for a photo camera."""
  scale = crop_transform[0, 0]
  return camera.Intrinsics(
      focal_length=jnp.asarray(photo_camera.focal_length * scale),
      principal_point=jnp.asarray(
          np.asarray(photo_camera.principal_point) * scale +
          crop_transform[:, 2]))


class Reconstructor:
  """Holds the face model, the camera and (optionally) a regressor."""

  def __init__(self, model: fm.FaceModel, regressor=None,
               fit_config: Optional[fit.FitConfig] = fit.FitConfig()):
    """
    Args:
      model: the face model.
      regressor: (train.Trainer, params) from `train.load_regressor`, or
        None.
      fit_config: per-image fitting after the regressor; None to skip (only
        with a regressor).
    """
    if regressor is None and fit_config is None:
      raise ValueError('without a regressor checkpoint, fitting is needed')
    if regressor is not None and (regressor[0].face_model.fingerprint() !=
                                  model.fingerprint()):
      raise ValueError('the checkpoint was trained with another face model '
                       f'({regressor[0].face_model.name})')
    self.model = model
    self.regressor = regressor
    self.fit_config = fit_config
    self.intrinsics = camera.default_intrinsics(crop.CROP_SIZE)
    self.uv = export.cylindrical_uv(np.asarray(model.mean_shape))

  def reconstruct_face(self, photo: np.ndarray, landmarks: np.ndarray,
                       confidence: np.ndarray) -> Reconstruction:
    """Reconstructs the face with these landmarks in a uint8 photo."""
    start = time.perf_counter()
    transform = crop.crop_transform(landmarks)
    crop_image = crop.warp_crop(photo, transform).astype(np.float32) / 255.0
    crop_marks = crop.apply_transform(transform, landmarks).astype(np.float32)
    initial = None
    if self.regressor is not None:
      trainer, params = self.regressor
      prediction = trainer.predict(params, jnp.asarray(crop_image[None]))
      initial = jax.tree_util.tree_map(lambda x: x[0], prediction)
    if self.fit_config is not None:
      result = fit.fit_face(self.model, self.intrinsics,
                            jnp.asarray(crop_image), jnp.asarray(crop_marks),
                            jnp.asarray(confidence), self.fit_config, initial)
      face = (result.params, result.geometry_offsets,
              result.reflectance_offsets)
      metrics = {f'start_{k}': float(result.start[k]) for k in
                 ('landmark_error_px', 'photometric_error_base')}
      terms = result.end
    else:
      face = (initial.params, initial.geometry_offsets,
              initial.reflectance_offsets)
      terms = None
      metrics = {}
    params, geometry, reflectance = jax.device_get(face)
    if terms is None:
      terms = objective.face_objective(
          self.model, self.intrinsics, objective.LossConfig.stage2(), params,
          jnp.asarray(geometry), jnp.asarray(reflectance),
          jnp.asarray(crop_image), jnp.asarray(crop_marks),
          jnp.asarray(confidence), jax.random.PRNGKey(0))
    metrics.update({k: float(terms[k]) for k in (
        'landmark_error_px', 'photometric_error_base',
        'photometric_error_final')})
    return Reconstruction(params, np.asarray(geometry),
                          np.asarray(reflectance), transform,
                          np.asarray(landmarks, np.float32),
                          np.asarray(confidence, np.float32), metrics,
                          time.perf_counter() - start)

  def files(self, photo: np.ndarray, face: Reconstruction
            ) -> Dict[str, bytes]:
    """{file name: bytes} of every output of one face.

    The compact code holds what the parameters are: with a regressor alone,
    the base level, both lights and the corrective coefficients (decoded
    with the checkpoint's corrective space); after per-image fitting, whose
    correctives are free per-vertex fields, the base level and both lights
    (the final level is in the meshes).
    """
    model = self.model
    triangles = np.asarray(model.triangles)
    outputs = {}
    for level, offsets in (('base', (None, None)),
                           ('final', (face.geometry_offsets,
                                      face.reflectance_offsets))):
      vertices, albedo, _ = formation.level_surface(model, face.params,
                                                    *offsets)
      vertices, albedo = np.asarray(vertices), np.clip(np.asarray(albedo),
                                                       0, 1)
      outputs[f'mesh_{level}.ply'] = export.ply_bytes(vertices, triangles,
                                                      albedo)
      outputs[f'mesh_{level}.obj'] = export.obj_bytes(vertices, triangles,
                                                      albedo)
      if level == 'final':
        texture = export.bake_texture(self.uv, triangles, albedo, 1024)
        outputs.update(export.textured_obj_files(
            'textured_final', vertices, triangles, self.uv, texture))
    layout = layout_lib.ParameterLayout.for_model(
        model, face.params.correctives_geometry.shape[-1],
        face.params.sh_final is not None)
    outputs['code.mofa'] = layout_lib.encode(
        np.asarray(layout.join(face.params)), layout, model.name)
    outputs['reconstruction.json'] = json.dumps(
        self.description(face, photo.shape), indent=2).encode()
    for name, picture in self.pictures(photo, face).items():
      outputs[name] = _png(picture)
    return outputs

  def description(self, face: Reconstruction, photo_shape) -> Dict:
    """JSON-ready pose, light, cameras, landmarks and metrics."""
    params = face.params
    photo_camera = photo_intrinsics(self.intrinsics, face.crop_transform)
    points = camera.rigid_transform(
        formation.level_surface(self.model, params)[0],
        camera.pose_rotation(params.rotation), params.translation)
    projected = camera.project(points, photo_camera)[
        np.asarray(self.model.landmark_vertices)]
    as_list = lambda x: np.asarray(x, np.float64).round(6).tolist()
    return {
        'face_model': self.model.name,
        'units': {'length': 'mm', 'angles': 'degrees', 'pixels': 'photo'},
        'pose': {
            'pitch_yaw_roll': as_list(np.degrees(params.rotation)),
            'rotation_matrix': as_list(camera.pose_rotation(params.rotation)),
            'translation': as_list(params.translation),
            'convention': 'camera = R model + t; OpenCV camera axes; model '
                          'y up, z towards the viewer',
        },
        'illumination': {'sh_base': as_list(params.sh_base),
                         'sh_final': as_list(params.sh_final),
                         'basis': 'real SH bands 0-2, (9, 3), camera frame'},
        'camera': {
            'photo_size': list(photo_shape[:2]),
            'focal_length_px': float(photo_camera.focal_length),
            'principal_point_px': as_list(photo_camera.principal_point),
            'crop_transform': as_list(face.crop_transform),
            'crop_focal_length_px': float(self.intrinsics.focal_length),
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

  def pictures(self, photo: np.ndarray, face: Reconstruction
               ) -> Dict[str, np.ndarray]:
    """Overlays on the photo, reflectance, shading and the lit sphere."""
    model, params = self.model, face.params
    final = (face.geometry_offsets, face.reflectance_offsets)
    pictures = {}
    for name, offsets in (('overlay_base.png', (None, None)),
                          ('overlay.png', final)):
      pictures[name] = self.overlay_on_photo(photo, face, *offsets)
    intrinsics, size = self.intrinsics, crop.CROP_SIZE
    background = np.full((size, size, 3), 0.15, np.float32)
    vertices, albedo, sh = formation.level_surface(model, params, *final)
    pose = (params.rotation, params.translation)
    pictures['reflectance.png'], _ = viz.render_shaded(
        vertices, jnp.clip(albedo, 0, 1), model.triangles, *pose,
        jnp.asarray(shading.AMBIENT_WHITE), intrinsics, size, size,
        background)
    # Shading alone: a grey albedo scaled so the brightest vertex is 0.9.
    normals = mesh.vertex_normals(camera.rigid_transform(
        vertices, camera.pose_rotation(params.rotation), params.translation),
                                  model.triangles)
    peak = jnp.max(shading.irradiance(normals, sh))
    pictures['shading.png'], _ = viz.render_shaded(
        vertices, jnp.full_like(albedo, 0.9) / jnp.maximum(peak, 1e-6),
        model.triangles, *pose, sh, intrinsics, size, size, background)
    pictures['lit_sphere.png'] = lit_sphere(sh)
    return pictures

  def overlay_on_photo(self, photo, face, geometry=None, reflectance=None,
                       photo_camera=None):
    """The shaded face drawn over the photo region around the crop (in the
    crop's own photo camera unless `photo_camera` is given)."""
    height, width = photo.shape[:2]
    inverse = crop.invert_transform(face.crop_transform)
    corners = crop.apply_transform(
        inverse, np.array([[0, 0], [crop.CROP_SIZE - 1] * 2]))
    x0, y0 = np.clip(np.floor(corners[0]).astype(int), 0, [width, height])
    x1, y1 = np.clip(np.ceil(corners[1]).astype(int) + 1, 0, [width, height])
    region = photo[y0:y1, x0:x1].astype(np.float32) / 255.0
    full = photo_camera or photo_intrinsics(self.intrinsics,
                                            face.crop_transform)
    local = camera.Intrinsics(full.focal_length,
                              full.principal_point - jnp.asarray([x0, y0]))
    drawn = viz.overlay(region, self.model, face.params, local, geometry,
                        reflectance)
    result = photo.astype(np.float32) / 255.0
    result[y0:y1, x0:x1] = drawn
    return result


def lit_sphere(sh: jax.Array, size: int = 160) -> np.ndarray:
  """A white sphere under the recovered light (camera frame)."""
  unit, triangles = mesh.icosphere(4)
  sphere = jnp.asarray(unit * 70.0, jnp.float32)
  image, _ = viz.render_shaded(
      sphere, jnp.full_like(sphere, 0.8), jnp.asarray(triangles),
      jnp.zeros(3), jnp.asarray([0.0, 0.0, 1500.0]), sh,
      camera.default_intrinsics(size), size, size,
      np.full((size, size, 3), 0.15, np.float32))
  return image


def _png(image: np.ndarray) -> bytes:
  import PIL.Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  PIL.Image.fromarray(image_io.to_uint8(image)).save(buffer, format='PNG')
  return buffer.getvalue()


@dataclasses.dataclass
class VideoReconstruction:
  """Per-frame results of one video; identity is shared by all frames.

  Attributes:
    frames: (T,) frame indices.
    found: (T,) bool, a face was detected (else the previous frame's
      parameters are carried over).
    vectors: (T, size) parameter vectors (`layout`), after smoothing.
    raw_vectors: (T, size) before smoothing.
    landmarks: (T, 68, 2) detected landmarks, photo pixels.
    crop_transforms: (T, 2, 3).
    geometry_offsets, reflectance_offsets: (N, 3) shared correctives.
    layout: the vectors' layout.
    fps: frames per second of the sampled sequence.
    photo_camera: the one camera of all frames (the first face's crop
      camera in photo pixels), so poses share a frame and can be smoothed.
  """
  frames: np.ndarray
  found: np.ndarray
  vectors: np.ndarray
  raw_vectors: np.ndarray
  landmarks: np.ndarray
  crop_transforms: np.ndarray
  geometry_offsets: np.ndarray
  reflectance_offsets: np.ndarray
  layout: layout_lib.ParameterLayout
  fps: float
  photo_camera: camera.Intrinsics


def read_video_frames(path: str, frame_step: int = 1):
  """Yields (index, RGB uint8 frame) of every `frame_step`-th frame."""
  import cv2  # pylint: disable=g-import-not-at-top
  capture = cv2.VideoCapture(path)
  if not capture.isOpened():
    raise ValueError(f'{path}: not a readable video')
  index = 0
  try:
    while True:
      ok, frame = capture.read()
      if not ok:
        break
      if index % frame_step == 0:
        yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
      index += 1
  finally:
    capture.release()


def video_fps(path: str) -> float:
  import cv2  # pylint: disable=g-import-not-at-top
  capture = cv2.VideoCapture(path)
  fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
  capture.release()
  return float(fps)


# Parameter groups that vary per frame and are smoothed over time.
SMOOTHED_GROUPS = ('rotation', 'translation', 'expression')


def smooth_vectors(vectors: np.ndarray, layout: layout_lib.ParameterLayout,
                   sigma_frames: float) -> np.ndarray:
  """Gaussian smoothing over time of pose and expression (other groups are
  left as they are); sigma 0 returns the input."""
  if sigma_frames <= 0 or len(vectors) < 2:
    return vectors.copy()
  import scipy.ndimage  # pylint: disable=g-import-not-at-top
  smoothed = vectors.copy()
  for name in SMOOTHED_GROUPS:
    start, stop = layout.offsets[name]
    smoothed[:, start:stop] = scipy.ndimage.gaussian_filter1d(
        vectors[:, start:stop], sigma_frames, axis=0, mode='nearest')
  return smoothed


def reconstruct_video(reconstructor: Reconstructor, path: str, landmarker,
                      frame_step: int = 1, smooth_sigma: float = 1.5,
                      frame_config: fit.FitConfig = fit.FitConfig(
                          base_steps=60, final_steps=30, fixed_identity=True),
                      progress: bool = False) -> VideoReconstruction:
  """Fits every sampled frame; the first frame with a face fixes identity.

  The first face is reconstructed like a photo (identity free); later
  frames start from the previous frame and fit pose, expression and light
  only (`frame_config`). Pose and expression are then smoothed in time.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  model = reconstructor.model
  layout = fit.fit_layout(model)
  rows = {k: [] for k in ('frames', 'found', 'vectors', 'landmarks',
                          'crop_transforms')}
  previous = None
  for index, frame in tqdm.tqdm(read_video_frames(path, frame_step),
                                unit='frame', disable=not progress):
    faces = landmarker.detect(frame)
    if faces:
      face = faces[0]
      if previous is None:
        result = reconstructor.reconstruct_face(frame, face.landmarks,
                                                face.point_confidence)
        previous = (result.params, result.geometry_offsets,
                    result.reflectance_offsets)
        transform = result.crop_transform
        photo_camera = photo_intrinsics(reconstructor.intrinsics, transform)
      else:
        transform = crop.crop_transform(face.landmarks)
        image = crop.warp_crop(frame, transform).astype(np.float32) / 255
        marks = crop.apply_transform(transform, face.landmarks)
        start = network.Prediction(*previous)
        fitted = fit.fit_face(model, crop_intrinsics(photo_camera, transform),
                              jnp.asarray(image), jnp.asarray(marks,
                                                              jnp.float32),
                              jnp.asarray(face.point_confidence),
                              frame_config, start)
        previous = jax.device_get((fitted.params, previous[1], previous[2]))
      rows['landmarks'].append(face.landmarks)
      rows['crop_transforms'].append(transform)
    elif previous is not None:
      rows['landmarks'].append(rows['landmarks'][-1])
      rows['crop_transforms'].append(rows['crop_transforms'][-1])
    else:
      continue  # no face yet: nothing to carry over
    rows['frames'].append(index)
    rows['found'].append(bool(faces))
    rows['vectors'].append(np.asarray(layout.join(previous[0])))
  if previous is None:
    raise ValueError(f'{path}: no face found in any sampled frame')
  raw = np.stack(rows['vectors'])
  return VideoReconstruction(
      frames=np.asarray(rows['frames']), found=np.asarray(rows['found']),
      vectors=smooth_vectors(raw, layout, smooth_sigma), raw_vectors=raw,
      landmarks=np.stack(rows['landmarks']).astype(np.float32),
      crop_transforms=np.stack(rows['crop_transforms']),
      geometry_offsets=np.asarray(previous[1]),
      reflectance_offsets=np.asarray(previous[2]), layout=layout,
      fps=video_fps(path) / frame_step, photo_camera=photo_camera)


def video_files(reconstructor: Reconstructor, path: str,
                video: VideoReconstruction, frame_step: int
                ) -> Dict[str, bytes]:
  """parameters.npz, identity meshes and overlay.mp4 of a video."""
  import os  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  import cv2  # pylint: disable=g-import-not-at-top
  model = reconstructor.model
  buffer = io.BytesIO()
  np.savez(buffer, frames=video.frames, found=video.found,
           vectors=video.vectors, raw_vectors=video.raw_vectors,
           landmarks=video.landmarks, crop_transforms=video.crop_transforms,
           geometry_offsets=video.geometry_offsets,
           reflectance_offsets=video.reflectance_offsets,
           layout=json.dumps(dataclasses.asdict(video.layout)),
           focal_length_px=float(video.photo_camera.focal_length),
           principal_point_px=np.asarray(video.photo_camera.principal_point),
           face_model=model.name)
  outputs = {'parameters.npz': buffer.getvalue()}
  first = video.layout.split(jnp.asarray(video.vectors[0]))
  neutral = first._replace(expression=jnp.zeros_like(first.expression))
  vertices, albedo, _ = formation.level_surface(
      model, neutral, video.geometry_offsets, video.reflectance_offsets)
  outputs['identity_final.ply'] = export.ply_bytes(
      np.asarray(vertices), np.asarray(model.triangles),
      np.clip(np.asarray(albedo), 0, 1))
  writer, temporary = None, None
  by_frame = {int(f): k for k, f in enumerate(video.frames)}
  try:
    for index, frame in read_video_frames(path, frame_step):
      if writer is None:
        handle, temporary = tempfile.mkstemp(suffix='.mp4')
        os.close(handle)
        writer = cv2.VideoWriter(temporary, cv2.VideoWriter_fourcc(*'mp4v'),
                                 video.fps, (frame.shape[1], frame.shape[0]))
      picture = frame.astype(np.float32) / 255.0
      if index in by_frame:
        k = by_frame[index]
        face = Reconstruction(
            video.layout.split(jnp.asarray(video.vectors[k])),
            video.geometry_offsets, video.reflectance_offsets,
            video.crop_transforms[k], video.landmarks[k], None, {}, 0.0)
        picture = reconstructor.overlay_on_photo(
            frame, face, video.geometry_offsets, video.reflectance_offsets,
            video.photo_camera)
      writer.write(cv2.cvtColor(image_io.to_uint8(picture),
                                cv2.COLOR_RGB2BGR))
    writer.release()
    writer = None
    with open(temporary, 'rb') as f:
      outputs['overlay.mp4'] = f.read()
  finally:
    if writer is not None:
      writer.release()
    if temporary and os.path.exists(temporary):
      os.remove(temporary)
  return outputs
