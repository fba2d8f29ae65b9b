"""ARKit weights, the Live Link Face CSV and the .glb with morph targets."""

import csv
import io

import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from mofa_ml.facemodel import arkit
from mofa_ml.export import animation
from mofa_ml.fitting import fit
from mofa_ml.export import gltf
from mofa_ml.export import live_link
from mofa_ml.export import meshes


@pytest.fixture(scope='module')
def rig(ict_model):
  return arkit.load_rig(ict_model)


def offsets_rms(rig, a, b):
  """RMS over vertices of the offset between two weight vectors, mm."""
  difference = np.einsum('k,knd->nd', a - b, rig.blendshapes)
  return np.sqrt(np.mean(np.sum(difference**2, -1)))


def test_rig_is_the_arkit_set_and_absent_for_other_models(ict_model, rig):
  assert len(rig.names) == 53 and rig.names[0] == 'browDown_L'
  assert {'jawOpen', 'eyeBlink_L', 'browInnerUp_R'} <= set(rig.names)
  assert rig.blendshapes.shape == (53, ict_model.num_vertices, 3)
  assert arkit.load_rig(ict_model.replace(name='bfm09')) is None


def test_weights_of_known_weights_are_recovered_exactly(rig):
  truth = np.zeros(53)
  truth[[rig.names.index('jawOpen'), rig.names.index('eyeBlink_R')]] = (
      0.7, 0.35)
  expression = truth @ rig.to_coefficients
  weights, residual = arkit.weights(rig, expression)
  np.testing.assert_allclose(weights, truth, atol=1e-6)
  assert residual < 1e-6


def test_bounds_hold_and_the_residual_is_what_they_cost(ict_model, rig):
  rng = np.random.default_rng(0)
  expression = rng.normal(size=53) * np.asarray(ict_model.expression_sigma)
  weights, residual = arkit.weights(rig, expression)
  assert weights.min() >= 0.0 and weights.max() <= 1.0
  unbounded = expression @ rig.to_weights
  assert unbounded.min() < 0.0 or unbounded.max() > 1.0
  assert residual == pytest.approx(offsets_rms(rig, weights, unbounded),
                                   rel=1e-4)
  # No other point of the box is nearer in vertex offsets.
  for _ in range(20):
    other = np.clip(weights + rng.normal(size=53) * 0.05, 0.0, 1.0)
    assert offsets_rms(rig, other, unbounded) >= residual - 1e-6
  sparse, sparse_residual = arkit.weights(rig, expression, 0.3)
  assert sparse.sum() < weights.sum() and sparse_residual > residual
  over_time, residuals = arkit.weights_over_time(
      rig, np.stack([expression, 0 * expression]))
  np.testing.assert_allclose(over_time[0], weights)
  np.testing.assert_array_equal(over_time[1], 0.0)
  np.testing.assert_allclose(residuals, [residual, 0.0])


def test_live_link_csv_layout(rig):
  weights = np.zeros((3, 53))
  weights[:, rig.names.index('browInnerUp_L')] = 0.2
  weights[:, rig.names.index('browInnerUp_R')] = 0.6
  weights[:, rig.names.index('jawOpen')] = [0.1, 0.5, 0.9]
  rotations = np.tile([0.1, -0.2, 0.3], (3, 1))  # pitch, yaw, roll
  text = live_link.csv_bytes(rig.names, weights, np.array([0.0, 1.5, 61.25]),
                             30.0, rotations).decode()
  rows = list(csv.reader(io.StringIO(text)))
  header = rows[0]
  assert header[:4] == ['Timecode', 'BlendShapeCount', 'EyeBlinkLeft',
                        'EyeLookDownLeft']
  assert len(header) == 63 and header[-9:-6] == ['HeadYaw', 'HeadPitch',
                                                 'HeadRoll']
  assert [r[0] for r in rows[1:]] == ['00:00:00:00.000', '00:00:01:15.000',
                                      '00:01:01:07.500']
  values = {name: [float(r[k]) for r in rows[1:]]
            for k, name in enumerate(header) if k > 0}
  assert values['BlendShapeCount'] == [61.0] * 3
  assert values['JawOpen'] == [0.1, 0.5, 0.9]
  assert values['BrowInnerUp'] == pytest.approx([0.4] * 3)
  assert values['TongueOut'] == [0.0] * 3 and values['LeftEyeYaw'] == [0.0] * 3
  assert (values['HeadYaw'][0], values['HeadPitch'][0],
          values['HeadRoll'][0]) == (-0.2, 0.1, 0.3)
  assert live_link.live_link_name('mouthSmile_R') == 'MouthSmileRight'


