"""The bundled ICT front-face model and the BFM09 loader."""

import os

import chex
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import ict
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.rendering import mesh


def test_shipped_derived_asset_matches_a_rebuild():
  shipped = ict.load_derived()
  rebuilt = ict.build_derived(ict.load_source())
  assert set(shipped) == set(rebuilt)
  for key in shipped:
    np.testing.assert_allclose(shipped[key], rebuilt[key], rtol=1e-4,
                               atol=1e-5, err_msg=key)


def test_model_sizes_units_and_topology(ict_model):
  m = ict_model
  assert (m.num_shape, m.num_expression, m.num_reflectance) == (80, 53, 80)
  n = m.num_vertices
  assert n == 6706
  chex.assert_shape([m.mean_shape, m.mean_reflectance], (n, 3))
  chex.assert_shape(m.shape_basis, (80, n, 3))
  chex.assert_shape(m.expression_basis, (53, n, 3))
  chex.assert_shape(m.reflectance_basis, (80, n, 3))
  chex.assert_shape(m.landmark_vertices, (68,))
  chex.assert_shape(m.skin_mask, (n,))
  # Millimetres: the front face is about 15 cm wide and 20 cm tall.
  extent = np.ptp(np.asarray(m.mean_shape), axis=0)
  assert 140 < extent[0] < 160 and 180 < extent[1] < 210
  triangles = np.asarray(m.triangles)
  assert triangles.min() >= 0 and triangles.max() < n
  assert len(np.unique(triangles)) == n  # no unused vertex
  # Outward winding: the nose tip's normal points to the viewer (+z).
  normals = mesh.vertex_normals(m.mean_shape, m.triangles)
  assert normals[m.landmark_vertices[30], 2] > 0.9
  # The padded 1-ring is symmetric.
  neighbors, mask = np.asarray(m.neighbors), np.asarray(m.neighbor_mask)
  pairs = {(i, j) for i, j in zip(np.nonzero(mask)[0], neighbors[mask])}
  assert all((j, i) in pairs for i, j in pairs)


def test_bases_are_orthonormal_and_sigmas_descend(ict_model):
  for basis, sigma in ((ict_model.shape_basis, ict_model.shape_sigma),
                       (ict_model.expression_basis, ict_model.expression_sigma),
                       (ict_model.reflectance_basis,
                        ict_model.reflectance_sigma)):
    flat = np.asarray(basis, np.float64).reshape(len(basis), -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(len(flat)), atol=2e-5)
    sigma = np.asarray(sigma)
    assert np.all(sigma > 0) and np.all(np.diff(sigma) <= 1e-6)


def test_pca_reproduces_the_blendshape_span_to_the_stated_variance(ict_model):
  source = ict.load_source()
  derived = ict.load_derived()
  n = ict_model.num_vertices
  for key, basis, retained_key in (
      ('identity_basis', ict_model.shape_basis, 'identity_variance_retained'),
      ('expression_basis', ict_model.expression_basis,
       'expression_variance_retained')):
    deltas = source[key][:, :n].reshape(len(source[key]), -1).astype(
        np.float64) * ict.CM_TO_MM
    flat = np.asarray(basis, np.float64).reshape(len(basis), -1)
    projected = deltas @ flat.T @ flat
    kept = np.sum(projected**2) / np.sum(deltas**2)
    stated = float(derived[retained_key])
    np.testing.assert_allclose(kept, stated, rtol=1e-5)
  assert float(derived['identity_variance_retained']) > 0.998
  np.testing.assert_allclose(derived['expression_variance_retained'], 1.0,
                             rtol=1e-9)
  # The std of mode 1 is the spread of unit-variance blendshape weights.
  deltas = source['identity_basis'][:, :n].reshape(100, -1) * ict.CM_TO_MM
  mode = np.asarray(ict_model.shape_basis[0]).ravel()
  np.testing.assert_allclose(np.linalg.norm(deltas @ mode),
                             ict_model.shape_sigma[0], rtol=1e-4)


