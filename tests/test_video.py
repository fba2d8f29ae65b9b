"""The video path: tracking, the identity from several frames, the files."""

import csv
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pygltflib
import pytest

from mofa_ml import image_io
from mofa_ml import samples
from mofa_ml.data import dense_landmarks
from mofa_ml.data import detection
from mofa_ml.data import synthetic
from mofa_ml.export import meshes
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.fitting import fit
from mofa_ml.reconstruction import reconstructor as reconstructor_lib
from mofa_ml.reconstruction import video as video_lib
from mofa_ml.reconstruction import video_tracking
from mofa_ml.rendering import camera
from mofa_ml.rendering import mesh
from mofa_ml.rendering import shading
from mofa_ml.rendering import viz

HEIGHT, WIDTH = 240, 320
PHOTO_CAMERA = camera.Intrinsics(jnp.asarray(600.0, jnp.float32),
                                 jnp.asarray([159.5, 119.5], jnp.float32))
# The clip: the first frame turned 50 degrees, then near-frontal frames
# with the face moving right by 20 px (a fifth of its size) per frame.
YAWS = (50.0, 0.0, 3.0, -3.0, 2.0, -2.0, 0.0, 3.0, 0.0)
SHIFTS_PX = (-60.0, -40.0, -20.0, 0.0, 20.0, 40.0, 60.0, 80.0, 100.0)
NO_FACE = 6      # the fake detector finds nothing in this frame
SECOND_FACE = 3  # from this frame a larger, far face is detected first
SHUFFLED = 8     # no face explains this frame's (shuffled) landmarks


def _detection(marks: np.ndarray) -> detection.Detection:
  box = np.concatenate([marks.min(0), marks.max(0)]).astype(np.float32)
  return detection.Detection(box, 1.0, marks.astype(np.float32),
                             np.ones(lm.NUM_LANDMARKS, np.float32))


class FakeLandmarker:
  """Detections at the rendered truth of the frame most like the one given
  (the clip is re-encoded, so frames are matched, not compared)."""

  def __init__(self, frames, detections):
    self.frames = [f.astype(np.float32) for f in frames]
    self.detections = detections

  def detect(self, frame, min_face_px=None):
    del min_face_px  # every face is found
    k = int(np.argmin([np.abs(frame - f).mean() for f in self.frames]))
    return self.detections[k]

  def follow(self, frame, previous):
    """As the predictor: the face at the previous landmarks, wherever it
    went (`video_tracking.followed` decides whether to trust it)."""
    faces = self.detect(frame)
    if not faces:  # the predictor still answers, far off
      return detection.Detection(np.zeros(4, np.float32), 0.0,
                                 previous + 1000.0, np.ones(68))
    return video_tracking.nearest_face(faces, previous)


def render_frame(model, shape, albedo, yaw_degrees, shift_px,
                 box_px=100.0):
  """(H, W, 3) uint8 frame of the face, and its (68, 2) true landmarks."""
  vertices = model.geometry(shape, jnp.zeros(model.num_expression))
  extent = np.ptp(np.asarray(vertices[model.landmark_vertices]), axis=0)[0]
  focal = float(PHOTO_CAMERA.focal_length)
  distance = focal * extent / box_px
  angles = jnp.radians(jnp.asarray([0.0, yaw_degrees, 0.0]))
  translation = camera.centring_translation(
      vertices, model.landmark_vertices, angles, distance) + jnp.asarray(
          [shift_px * distance / focal, 0.0, 0.0])
  light = shading.directional_light(jnp.asarray([-0.3, -0.3, -0.9]) /
                                    np.sqrt(0.99), jnp.full(3, 0.6),
                                    jnp.full(3, 0.5))
  x = np.linspace(0.3, 0.5, WIDTH, dtype=np.float32)
  background = np.broadcast_to(x[None, :, None], (HEIGHT, WIDTH, 3))
  image, _ = viz.render_shaded(vertices, albedo, model.triangles, angles,
                               translation, light, PHOTO_CAMERA, HEIGHT,
                               WIDTH, background)
  points = camera.rigid_transform(vertices, camera.pose_rotation(angles),
                                  translation)
  normals = mesh.vertex_normals(points, model.triangles)
  indices = model.landmark_vertices.at[jnp.asarray(lm.CONTOUR)].set(
      synthetic.outline_landmarks(model, points, normals))
  marks = camera.project(points, PHOTO_CAMERA)[indices]
  return image_io.to_uint8(image), np.asarray(marks, np.float64)