def _png(size=8):
  import PIL.Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  PIL.Image.new('RGB', (size, size), (200, 120, 90)).save(buffer, 'PNG')
  return buffer.getvalue()


def test_glb_round_trips_with_named_targets_weights_texture_and_animation():
  import pygltflib  # pylint: disable=g-import-not-at-top
  vertices = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [10, 10, 5]],
                      np.float32)
  triangles = np.array([[0, 1, 2], [1, 3, 2]])
  uv = vertices[:, :2] / 10
  targets = np.stack([np.eye(4, 3) * 2, np.ones((4, 3))]).astype(np.float32)
  track = np.array([[0.0, 0.5], [1.0, 0.25], [0.5, 0.0]])
  normals = np.tile([0.0, 0.0, 1.0], (4, 1))
  data = gltf.glb_bytes(vertices, normals, triangles, uv, _png(), targets,
                        ('jawOpen', 'eyeBlink_L'), np.array([0.25, 0.75]),
                        np.array([0.0, 0.1, 0.2]), track)
  document = pygltflib.GLTF2.load_from_bytes(data)
  mesh = document.meshes[0]
  assert mesh.extras['targetNames'] == ['jawOpen', 'eyeBlink_L']
  assert mesh.weights == [0.25, 0.75]
  assert len(mesh.primitives[0].targets) == 2
  assert document.images[0].mimeType == 'image/png'
  material = document.materials[0]
  assert material.pbrMetallicRoughness.baseColorTexture.index == 0
  sampler = document.animations[0].samplers[0]
  assert document.accessors[sampler.input].count == 3
  assert document.accessors[sampler.output].count == 3 * 2
  assert document.animations[0].channels[0].target.path == 'weights'
  scene = trimesh.load(io.BytesIO(data), file_type='glb', process=False)
  loaded = next(iter(scene.geometry.values()))
  np.testing.assert_allclose(loaded.vertices, vertices * gltf.MM_TO_M,
                             atol=1e-7)
  assert loaded.faces.shape == (2, 3)
  assert loaded.visual.material.baseColorTexture.size == (8, 8)


def test_face_glb_of_the_model(ict_model, rig):
  import pygltflib  # pylint: disable=g-import-not-at-top
  layout = fit.fit_layout(ict_model)
  params = layout.split(jnp.zeros(layout.size))
  zeros = np.zeros((ict_model.num_vertices, 3))
  weights = np.linspace(0.0, 1.0, 53)
  data = animation.face_glb(ict_model, rig, params, zeros, zeros, _png(),
                            animation.BlendshapeFace(weights, 0.0,
                                                     params.shape))
  document = pygltflib.GLTF2.load_from_bytes(data)
  mesh = document.meshes[0]
  assert mesh.extras['targetNames'] == list(rig.names)
  np.testing.assert_allclose(mesh.weights, weights)
  position = document.accessors[mesh.primitives[0].attributes.POSITION]
  assert position.count == ict_model.num_vertices
  np.testing.assert_allclose(
      position.max, np.asarray(ict_model.mean_shape).max(0) * gltf.MM_TO_M,
      rtol=1e-5)
  plain = pygltflib.GLTF2.load_from_bytes(animation.face_glb(
      ict_model, None, params, zeros, zeros, _png()))
  assert not plain.meshes[0].primitives[0].targets


def test_video_files_without_a_rig_are_the_glb_alone(ict_model, rig):
  import pygltflib  # pylint: disable=g-import-not-at-top
  layout = fit.fit_layout(ict_model)
  vectors = np.zeros((3, layout.size), np.float32)
  zeros = np.zeros((ict_model.num_vertices, 3))
  times = np.array([0.0, 0.04, 0.08])
  texture = meshes.texture_map(meshes.cylindrical_uv(np.asarray(
      ict_model.mean_shape)), np.asarray(ict_model.triangles), 64)
  files, weights = animation.video_files(ict_model, None, layout, vectors,
                                         times, 25.0, zeros, zeros, texture)
  assert weights is None and list(files) == [animation.GLB]
  assert not pygltflib.GLTF2.load_from_bytes(files[animation.GLB]).animations
  files, weights = animation.video_files(ict_model, rig, layout, vectors,
                                         times, 25.0, zeros, zeros, texture)
  assert weights.shape == (3, 53)
  assert files[animation.LIVE_LINK_CSV].decode().count('\n') == 4