def test_reflectance_prior_starts_with_global_skin_tone(ict_model):
  first = np.asarray(ict_model.reflectance_basis[0])
  # The constant field times the luminance axis: the same at every vertex.
  np.testing.assert_allclose(first, np.broadcast_to(first[0], first.shape),
                             atol=1e-6)
  np.testing.assert_allclose(first[0], 1 / np.sqrt(3 * ict_model.num_vertices),
                             rtol=1e-4)
  mean = np.asarray(ict_model.mean_reflectance)
  assert mean.min() > 0.1 and mean.max() < 0.9
  lips = np.asarray(ict_model.landmark_vertices)[list(lm.INNER_LIPS)]
  nose = int(ict_model.landmark_vertices[30])
  assert np.all(mean[lips, 0] - mean[lips, 1] > mean[nose, 0] - mean[nose, 1])


def test_skin_mask_excludes_hair_and_feature_regions(ict_model):
  skin = np.asarray(ict_model.skin_mask)
  marks = np.asarray(ict_model.landmark_vertices)
  excluded = (lm.RIGHT_BROW + lm.LEFT_BROW + lm.RIGHT_EYE + lm.LEFT_EYE +
              lm.OUTER_LIPS + lm.INNER_LIPS + lm.JAW)
  assert not skin[marks[list(excluded)]].any()
  assert skin[marks[list(lm.NOSE_BRIDGE[1:])]].all()
  assert 0.15 < skin.mean() < 0.45


def test_contour_candidates_contain_each_outline_vertex(ict_model):
  candidates = np.asarray(ict_model.contour_candidates)
  mask = np.asarray(ict_model.contour_mask)
  outline = np.asarray(ict_model.landmark_vertices)[list(lm.CONTOUR)]
  assert candidates.shape[0] == 17 and candidates.shape == mask.shape
  for k in range(17):
    assert outline[k] in candidates[k, mask[k]]
    assert mask[k].sum() >= 10
  assert np.all(candidates[~mask] == np.repeat(outline, mask.shape[1]).reshape(
      mask.shape)[~mask])


def test_geometry_and_reflectance_batch(ict_model):
  shape = jnp.zeros((4, 80)).at[:, 0].set(ict_model.shape_sigma[0])
  vertices = ict_model.geometry(shape, jnp.zeros((4, 53)))
  chex.assert_shape(vertices, (4, ict_model.num_vertices, 3))
  np.testing.assert_allclose(
      vertices[2], ict_model.mean_shape +
      ict_model.shape_sigma[0] * ict_model.shape_basis[0], atol=1e-4)
  albedo = ict_model.reflectance(jnp.zeros((2, 3, 80)))
  chex.assert_shape(albedo, (2, 3, ict_model.num_vertices, 3))
  with pytest.raises(AssertionError):
    ict_model.geometry(jnp.zeros(79), jnp.zeros(53))


def write_synthetic_bfm(path, shape_modes=80, expression_modes=64,
                        reflectance_modes=80, skinmask=True):
  """A tiny file with BFM_model_front.mat's structure: a hemisphere 'face'."""
  unit, triangles = mesh.icosphere(2)
  front = np.flatnonzero(unit[:, 2] > -0.2)
  remap = -np.ones(len(unit), int)
  remap[front] = np.arange(len(front))
  triangles = remap[triangles[np.all(np.isin(triangles, front), axis=1)]]
  vertices = unit[front] * [0.75, 0.95, 0.6] + [0.1, 0.2, 0.3]  # dm
  n = len(vertices)
  rng = np.random.default_rng(0)
  contents = {
      'meanshape': vertices.reshape(1, -1),
      'idBase': rng.normal(size=(3 * n, shape_modes)) * 0.01,
      'exBase': rng.normal(size=(3 * n, expression_modes)) * 0.005,
      'meantex': np.full((1, 3 * n), 150.0),
      'texBase': rng.normal(size=(3 * n, reflectance_modes)) * 2.0,
      'tri': triangles + 1,
      'keypoints': (rng.choice(n, 68, replace=False) + 1).reshape(1, 68),
  }
  if skinmask:
    contents['skinmask'] = (vertices[:, 2] > 0.5).astype(np.float64)[None]
  scipy.io.savemat(path, contents)
  return contents


