"""The real-data benchmark's pure parts (experiments/real*.py) on data made
here: scan scoring, closest points, NME, yaw, and the mesh readers."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mofa_ml import metrics

from experiments import real_photos
from experiments import real_scans
from experiments import real_scoring


def _bumpy_sheet(count=25):
  """A curved, asymmetric height field over a 100 x 120 mm grid: (V, 3)
  vertices, (F, 3) counter-clockwise triangles (normals towards +z)."""
  x, y = np.meshgrid(np.linspace(-50, 50, count), np.linspace(-60, 60, count))
  z = (30 * np.exp(-(x**2 + y**2) / 900) + 8 * np.exp(
      -((x - 20)**2 + (y + 25)**2) / 200) + 0.1 * x - 0.002 * y**2)
  vertices = np.stack([x, y, z], -1).reshape(-1, 3)
  index = np.arange(count * count).reshape(count, count)
  a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
  c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
  triangles = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
  return vertices, triangles


def _random_similarity(seed):
  rng = np.random.default_rng(seed)
  return (rng.uniform(0.7, 1.4), Rotation.random(random_state=seed).as_matrix(),
          rng.normal(0, 50, 3))


def test_mesh_scored_against_itself_after_a_similarity_is_zero():
  vertices, triangles = _bumpy_sheet()
  scale, rotation, translation = _random_similarity(3)
  scan = scale * vertices @ rotation.T + translation
  marks = np.random.default_rng(0).choice(len(vertices), 12, replace=False)
  score = real_scoring.score_against_scan(scan, scan[marks], vertices,
                                          triangles, vertices[marks])
  assert score.mean_mm < 1e-6
  assert score.median_mm < 1e-6
  assert score.scale == pytest.approx(scale, rel=1e-6)


def test_icp_recovers_from_noisy_landmarks():
  vertices, triangles = _bumpy_sheet()
  scale, rotation, translation = _random_similarity(5)
  scan = scale * vertices @ rotation.T + translation
  marks = np.random.default_rng(1).choice(len(vertices), 12, replace=False)
  noisy = scan[marks] + np.random.default_rng(2).normal(0, 2.0, (12, 3))
  score = real_scoring.score_against_scan(scan, noisy, vertices, triangles,
                                          vertices[marks])
  assert score.landmark_rms_mm > 1.0
  # The scan's vertices are the mesh's: ICP ends on the surface again.
  assert score.mean_mm < 0.05


def test_known_offset_gives_the_known_distance():
  vertices, triangles = _bumpy_sheet()
  rng = np.random.default_rng(4)
  on_surface = rng.choice(len(vertices), 200, replace=False)
  from mofa_ml.rendering import mesh  # pylint: disable=g-import-not-at-top
  normals = np.asarray(mesh.vertex_normals(vertices.astype(np.float32),
                                           triangles), np.float64)
  # Small offsets along the normal of interior vertices of a smooth sheet:
  # the closest surface point is the vertex itself to within a micrometre.
  grid = np.arange(len(vertices)).reshape(25, 25)
  interior = np.setdiff1d(on_surface, np.concatenate(
      [grid[0], grid[-1], grid[:, 0], grid[:, -1]]))
  points = vertices[interior] + 0.3 * normals[interior]
  closest = real_scoring.closest_points_on_mesh(points, vertices, triangles)
  np.testing.assert_allclose(closest.distances, 0.3, atol=0.02)
  # Beyond a corner of the sheet: the distance to that corner vertex.
  corner = vertices[grid[0, 0]]
  outside = corner + np.array([-3.0, -4.0, 0.0])
  found = real_scoring.closest_points_on_mesh(outside[None], vertices,
                                              triangles)
  assert found.distances[0] == pytest.approx(5.0, abs=1e-9)
  np.testing.assert_allclose(found.points[0], corner, atol=1e-9)


def _reference_distance(point, a, b, c):
  """Point-triangle distance the slow way: the plane if the projection is
  inside, else the nearest of the three edges."""
  normal = np.cross(b - a, c - a)
  normal /= np.linalg.norm(normal)
  projected = point - (point - a) @ normal * normal
  signs = [np.cross(q - p, projected - p) @ normal
           for p, q in ((a, b), (b, c), (c, a))]
  if all(s >= 0 for s in signs) or all(s <= 0 for s in signs):
    return abs((point - a) @ normal)

  def segment(p, q):
    t = np.clip((point - p) @ (q - p) / ((q - p) @ (q - p)), 0, 1)
    return np.linalg.norm(point - (p + t * (q - p)))

  return min(segment(a, b), segment(b, c), segment(c, a))


def test_closest_points_match_brute_force_and_dense_samples():
  rng = np.random.default_rng(6)
  vertices = rng.normal(0, 10, (40, 3))
  triangles = np.stack([rng.choice(40, 3, replace=False) for _ in range(60)])
  points = rng.normal(0, 15, (300, 3))
  exact = real_scoring.closest_points_on_mesh(points, vertices, triangles,
                                              candidates=len(triangles))
  weights = rng.dirichlet([1, 1, 1], (len(triangles), 400))
  samples = np.einsum('fsk,fki->fsi', weights,
                      vertices[triangles]).reshape(-1, 3)
  sampled = np.linalg.norm(points[:, None] - samples[None], axis=-1).min(1)
  assert np.all(exact.distances <= sampled + 1e-9)
  corners = vertices[triangles]
  reference = [min(_reference_distance(p, *t) for t in corners)
               for p in points[:60]]
  np.testing.assert_allclose(exact.distances[:60], reference, atol=1e-9)
  np.testing.assert_allclose(np.linalg.norm(points - exact.points, axis=1),
                             exact.distances)
  np.testing.assert_allclose(exact.barycentric.sum(1), 1.0)


def test_umeyama_recovers_a_similarity_and_a_fixed_scale():
  rng = np.random.default_rng(7)
  source = rng.normal(0, 30, (20, 3))
  scale, rotation, translation = _random_similarity(8)
  target = scale * source @ rotation.T + translation
  found = real_scoring.umeyama(source, target)
  assert found.scale == pytest.approx(scale)
  np.testing.assert_allclose(found.rotation, rotation, atol=1e-9)
  np.testing.assert_allclose(real_scoring.apply(found, source), target,
                             atol=1e-9)
  rigid = real_scoring.umeyama(source, target, scale=1.0)
  assert rigid.scale == 1.0
  np.testing.assert_allclose(rigid.rotation, rotation, atol=1e-9)


def test_crop_keeps_points_within_the_radius():
  points = np.array([[0, 0, 0], [94.9, 0, 0], [0, 95.1, 0], [60, 60, 0]])
  np.testing.assert_array_equal(real_scoring.crop_scan(points, np.zeros(3)),
                                [True, True, False, True])


def test_nme_is_normalised_by_the_truth_box():
  truth = np.array([[10.0, 20.0], [50.0, 20.0], [10.0, 110.0],
                    [30.0, 60.0]])
  assert metrics.box_size(truth) == pytest.approx(60.0)
  shifted = truth + np.array([3.0, 4.0])
  assert real_scoring.nme(shifted, truth) == pytest.approx(5.0 / 60.0)
  with pytest.raises(ValueError):
    real_scoring.nme(shifted[:3], truth)


def test_yaw_from_landmarks_under_a_weak_perspective_camera():
  from mofa_ml.rendering import camera  # pylint: disable=g-import-not-at-top
  points = np.random.default_rng(9).normal(0, 1, (68, 3)) * [40, 50, 30]
  for pitch, yaw, roll in ((0, 0, 0), (10, 35, -5), (-5, -70, 15)):
    rotation = np.asarray(camera.pose_rotation(
        np.radians(np.array([pitch, yaw, roll], np.float32))), np.float64)
    projected = (points @ rotation.T)[:, :2] * 4.0 + 200.0
    assert real_photos.yaw_from_landmarks(projected, points) == (
        pytest.approx(abs(yaw), abs=0.05))


def test_yaw_bins():
  assert real_photos.yaw_bin(0.0) == '0-30'
  assert real_photos.yaw_bin(-30.0) == '30-60'
  assert real_photos.yaw_bin(59.9) == '30-60'
  assert real_photos.yaw_bin(90.0) == '60-90'


def test_vtk_reader_fans_polygons_and_reads_texture(tmp_path):
  path = tmp_path / 'tiny.vtk'
  path.write_text(
      '# vtk DataFile Version 3.0\ntiny\nASCII\nDATASET POLYDATA\n'
      'POINTS 5 float\n0 0 0 1 0 0 1 1 0\n0 1 0 0.5 2 0\n'
      'POLYGONS 2 9\n4 0 1 2 3\n3 3 2 4\n'
      'POINT_DATA 5\nTEXTURE_COORDINATES tc 2 float\n'
      '0 0 1 0 1 1 0 1 0.5 1\n')
  points, triangles, uv = real_scans.read_vtk_polydata(str(path))
  assert points.shape == (5, 3)
  np.testing.assert_array_equal(points[4], [0.5, 2, 0])
  np.testing.assert_array_equal(triangles, [[0, 1, 2], [0, 2, 3], [3, 2, 4]])
  np.testing.assert_array_equal(uv[2], [1, 1])
  binary = tmp_path / 'binary.vtk'
  binary.write_bytes(b'# vtk DataFile Version 3.0\nb\nBINARY\n'
                     b'DATASET POLYDATA\n')
  with pytest.raises(ValueError, match='ASCII'):
    real_scans.read_vtk_polydata(str(binary))


def test_obj_reader_handles_index_forms(tmp_path):
  path = tmp_path / 'tiny.obj'
  path.write_text('# comment\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n'
                  'vt 0 0\nvn 0 0 1\nf 1/1/1 2/1/1 3/1/1 4/1/1\n'
                  'f -4//1 -2//1 -1//1\n')
  vertices, triangles = real_scans.read_obj(str(path))
  assert vertices.shape == (4, 3)
  np.testing.assert_array_equal(triangles, [[0, 1, 2], [0, 2, 3], [0, 2, 3]])


def test_outward_winding_flips_a_sheet_facing_away():
  vertices, triangles = _bumpy_sheet(5)
  np.testing.assert_array_equal(
      real_scans.outward_winding(vertices, triangles), triangles)
  np.testing.assert_array_equal(
      real_scans.outward_winding(vertices, triangles[:, ::-1]), triangles)


def test_nearest_centroid_candidates_find_the_closest_triangle():
  vertices, triangles = _bumpy_sheet(40)
  rng = np.random.default_rng(10)
  points = vertices[rng.choice(len(vertices), 300)] + rng.normal(0, 3,
                                                                 (300, 3))
  default = real_scoring.closest_points_on_mesh(points, vertices, triangles)
  every = real_scoring.closest_points_on_mesh(points, vertices, triangles,
                                              candidates=len(triangles))
  np.testing.assert_allclose(default.distances, every.distances, atol=1e-12)


def test_jitter_is_zero_for_uniform_motion_and_scales_with_the_box():
  from experiments import real_video  # pylint: disable=g-import-not-at-top
  steps = np.arange(6, dtype=np.float64)[:, None, None]
  tracks = np.zeros((6, 68, 2)) + steps * np.array([2.0, -1.0])
  boxes = np.full(6, 100.0)
  assert real_video.jitter(tracks, boxes) == pytest.approx(0.0)
  shaken = tracks.copy()
  shaken[2] += [3.0, 4.0]  # second differences 5, 10, 5 at t = 1, 2, 3
  assert real_video.jitter(shaken, boxes) == pytest.approx(20.0 / 4 / 100)


def test_motion_following_sees_lag_and_smear():
  from experiments import real_video  # pylint: disable=g-import-not-at-top
  times = np.arange(60, dtype=np.float64)
  path = lambda t: 20.0 * np.sin(t / 3.0)[:, None, None] * np.ones((1, 68, 2))
  detected = path(times)
  boxes = np.full(60, 100.0)
  same = real_video.motion_following(detected, detected, boxes)
  assert same['lag_frames'] == 0
  assert same['fast_speed_ratio'] == pytest.approx(1.0)
  late = real_video.motion_following(path(times - 2.0), detected, boxes)
  assert late['lag_frames'] == 2
  # A running mean of 5 frames: centred, so no lag, but fast motion
  # (the sine's steepest parts) is smeared.
  kernel = np.ones(5) / 5
  smeared = np.stack([np.convolve(np.pad(detected[:, 0, 0], 2, 'edge'),
                                  kernel, 'valid')] * 2, -1)[:, None]
  smeared = smeared * np.ones((1, 68, 1))
  blurred = real_video.motion_following(smeared, detected, boxes)
  assert blurred['lag_frames'] == 0
  assert 0.6 < blurred['fast_speed_ratio'] < 0.95
  # Noise on a still face shows in the still jitter.
  still = np.zeros((60, 68, 2))
  noisy = still + np.random.default_rng(0).normal(0, 1.0, still.shape)
  assert real_video.motion_following(noisy, still, boxes)[
      'still_jitter'] > 0.01


def test_identity_spread_ignores_similarity_and_sees_shape():
  from experiments import real_video  # pylint: disable=g-import-not-at-top
  vertices, _ = _bumpy_sheet(8)
  moved = [s * vertices @ r.T + t
           for s, r, t in (_random_similarity(k) for k in range(4))]
  assert real_video.identity_spread(moved) < 1e-9
  # A saddle-shaped change no similarity can undo.
  changed = vertices + np.stack(
      [0 * vertices[:, 0], 0 * vertices[:, 0],
       2.0 * np.sign(vertices[:, 0] * vertices[:, 1])], axis=1)
  assert real_video.identity_spread([vertices, changed]) > 0.3


def test_report_summarises_and_tabulates_rows():
  from experiments import real_report  # pylint: disable=g-import-not-at-top
  nme = {'detector': 0.03, 'mean': 0.05, 'base': 0.04, 'final': 0.035}
  score = {'mean_mm': 1.5, 'median_mm': 1.2}
  render = {'scan': 'fran', 'yaw': 30.0, 'light': 'side',
            'background': 'grey', 'found': True, 'nme': nme, 'seconds': 6.0,
            'mm': {'base': score, 'final': score},
            'mean_face_mm': {'mean_mm': 2.0, 'median_mm': 1.8}}
  missed = dict(render, yaw=60.0, found=False)
  photo = {'set': 'aflw2000', 'name': 'a.jpg', 'yaw_degrees': 40.0,
           'yaw_bin': '30-60', 'box_px': 150.0, 'found': True, 'nme': nme,
           'seconds': 7.0}
  results = {'scan_renders': [render, missed], 'photos': [photo],
             'protocol': {'distance': 'd', 'crop_mm': 95.0,
                          'alignment': 'a', 'render_px': 512, 'yaw': 'y',
                          'lights': {'side': {}}}}
  results['summary'] = real_report.summarise(results)
  assert results['summary']['scan_all']['fran']['found'] == 1
  assert results['summary']['scan_by_yaw']['fran 60']['nme']['base'] is None
  text = real_report.markdown(results)
  assert '| fran 30 | 1/1 | 0.030 | 0.050 | 0.040 | 0.035 | 2.00 / 1.80' in (
      text)
  assert '| aflw2000 30-60 | 1 | 0 | 0.030 |' in text


def test_report_tabulates_identities_beside_the_mean_face():
  from experiments import real_report  # pylint: disable=g-import-not-at-top
  mm = lambda x: {'mean_mm': x, 'median_mm': x - 0.25}
  row = lambda views, joined: {
      'scan': 'fran', 'light': 'side', 'background': 'grey',
      'mean_face_mm': mm(2.5), 'views': list(views),
      'single_view_mm': {v: mm(x) for v, x in views.items()},
      'joined_mm': mm(joined)}
  results = {'scan_renders': [], 'photos': [], 'identities': [
      row({'0': 2.0, '30': 1.5}, 1.25), row({'0': 1.0}, 1.75),
      {'scan': 'fran', 'views': [], 'mean_face_mm': mm(2.5)}]}
  group = real_report.summarise(results)['identity']['fran']
  assert group['conditions'] == 2
  assert group['single_view_mm'] == {'0': 1.5, '30': 1.5}
  assert group['single_views_mm'] == 1.5 and group['joined_mm'] == 1.5
  lines = real_report._identity_table({'fran': group})
  assert lines[2] == '| fran | 2 | 2.50 | 1.50 | 1.50 | 1.50 | 1.50 / 1.25 |'


def _sheet_albedo(vertices):
  """(V, 3) a smooth skin-like albedo pattern over the sheet, in (0, 1)."""
  x, y = vertices[:, 0] / 50, vertices[:, 1] / 60
  return np.stack([0.6 + 0.2 * x, 0.45 + 0.15 * y, 0.35 + 0.1 * x * y], 1)


def test_albedo_errors_see_through_a_gain_and_report_it():
  vertices, triangles = _bumpy_sheet()
  scale, rotation, translation = _random_similarity(11)
  scan = scale * vertices @ rotation.T + translation
  truth = _sheet_albedo(vertices)
  gain = np.array([0.8, 1.1, 1.25])
  marks = np.random.default_rng(12).choice(len(vertices), 12, replace=False)
  score = real_scoring.score_against_scan(scan, scan[marks], vertices,
                                          triangles, vertices[marks])
  # Fitted = truth / gain: the gain fit undoes it exactly.
  errors = real_scoring.albedo_errors(scan, truth, score.similarity,
                                      vertices, triangles, truth / gain)
  assert errors['compared'] == pytest.approx(1.0)
  assert errors['mae'] == pytest.approx(0.0, abs=1e-6)
  np.testing.assert_allclose(errors['gain'], gain, rtol=1e-5)
  assert errors['gain_chroma'] == pytest.approx(np.std(np.log(gain)))
  assert errors['mae_raw'] == pytest.approx(
      np.abs(truth / gain - truth).mean(), rel=1e-4)
  # A grey gain is brightness alone: no chroma.
  grey = real_scoring.albedo_errors(scan, truth, score.similarity, vertices,
                                    triangles, 0.5 * truth)
  assert grey['gain_chroma'] == pytest.approx(0.0, abs=1e-6)
  np.testing.assert_allclose(grey['gain'], 2.0, rtol=1e-5)
  # Wrong colours per point are an error no gain removes.
  wrong = real_scoring.albedo_errors(scan, truth, score.similarity,
                                     vertices, triangles, truth[::-1])
  assert wrong['mae'] > 0.02


def test_albedo_errors_skip_scan_points_the_mesh_does_not_cover():
  vertices, triangles = _bumpy_sheet()
  truth = _sheet_albedo(vertices)
  # Scan = the sheet plus points far beyond it, coloured wrongly.
  far = vertices[:50] + np.array([0.0, 0.0, 40.0])
  scan = np.concatenate([vertices, far])
  albedo = np.concatenate([truth, np.ones((50, 3))])
  identity = real_scoring.umeyama(vertices, vertices)
  errors = real_scoring.albedo_errors(scan, albedo, identity, vertices,
                                      triangles, truth)
  assert errors['compared'] == pytest.approx(len(vertices) / len(scan))
  assert errors['mae'] == pytest.approx(0.0, abs=1e-9)


def test_channel_gain_is_least_squares():
  rng = np.random.default_rng(13)
  fitted = rng.uniform(0.1, 0.9, (100, 3))
  truth = rng.uniform(0.1, 0.9, (100, 3))
  gain = real_scoring.channel_gain(fitted, truth)
  for c in range(3):
    best, *_ = np.linalg.lstsq(fitted[:, c:c + 1], truth[:, c], rcond=None)
    assert gain[c] == pytest.approx(best[0])


def test_light_colour_white_tinted_and_negative():
  from mofa_ml.rendering import shading  # pylint: disable=g-import-not-at-top
  white = real_scoring.light_colour(real_scans.light('side'))
  assert white['chroma'] == pytest.approx(0.0, abs=1e-6)
  assert not white['negative_dc']
  ambient = real_scoring.light_colour(2.0 * shading.AMBIENT_WHITE)
  assert ambient['chroma'] == pytest.approx(0.0, abs=1e-6)
  np.testing.assert_allclose(ambient['dc'], 2 * shading.AMBIENT_WHITE[0])
  tinted = np.array(shading.AMBIENT_WHITE) * [0.8, 1.0, 1.25]
  assert real_scoring.light_colour(tinted)['chroma'] == pytest.approx(
      np.std(np.log([0.8, 1.0, 1.25])))
  negative = tinted.copy()
  negative[0, 2] = -0.1
  cast = real_scoring.light_colour(negative)
  assert cast['negative_dc'] and cast['chroma'] is None


def test_out_of_range_counts_vertices_with_any_channel_outside():
  reflectance = np.array([[0.5, 0.5, 0.5], [1.0, 0.0, 0.2], [1.01, 0.5, 0.5],
                          [0.5, -0.01, 0.5], [-1, 2, 3]])
  assert real_scoring.out_of_range(reflectance) == pytest.approx(3 / 5)


def test_vertex_albedo_reads_the_texture_at_the_uv():
  texture = np.zeros((4, 4, 3), np.float32)
  texture[:2, :2] = (1.0, 0.5, 0.25)  # top left: uv near (0, 1)
  uv = np.array([[0.125, 0.875], [0.875, 0.125]])
  scan = real_scans.Scan('t', np.zeros((2, 3)), np.zeros((0, 3), int), None,
                         uv, texture, None, '')
  np.testing.assert_allclose(real_scans.vertex_albedo(scan),
                             [[1.0, 0.5, 0.25], [0, 0, 0]], atol=1e-6)
  painted = scan._replace(albedo=np.full((2, 3), 0.3))
  np.testing.assert_allclose(real_scans.vertex_albedo(painted), 0.3)


def test_colour_difference_of_a_photo_drawn_by_the_fit_is_small(ict_model):
  from mofa_ml.data import crop  # pylint: disable=g-import-not-at-top
  from mofa_ml.export import outputs  # pylint: disable=g-import-not-at-top
  from mofa_ml.facemodel import layout  # pylint: disable=g-import-not-at-top
  from mofa_ml.rendering import camera  # pylint: disable=g-import-not-at-top
  from mofa_ml.rendering import shading  # pylint: disable=g-import-not-at-top
  from mofa_ml.rendering import viz  # pylint: disable=g-import-not-at-top
  model = ict_model
  size = crop.CROP_SIZE
  intrinsics = camera.default_intrinsics(size)
  params = layout.FaceParams(
      shape=np.zeros(model.num_shape, np.float32),
      expression=np.zeros(model.num_expression, np.float32),
      reflectance=np.zeros(model.num_reflectance, np.float32),
      rotation=np.zeros(3, np.float32),
      translation=np.array([0, 0, 500], np.float32),
      sh_base=0.8 * shading.AMBIENT_WHITE,
      correctives_geometry=np.zeros(1, np.float32),
      correctives_reflectance=np.zeros(1, np.float32))
  vertices = np.asarray(model.mean_shape, np.float64)
  reflectance = np.asarray(model.mean_reflectance, np.float64)
  photo, mask = viz.render_shaded(
      vertices.astype(np.float32), reflectance.astype(np.float32),
      model.triangles, params.rotation, params.translation, params.sh_base,
      intrinsics, size, size, np.full((size, size, 3), 0.3, np.float32))
  assert mask.mean() > 0.05
  photo = np.round(photo * 255).astype(np.uint8)
  face = outputs.Reconstruction(
      params, np.zeros_like(vertices), np.zeros_like(vertices),
      np.array([[1.0, 0, 0], [0, 1.0, 0]]), np.zeros((68, 2)), None, {}, 0.0)
  same = real_photos.colour_difference(model, intrinsics, face, photo,
                                       vertices, reflectance, params.sh_base)
  assert same < 1.0 / 255  # the photo's 8-bit rounding
  darker = real_photos.colour_difference(model, intrinsics, face, photo,
                                         vertices, 0.5 * reflectance,
                                         params.sh_base)
  expected = 0.5 * photo.astype(np.float64)[mask].mean() / 255
  assert darker == pytest.approx(expected, abs=2.0 / 255)


def test_report_tabulates_appearance():
  from experiments import real_report  # pylint: disable=g-import-not-at-top
  nme = {'detector': 0.03, 'mean': 0.05, 'base': 0.04, 'final': 0.035}
  score = {'mean_mm': 1.5, 'median_mm': 1.2}
  white = {'dc': [1.0] * 3, 'chroma': 0.0, 'negative_dc': False}
  blue = {'dc': [1.0, 1.0, -0.2], 'chroma': None, 'negative_dc': True}
  albedo = {'mae': 0.04, 'mae_raw': 0.1, 'gain': [1.0, 1.1, 1.2],
            'gain_chroma': 0.07, 'compared': 0.9}
  appearance = {'colour_difference': {'base': 0.06, 'final': 0.05},
                'out_of_range': {'base': 0.0, 'final': 0.2},
                'light_colour': {'base': white, 'final': blue}}
  render = dict({'scan': 'fran', 'yaw': 0.0, 'light': 'side',
                 'background': 'grey', 'found': True, 'nme': nme,
                 'seconds': 6.0, 'mm': {'base': score, 'final': score},
                 'mean_face_mm': {'mean_mm': 2.0, 'median_mm': 1.8},
                 'albedo': {'base': albedo, 'final': dict(albedo, mae=0.02)},
                 'mean_face_albedo': dict(albedo, mae=0.08,
                                          gain_chroma=0.01)},
                **appearance)
  tinted = dict(render, yaw=30.0, light_colour={
      'base': white, 'final': dict(white, chroma=0.1)})
  photo = dict({'set': 'bundled', 'name': 'a.jpg', 'yaw_degrees': 10.0,
                'yaw_bin': '0-30', 'box_px': 150.0, 'found': True,
                'nme': nme, 'seconds': 7.0}, **appearance)
  results = {'scan_renders': [render, tinted], 'photos': [photo],
             'protocol': {'distance': 'd', 'crop_mm': 95.0,
                          'alignment': 'a', 'render_px': 512, 'yaw': 'y',
                          'lights': {'side': {}}}}
  results['summary'] = real_report.summarise(results)
  fran = results['summary']['scan_all']['fran']['appearance']
  assert fran['albedo_mae'] == pytest.approx(
      {'mean_face': 0.08, 'base': 0.04, 'final': 0.02})
  # The negative-DC light has no chroma: counted, not averaged.
  assert fran['light_chroma']['final'] == pytest.approx(0.1)
  assert fran['negative_dc'] == {'base': 0, 'final': 1}
  bundled = results['summary']['photos_by_set']['bundled']['appearance']
  assert bundled['colour_difference']['final'] == pytest.approx(0.05)
  text = real_report.markdown(results)
  assert ('| fran | 0.080 / 0.040 / 0.020 | 0.100 | 0.010 / 0.070 | 0.100 '
          '| 1 | 0.200 | 0.050 |') in text
  assert '| bundled | 1 | 0.060 / 0.050 | 0.000 / 0.200 | - | 1 |' in text