def write_clip(path, frames):
  import cv2  # pylint: disable=g-import-not-at-top
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 10,
                           (WIDTH, HEIGHT))
  for frame in frames:
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  writer.release()


@pytest.fixture(scope='module')
def clip(ict_model, tmp_path_factory):
  """(video, true landmarks per frame, true shape, the clip's path) of the
  synthetic clip."""
  model = ict_model
  keys = jax.random.split(jax.random.PRNGKey(5), 2)
  shape = 0.8 * jax.random.normal(keys[0], (model.num_shape,)) * (
      model.shape_sigma)
  albedo = jnp.clip(model.reflectance(0.5 * jax.random.normal(
      keys[1], (model.num_reflectance,)) * model.reflectance_sigma), 0, 1)
  frames, truth, detections = [], [], []
  for k, (yaw, shift) in enumerate(zip(YAWS, SHIFTS_PX)):
    image, marks = render_frame(model, shape, albedo, yaw, shift)
    frames.append(image)
    truth.append(marks)
    far = (marks - marks.mean(0)) * 1.3 + marks.mean(0) + [150.0, 0.0]
    if k == SHUFFLED:
      marks = marks[np.random.default_rng(0).permutation(len(marks))]
    detections.append([] if k == NO_FACE else [_detection(marks)]
                      if k < SECOND_FACE or k == SHUFFLED else
                      [_detection(far), _detection(marks)])
  path = str(tmp_path_factory.mktemp('clip') / 'clip.mp4')
  write_clip(path, frames)
  reconstructor = reconstructor_lib.Reconstructor(
      model, None, fit.FitConfig(dense_weight=0.0, final_steps=20))
  reconstructor.rig = None  # the animation files are tested below
  video = video_lib.reconstruct_video(
      reconstructor, path, FakeLandmarker(frames, detections),
      identity_frames=3)
  return video, np.stack(truth), np.asarray(shape), path


def test_identity_comes_from_the_frontal_frames(clip, ict_model):
  video, _, shape, _ = clip
  assert len(video.identity_frames) == 3
  assert 0 not in video.identity_frames.tolist()
  start, stop = video.layout.offsets['shape']
  shared = video.raw_vectors[:, start:stop]
  np.testing.assert_array_equal(shared - shared[:1], 0.0)
  # Measured: 3.9 prior sigmas from the truth, the mean face 7.1.
  sigma = np.asarray(ict_model.shape_sigma)
  assert np.linalg.norm((shared[0] - shape) / sigma) < 0.7 * np.linalg.norm(
      shape / sigma)


def test_a_moving_face_is_followed_on_every_frame(clip):
  video, _, _, _ = clip
  found = video.found
  assert found.tolist() == [k != NO_FACE for k in range(len(YAWS))]
  agreement = video.landmark_agreement
  tracked = found & (np.arange(len(found)) != SHUFFLED)
  assert np.all(agreement[tracked] < video_lib.MAX_DISAGREEMENT), agreement
  assert np.isnan(agreement[NO_FACE])
  assert not video.lost[tracked].any() and not video.refitted[tracked].any()
  # The head moves right in the one camera frame.
  x = video.layout.offsets['translation'][0]
  moves = np.diff(video.raw_vectors[tracked][:, x])
  assert np.all(moves[1:] > 0), moves
  np.testing.assert_allclose(video.landmarks[NO_FACE],
                             video.landmarks[NO_FACE - 1])


def test_a_frame_no_fit_explains_is_refitted_then_lost(clip):
  video, _, _, _ = clip
  assert video.refitted[SHUFFLED] and video.lost[SHUFFLED]
  assert video.landmark_agreement[SHUFFLED] > video_lib.MAX_DISAGREEMENT
  np.testing.assert_array_equal(video.raw_vectors[SHUFFLED],
                                video.raw_vectors[SHUFFLED - 1])