def test_bfm09_loader_matches_the_file_and_gives_257_plus_2c(tmp_path):
  path = os.path.join(tmp_path, 'BFM_model_front.mat')
  contents = write_synthetic_bfm(path)
  model = fm.load_face_model(f'bfm09:{path}')
  n = contents['meanshape'].size // 3
  assert model.num_vertices == n
  assert (model.num_shape, model.num_expression, model.num_reflectance) == (
      80, 64, 80)
  for c in (0, 100, 500):
    layout = layout_lib.ParameterLayout.for_model(model, c,
                                                  separate_final_sh=False)
    assert layout.size == 257 + 2 * c
  # Bases times sigmas give back the file's columns, in mm.
  column = contents['idBase'][:, 3].reshape(n, 3) * 100.0
  np.testing.assert_allclose(model.shape_sigma[3] * model.shape_basis[3],
                             column, rtol=1e-4, atol=1e-6)
  texture = contents['texBase'][:, 7].reshape(n, 3) / 255.0
  np.testing.assert_allclose(
      model.reflectance_sigma[7] * model.reflectance_basis[7], texture,
      rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(model.mean_reflectance, 150.0 / 255.0, rtol=1e-6)
  mean = np.asarray(model.mean_shape)
  np.testing.assert_allclose(mean.mean(axis=0), 0.0, atol=1e-3)  # centred
  np.testing.assert_allclose(np.ptp(mean, axis=0)[0], 150.0, rtol=0.02)
  np.testing.assert_array_equal(model.landmark_vertices,
                                contents['keypoints'].ravel() - 1)
  np.testing.assert_array_equal(model.skin_mask,
                                contents['skinmask'].ravel() > 0)
  normals = mesh.vertex_normals(model.mean_shape, model.triangles)
  top = np.argmax(mean[:, 2])
  assert normals[top, 2] > 0.9
  assert model.contour_candidates.shape[0] == 17
  harmonics = np.asarray(model.surface_harmonics, np.float64)
  assert harmonics.shape == (n, 40)
  np.testing.assert_allclose(harmonics.T @ harmonics, np.eye(40), atol=1e-4)


def test_bfm09_loader_errors_name_the_problem(tmp_path):
  with pytest.raises(FileNotFoundError, match='not found'):
    fm.load_face_model('bfm09:' + os.path.join(tmp_path, 'missing.mat'))
  junk = os.path.join(tmp_path, 'junk.mat')
  with open(junk, 'wb') as f:
    f.write(b'this is not a mat file at all' * 10)
  with pytest.raises(ValueError, match='not a readable MATLAB'):
    fm.load_face_model(f'bfm09:{junk}')
  partial = os.path.join(tmp_path, 'partial.mat')
  scipy.io.savemat(partial, {'meanshape': np.zeros((1, 9))})
  with pytest.raises(ValueError, match='missing idBase'):
    fm.load_face_model(f'bfm09:{partial}')
  words = os.path.join(tmp_path, 'words.mat')
  contents = write_synthetic_bfm(words)
  scipy.io.savemat(words, dict(contents, tri=np.array(['x', 'y'])))
  with pytest.raises(ValueError, match='words.mat: tri holds <U1 values, '
                     'not numbers'):
    fm.load_face_model(f'bfm09:{words}')
  for spec in ('bfm', 'bfm09', 'ict:extra', 'flame:x.npz'):
    with pytest.raises(ValueError, match='unknown face model'):
      fm.load_face_model(spec)


def test_fingerprint_is_stable_and_tells_models_apart(ict_model, tmp_path):
  again = fm.load_face_model()
  assert ict_model.fingerprint() == again.fingerprint()
  path = os.path.join(tmp_path, 'BFM_model_front.mat')
  write_synthetic_bfm(path)
  assert fm.load_face_model(f'bfm09:{path}').fingerprint() != ict_model.fingerprint()
  shifted = ict_model.replace(mean_shape=ict_model.mean_shape + 1.0)
  assert shifted.fingerprint() != ict_model.fingerprint()
