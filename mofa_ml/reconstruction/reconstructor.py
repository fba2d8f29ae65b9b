"""One face of a photo -> its reconstruction and files (`Reconstructor`).

The crop (`data.crop`), parameters from a trained regressor and/or
per-image fitting (`fitting.fit`, with MediaPipe's dense landmarks where
fitting), the reflectance the photo does not show replaced, the ARKit
weights refined, then the files of `export.outputs`. `mofa reconstruct`'s
loop over inputs is `reconstruct.reconstruct_inputs`.
"""

import functools
import time
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from mofa_ml.data import crop
from mofa_ml.data import dense_landmarks as dense_lib
from mofa_ml.export import animation
from mofa_ml.export import outputs
from mofa_ml.facemodel import arkit
from mofa_ml.facemodel import dense_registration
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.fitting import blendshape_fit
from mofa_ml.fitting import fit
from mofa_ml.fitting import least_squares
from mofa_ml.fitting import visibility
from mofa_ml.learning import objective
from mofa_ml.learning import regressor as regressor_lib
from mofa_ml.rendering import camera


# Beyond this disagreement between the two landmark detectors
# (`dense_registration.detector_disagreement`, face-box units) a fit's
# identity and expression are not trusted and the geometry falls back to
# the model's mean. On the real benchmark's photos the two agree within
# 0.05 and on its scan renders within 0.07, where the 68 points failed
# (NME 0.37, fit 1.8x the mean face's error) they disagreed by 0.19.
MAX_DETECTOR_DISAGREEMENT = 0.1