def test_the_tracked_face_is_the_one_nearest_the_previous(clip):
  video, truth, _, _ = clip
  found = video.found & (np.arange(len(video.found)) != SHUFFLED)
  np.testing.assert_allclose(video.landmarks[found], truth[found],
                             atol=1e-4)


def test_the_overlay_video_is_read_back_or_refused(clip, ict_model,
                                                   tmp_path, monkeypatch):
  import cv2  # pylint: disable=g-import-not-at-top
  video, _, _, path = clip
  texture = small_texture_map(ict_model)
  files = video_lib.video_files(ict_model, path, video, 1, texture)
  written = tmp_path / 'overlay.mp4'
  written.write_bytes(files['overlay.mp4'])
  capture = cv2.VideoCapture(str(written))
  assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(YAWS)
  capture.release()
  # A temporary folder OpenCV cannot write into is an error, not a few
  # unplayable bytes.
  handle = os.open(tmp_path / 'placeholder', os.O_CREAT | os.O_WRONLY)
  missing = str(tmp_path / 'gone' / 'overlay.mp4')
  monkeypatch.setattr(video_lib.tempfile, 'mkstemp',
                      lambda **kwargs: (handle, missing))
  with pytest.raises(OSError, match='cannot write the overlay video'):
    video_lib.video_files(ict_model, path, video, 1, texture)


def small_texture_map(model):
  """A 64-texel `TextureMap` of the model (the files' own is 1024)."""
  return meshes.texture_map(meshes.cylindrical_uv(np.asarray(
      model.mean_shape)), np.asarray(model.triangles), 64)


def small_clip(path, frames=5, size=64):
  """A clip of `frames` grey frames, each brighter."""
  import cv2  # pylint: disable=g-import-not-at-top
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 10,
                           (size, size))
  for k in range(frames):
    writer.write(np.full((size, size, 3), 40 * k, np.uint8))
  writer.release()
  return str(path)


class DroppingWriter:
  """cv2.VideoWriter that loses every second frame and says nothing, as
  OpenCV's does on a full disk."""
  real = None

  def __init__(self, *args):
    self.writer, self.frames = DroppingWriter.real(*args), 0

  def isOpened(self):  # pylint: disable=invalid-name
    return self.writer.isOpened()

  def write(self, frame):
    self.frames += 1
    if self.frames % 2:
      self.writer.write(frame)

  def release(self):
    self.writer.release()


def test_the_overlay_is_encoded_in_the_scratch_folder_and_counted(
    tmp_path, monkeypatch):
  import cv2  # pylint: disable=g-import-not-at-top
  path = small_clip(tmp_path / 'clip.mp4')
  scratch = tmp_path / 'results'
  scratch.mkdir()
  seen = []

  def draw(index, frame):
    seen.append(sorted(os.listdir(scratch)))
    return frame

  data = video_lib.overlay_video(path, 1, 10.0, draw, str(scratch))
  assert data[4:8] == b'ftyp' and len(seen) == 5
  assert seen[0][0].startswith('.partial-') and seen[0][0].endswith('.mp4')
  assert not os.listdir(scratch)
  monkeypatch.setattr(DroppingWriter, 'real', cv2.VideoWriter)
  monkeypatch.setattr(cv2, 'VideoWriter', DroppingWriter)
  with pytest.raises(OSError) as error:
    video_lib.overlay_video(path, 1, 10.0, draw, str(scratch))
  assert str(error.value) == (f'{path}: the overlay video holds 3 of its 5 '
                              f'frames (is {scratch} full?)')
  assert not os.listdir(scratch)


def test_a_stop_request_ends_a_video_between_frames(tmp_path):
  path = small_clip(tmp_path / 'clip.mp4')
  drawn = []
  with pytest.raises(video_lib.Stopped):
    video_lib.overlay_video(path, 1, 10.0,
                            lambda index, frame: drawn.append(index) or frame,
                            str(tmp_path), stop=lambda: len(drawn) == 2)
  assert drawn == [0, 1]
  assert sorted(os.listdir(tmp_path)) == ['clip.mp4']  # no .partial-*