class Reconstructor:
  """Holds the face model, the crop camera, (optionally) a regressor and the
  dense landmark detector."""

  def __init__(self, model: fm.FaceModel,
               regressor: Optional[regressor_lib.Regressor] = None,
               fit_config: Optional[fit.FitConfig] = fit.FitConfig()):
    """
    Args:
      model: the face model.
      regressor: a trained network (`Regressor.load`), or None.
      fit_config: per-image fitting after the regressor; None to skip (only
        with a regressor). With a positive `dense_weight` it fits
        MediaPipe's 468 points too (`data.dense_landmarks`,
        `facemodel.dense_registration`).

    Raises:
      ValueError: nothing to reconstruct with, or a regressor of another
        face model.
    """
    if regressor is None and fit_config is None:
      raise ValueError('without a regressor checkpoint, fitting is needed')
    if regressor is not None and (regressor.face_model.fingerprint() !=
                                  model.fingerprint()):
      raise ValueError('the checkpoint was trained with another face model '
                       f'({regressor.face_model.name})')
    self.model = model
    self.regressor = regressor
    self.fit_config = fit_config
    self.intrinsics = camera.default_intrinsics(crop.CROP_SIZE)
    self.mirror = jnp.asarray(visibility.mirror_vertices(model.mean_shape))
    self.rig = arkit.load_rig(model)
    self.dense_landmarker, self.dense_embedding = None, None
    if fit_config is not None and fit_config.dense_weight > 0:
      registration = dense_registration.load_dense_registration()
      self.dense_landmarker = dense_lib.DenseLandmarker()
      self.landmark_pairs = dense_registration.landmark_pairs(
          registration, np.asarray(model.mean_shape),
          np.asarray(model.triangles), np.asarray(model.landmark_vertices),
          np.asarray(lm.FIXED))
      # Where the points sit on the mesh, once: each face adds its points.
      self.dense_embedding = least_squares.DenseTargets(
          points=None,
          weight=jnp.asarray(dense_registration.point_weights(registration)),
          vertices=jnp.asarray(
              np.asarray(model.triangles)[registration.triangles], jnp.int32),
          barycentrics=jnp.asarray(registration.barycentrics))

  def face_mesh(self, photo: np.ndarray, landmarks: np.ndarray
                ) -> Optional[dense_lib.DenseLandmarks]:
    """The face-mesh network's points for the face with these (68, 2)
    landmarks; None without the network (no dense term)."""
    if self.dense_landmarker is None:
      return None
    return self.dense_landmarker(photo, landmarks)

  def dense_targets(self, photo: np.ndarray, landmarks: np.ndarray,
                    transform: np.ndarray,
                    found: Optional[dense_lib.DenseLandmarks] = None
                    ) -> Tuple[Optional[least_squares.DenseTargets],
                               Optional[float]]:
    """The dense landmarks of the face with these (68, 2) landmarks, in the
    crop of `transform`, and their `detector_disagreement` with the
    landmarks; (None, None) without the network or where it sees no face.
    `found`: its `face_mesh` if already run (a video's tracking pass)."""
    if self.dense_landmarker is None:
      return None, None
    if found is None:
      found = self.face_mesh(photo, landmarks)
    if not found.shows_face:
      return None, None
    return self.dense_embedding._replace(points=jnp.asarray(
        crop.apply_transform(transform, found.points), jnp.float32)), (
            dense_registration.detector_disagreement(
                landmarks, found.points, self.landmark_pairs))

  def is_face(self, photo: np.ndarray, landmarks: np.ndarray) -> bool:
    """Whether the face-mesh network sees a face at these (68, 2) detected
    landmarks (the detector's false positives: a car seat, a pattern); True
    without it."""
    found = self.face_mesh(photo, landmarks)
    return found is None or found.shows_face

  def reconstruct_face(self, photo: np.ndarray, landmarks: np.ndarray,
                       confidence: np.ndarray, blendshapes: bool = True
                       ) -> outputs.Reconstruction:
    """Reconstructs the face with these (68, 2) landmarks in a uint8 photo;
    `blendshapes`: with the refined ARKit weights of the animation files
    (a video's identity frames need none).
    """
    start = time.perf_counter()
    transform = crop.crop_transform(landmarks)
    crop_image = crop.warp_crop(photo, transform).astype(np.float32) / 255.0
    crop_marks = crop.apply_transform(transform, landmarks).astype(np.float32)
    initial, weights, fallback = None, None, None
    if self.regressor is not None:
      prediction = self.regressor.predict(jnp.asarray(crop_image[None]))
      initial = jax.tree_util.tree_map(lambda x: x[0], prediction)
    if self.fit_config is not None:
      dense, disagreement = self.dense_targets(photo, landmarks, transform)
      result = fit.fit_face(self.model, self.intrinsics,
                            jnp.asarray(crop_image), jnp.asarray(crop_marks),
                            jnp.asarray(confidence), self.fit_config, initial,
                            dense)
      face = (result.params, result.geometry_offsets,
              result.reflectance_offsets)
      metrics = {f'start_{k}': float(result.start[k]) for k in
                 ('landmark_error_px', 'photometric_error_base')}
      if disagreement is not None:
        metrics['detector_disagreement'] = disagreement
      terms = result.end
      if disagreement is not None and (
          disagreement > MAX_DETECTOR_DISAGREEMENT):
        fallback = ('the mean face\'s geometry: the 68 landmarks and the '
                    'face-mesh points disagree by '
                    f'{disagreement:.3f} face-box widths (limit '
                    f'{MAX_DETECTOR_DISAGREEMENT})')
        face = _mean_geometry(*face)
        terms = None
      elif self.rig is not None and blendshapes:
        # For the animation outputs only: the meshes and pictures keep the
        # fit, which explains the photo better (docs/results.md).
        refined = self._refine_expression(result, crop_image, crop_marks,
                                          confidence)
        weights = animation.BlendshapeFace(
            weights=np.asarray(refined.weights, np.float64),
            residual_mm=float(refined.change_mm),
            shape=np.asarray(refined.params.shape))
    else:
      face = (initial.params, initial.geometry_offsets,
              initial.reflectance_offsets)
      terms = None
      metrics = {}
    params, geometry, reflectance = face
    # Reflectance the photo does not show (hidden, edge-on) is not kept.
    seen = visibility.seen_weights(self.model, params, geometry,
                                   self.intrinsics, crop.CROP_SIZE,
                                   crop.CROP_SIZE)
    reflectance = visibility.trusted_reflectance_offsets(reflectance, seen,
                                                         self.mirror)
    params, geometry, reflectance = jax.device_get(
        (params, geometry, reflectance))
    if terms is None:
      terms = objective.face_objective(
          self.model, self.intrinsics, objective.LossConfig.for_stage(
              'stage2'), params, jnp.asarray(geometry),
          jnp.asarray(reflectance), jnp.asarray(crop_image),
          jnp.asarray(crop_marks), jnp.asarray(confidence),
          jax.random.PRNGKey(0))
    metrics.update({k: float(terms[k]) for k in objective.METRIC_NAMES})
    return outputs.Reconstruction(
        params, np.asarray(geometry), np.asarray(reflectance), transform,
        np.asarray(landmarks, np.float32), np.asarray(confidence, np.float32),
        metrics, time.perf_counter() - start, weights, fallback)

  def _refine_expression(self, result: fit.FitResult, crop_image, crop_marks,
                         confidence) -> blendshape_fit.Refined:
    """The fitted expression as blendshape weights in [0, 1]
    (`blendshape_fit`), from the bounded conversion of the fit's."""
    start, _ = arkit.weights(self.rig, np.asarray(result.params.expression),
                             arkit.DEFAULT_SPARSITY)
    return blendshape_fit.refine(
        self.model, jnp.asarray(self.rig.to_coefficients, jnp.float32),
        self.intrinsics, self.fit_config.final_loss, result.params,
        result.geometry_offsets, result.reflectance_offsets,
        jnp.asarray(crop_image), jnp.asarray(crop_marks),
        jnp.asarray(confidence), jnp.asarray(start, jnp.float32))

  @functools.cached_property
  def texture_map(self):
    """The model's `outputs.texture_map`, made at the first face's files
    (half a second) and kept for every face and video after."""
    return outputs.texture_map(self.model)

  def files(self, photo: np.ndarray, face: outputs.Reconstruction):
    """{file name: bytes} of every output of one face."""
    return outputs.face_files(self.model, self.intrinsics, photo, face,
                              self.texture_map, self.rig)


def _mean_geometry(params, geometry_offsets, reflectance_offsets):
  """A face's (params, geometry, reflectance) with the model's mean
  identity and a neutral expression, and no geometry correctives; its pose,
  light and reflectance kept."""
  return (params._replace(shape=jnp.zeros_like(params.shape),
                          expression=jnp.zeros_like(params.expression),
                          correctives_geometry=jnp.zeros_like(
                              params.correctives_geometry)),
          jnp.zeros_like(geometry_offsets), reflectance_offsets)