def test_nearest_face_and_identity_frames():
  square = np.stack(np.meshgrid(np.arange(8.0), np.arange(8.5)),
                    -1).reshape(-1, 2)[:68] * 10
  previous = square + [100.0, 100.0]
  near = _detection(square * 1.0 + [110.0, 95.0])
  large = _detection(square * 2.0 + [300.0, 100.0])
  assert video_tracking.nearest_face([large, near], previous) is near
  assert video_tracking.nearest_face([large, near], None) is large
  yaw = np.asarray([50.0, 2.0, np.nan, 1.0, 30.0, 5.0, 0.0, 2.0])
  sharp = np.asarray([9.0, 1.0, 0.0, 1.0, 9.0, 0.2, 1.0, 1.0])
  chosen = video_tracking.choose_identity_frames(yaw, sharp, 3)
  # Not the turned (0, 4) nor the faceless (2) frames, one per run of the
  # candidates ([1, 3], [5, 6], [7]): the more frontal 3, the sharp 6.
  assert chosen.tolist() == [3, 6, 7]
  assert video_tracking.choose_identity_frames(
      np.full(4, np.nan), sharp[:4], 3).size == 0


def run_mofa(*args):
  return subprocess.run([sys.executable, '-m', 'mofa_ml.cli', *args],
                        capture_output=True, text=True, timeout=900)


@pytest.mark.heavy
def test_video_shares_identity_smooths_and_writes_an_overlay_video(tmp_path):
  import cv2  # pylint: disable=g-import-not-at-top
  takeo = image_io.to_uint8(image_io.load_image(
      samples.sample_faces()['takeo'].image_path))[:224]
  path = str(tmp_path / 'walk.avi')
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 10,
                           (takeo.shape[1], takeo.shape[0]))
  for shift in range(8):  # the face moves 1 px per frame to the right
    writer.write(cv2.cvtColor(np.roll(takeo, shift, axis=1),
                              cv2.COLOR_RGB2BGR))
  writer.release()
  output = str(tmp_path / 'out')
  result = run_mofa('reconstruct', f'--input={path}', f'--output={output}',
                    '--fit_steps=8,50')
  assert result.returncode == 0, result.stderr
  assert '8 frames, 0 without a face, 0 refitted, 0 lost' in result.stdout
  folder = os.path.join(output, 'walk')
  assert sorted(os.listdir(folder)) == ['face.glb', 'identity_final.ply',
                                        'live_link.csv', 'overlay.mp4',
                                        'parameters.npz']
  with np.load(os.path.join(folder, 'parameters.npz')) as data:
    layout = layout_lib.ParameterLayout(**json.loads(str(data['layout'])))
    vectors, raw = data['vectors'], data['raw_vectors']
    assert data['frames'].tolist() == list(range(8)) and data['found'].all()
    assert not data['lost'].any() and not data['refitted'].any()
    assert np.all(data['landmark_agreement'] < video_lib.MAX_DISAGREEMENT)
    weights = data['arkit_weights']
    assert weights.shape == (8, 53) and data['arkit_names'][26] == 'jawOpen'
  # The animation files: a CSV row and a keyframe per frame, 10 fps.
  with open(os.path.join(folder, 'live_link.csv'), encoding='utf-8') as f:
    rows = list(csv.DictReader(f))
  assert [r['Timecode'] for r in rows[:2]] == ['00:00:00:00.000',
                                               '00:00:00:01.000']
  np.testing.assert_allclose([float(r['JawOpen']) for r in rows],
                             weights[:, 26], atol=1e-6)
  glb = pygltflib.GLTF2.load(os.path.join(folder, 'face.glb'))
  sampler = glb.animations[0].samplers[0]
  times = glb.accessors[sampler.input]
  assert times.count == 8 and times.max == [pytest.approx(0.7)]
  assert glb.accessors[sampler.output].count == 8 * 53
  np.testing.assert_allclose(glb.meshes[0].weights, weights[0], atol=1e-6)
  start, stop = layout.offsets['shape']
  np.testing.assert_array_equal(raw[:, start:stop] - raw[:1, start:stop], 0.0)
  # The head moves right in one camera frame; smoothing removes jitter.
  x = layout.offsets['translation'][0]
  assert raw[-1, x] - raw[0, x] > 5.0  # mm
  jitter = lambda v: np.abs(np.diff(v[:, x], n=2)).mean()
  assert jitter(vectors) < jitter(raw)
  capture = cv2.VideoCapture(os.path.join(folder, 'overlay.mp4'))
  assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
  ok, frame = capture.read()
  assert ok and frame.shape[:2] == takeo.shape[:2]


def test_the_face_mesh_checks_followed_faces_and_is_kept_for_the_fits(
    ict_model):
  # Frame k is filled with 100 + k; the face-mesh network sees no face in
  # frame 1, so its followed face is refused and the detector asked.
  frames = [(k, np.full((64, 64, 3), 100 + k, np.uint8)) for k in range(3)]
  marks = np.stack(np.meshgrid(np.linspace(16, 48, 9), np.linspace(
      16, 48, 8)), -1).reshape(-1, 2)[:lm.NUM_LANDMARKS]
  calls = []

  class Landmarker:

    def detect(self, frame, min_face_px=None):
      del min_face_px
      calls.append(('detect', int(frame[0, 0, 0]) - 100))
      return [_detection(marks)]

    def follow(self, frame, previous):
      calls.append(('follow', int(frame[0, 0, 0]) - 100))
      return _detection(previous)

  def face_mesh(frame, landmarks):
    del landmarks
    k = int(frame[0, 0, 0]) - 100
    return dense_landmarks.DenseLandmarks(
        np.full((dense_landmarks.NUM_POINTS, 2), k, np.float32),
        np.zeros(dense_landmarks.NUM_POINTS, np.float32),
        0.1 if k == 1 else 0.9, None)

  track = video_tracking.track_faces(ict_model, frames, Landmarker(),
                                     face_mesh=face_mesh)
  assert calls == [('detect', 0), ('follow', 1), ('detect', 1),
                   ('follow', 2)]
  assert track.found.all()
  assert [found.points[0, 0] for found in track.face_mesh] == [0, 1, 2]
  assert [found.shows_face for found in track.face_mesh] == [True, False, True]


def test_a_followed_face_is_redetected_at_its_size_or_looked_for_anew():
  landmarker = detection.FaceLandmarker()
  photo = image_io.load_photo(samples.sample_faces()['takeo'].image_path)
  found = landmarker.detect(photo)[0]
  size = video_tracking.face_size(found.landmarks)
  faces = video_tracking.redetected(landmarker, photo, found.landmarks)
  assert len(faces) == 1
  assert np.median(np.linalg.norm(faces[0].landmarks - found.landmarks,
                                  axis=1)) / size < 0.01
  # No face near the one followed: the caller looks for every face.
  assert video_tracking.redetected(landmarker, photo,
                                   found.landmarks + size) == []
  # A face larger than the photo: it is shrunk no further than to the
  # window across its short side (where this photo's face is still found).
  assert len(landmarker.detect(photo, min_face_px=10 * max(photo.shape))) == 1


def test_following_finds_the_detectors_points_and_refuses_big_jumps():
  landmarker = detection.FaceLandmarker()
  photo = image_io.load_photo(samples.sample_faces()['takeo'].image_path)
  found = landmarker.detect(photo)[0]
  size = video_tracking.face_size(found.landmarks)
  # From the points of a frame before, 5% of the face away (measured:
  # back on the face, within 0.003 of the detection).
  followed = video_tracking.followed(landmarker, photo,
                                     found.landmarks + 0.05 * size)
  assert followed is not None
  assert np.median(np.linalg.norm(followed.landmarks - found.landmarks,
                                  axis=1)) / size < 0.01
  # A face half its size in the frame before is not trusted.
  centre = found.landmarks.mean(0)
  shrunk = centre + 0.5 * (found.landmarks - centre)
  assert video_tracking.followed(landmarker, photo, shrunk) is None
