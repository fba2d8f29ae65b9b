"""`mofa reconstruct`: photos -> 3D faces you can open in Blender or MeshLab.

    mofa reconstruct --input=photo.jpg --output=out/ [--faces=largest]
    mofa reconstruct --input=photos/ --output=out/ --checkpoint=runs/stage2

Per face, in <output>/<photo name>[_face<k>]/: mesh_base.{ply,obj},
mesh_final.{ply,obj} (vertex colours = reflectance), textured_final.obj +
.mtl + _albedo.png (UV texture), code.mofa (compact parameters, < 5 KiB),
reconstruction.json (pose, light, cameras, landmarks, errors), and
overlay.png, overlay_base.png, reflectance.png, shading.png,
lit_sphere.png. `sample:<name>` inputs are the bundled photos
(breakingbad, einstein, takeo).

Videos (.mp4, .avi, .mov, .mkv, .webm): every --frame_step-th frame is
reconstructed; the first face fixes the identity (shape, reflectance,
correctives) and later frames fit pose, expression and light from the
previous frame; pose and expression are smoothed over --smooth_frames.
<output>/<video name>/ gets parameters.npz (per-frame parameter vectors),
identity_final.ply and overlay.mp4.

Without --checkpoint the parameters come from per-image fitting (a few
seconds per face on a CPU); with one, the regressor predicts them and
fitting refines them unless --nofit.
"""

import os
import sys

from absl import app
from absl import flags
import tqdm

from mofa_ml import export
from mofa_ml import face_model as fm
from mofa_ml import image_io
from mofa_ml import reconstruct
from mofa_ml import samples
from mofa_ml.commands import common
from mofa_ml.data import detection
from mofa_ml.data import prepare

_INPUT = flags.DEFINE_multi_string(
    'input', None, 'Image, folder of images (recursive) or sample:<name>; '
    'repeat for several.')
_OUTPUT = flags.DEFINE_string('output', None, 'Folder for the results.')
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint', None, 'Training workdir (or its checkpoints/) of a '
    'regressor; without it the faces are fitted per image.')
_FIT = flags.DEFINE_bool('fit', True, 'Fit each face per image (after the '
                         'regressor, if any). --nofit needs --checkpoint.')
_FIT_STEPS = flags.DEFINE_list('fit_steps', ['200', '150'],
                               'Fitting steps: base phase, final phase.')
_FACES = flags.DEFINE_enum(
    'faces', None, ['largest', 'all'], 'Which faces of a photo with several: '
    'the largest, or all. Without it, a photo with several faces is an '
    'error.')
_BFM = flags.DEFINE_string('bfm_model', None, 'Use a BFM_model_front.mat '
                           'instead of the bundled ICT model.')
_FRAME_STEP = flags.DEFINE_integer('frame_step', 1,
                                   'Videos: reconstruct every n-th frame.')
_SMOOTH = flags.DEFINE_float(
    'smooth_frames', 1.5, 'Videos: std (in sampled frames) of the Gaussian '
    'that smooths pose and expression over time; 0 turns it off.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace existing result files.')
flags.mark_flags_as_required(['input', 'output'])


def resolve_inputs(entries):
  """Paths of the photos and videos named by --input, and errors."""
  photos, videos, errors = [], [], []
  bundled = samples.sample_faces()
  for entry in entries:
    if entry.startswith('sample:'):
      name = entry.split(':', 1)[1]
      if name not in bundled:
        errors.append(f'{entry}: no such sample (choose from '
                      f'{", ".join(bundled)})')
      else:
        photos.append(bundled[name].image_path)
      continue
    items, problems = prepare.list_inputs([entry], frame_step=1)
    errors += [problem.replace(': not found', ': file not found')
               for problem in problems]
    for item in items:
      if item.frame >= 0:
        if item.source not in videos:
          videos.append(item.source)
      elif item.source not in photos:
        photos.append(item.source)
  return photos, videos, errors


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  fit_config = common.fit_config(_FIT_STEPS.value)
  output = os.path.abspath(_OUTPUT.value)
  try:
    os.makedirs(output, exist_ok=True)
    probe = os.path.join(output, '.mofa-write-test')
    with open(probe, 'w'):
      pass
    os.remove(probe)
  except OSError as e:
    raise SystemExit(f'mofa reconstruct: output folder not writable: {e}'
                     ) from None
  try:
    model = fm.load_face_model(_BFM.value)
    regressor = None
    if _CHECKPOINT.value:
      from mofa_ml import train  # pylint: disable=g-import-not-at-top
      regressor = train.load_regressor(_CHECKPOINT.value)
    reconstructor = reconstruct.Reconstructor(
        model, regressor, fit_config if _FIT.value else None)
  except (ValueError, FileNotFoundError) as e:
    raise SystemExit(f'mofa reconstruct: {e}') from None
  photos, videos, errors = resolve_inputs(_INPUT.value)
  landmarker = detection.FaceLandmarker()
  written = 0
  for path in tqdm.tqdm(photos, unit='photo', disable=len(photos) < 2):
    stem = os.path.splitext(os.path.basename(path))[0]
    try:
      photo = image_io.to_uint8(image_io.load_image(path))
    except (ValueError, FileNotFoundError) as e:
      errors.append(str(e))
      continue
    faces = landmarker.detect(photo)
    if not faces:
      errors.append(f'{path}: no face found')
      continue
    if len(faces) > 1 and _FACES.value is None:
      errors.append(f'{path}: {len(faces)} faces found; choose with '
                    '--faces=largest or --faces=all')
      continue
    if _FACES.value != 'all':
      faces = faces[:1]
    for index, face in enumerate(faces):
      name = stem if len(faces) == 1 else f'{stem}_face{index}'
      result = reconstructor.reconstruct_face(photo, face.landmarks,
                                              face.point_confidence)
      folder = os.path.join(output, name)
      os.makedirs(folder, exist_ok=True)
      try:
        export.write_files(folder, reconstructor.files(photo, result),
                           overwrite=_OVERWRITE.value)
      except (FileExistsError, OSError) as e:
        errors.append(str(e))
        continue
      written += 1
      metrics = result.metrics
      tqdm.tqdm.write(
          f'{folder}: landmark error {metrics["landmark_error_px"]:.2f} px, '
          f'photometric error base {metrics["photometric_error_base"]:.3f} '
          f'final {metrics["photometric_error_final"]:.3f}, '
          f'{result.seconds:.1f} s')
  for path in videos:
    stem = os.path.splitext(os.path.basename(path))[0]
    try:
      video = reconstruct.reconstruct_video(
          reconstructor, path, landmarker, _FRAME_STEP.value, _SMOOTH.value,
          progress=True)
      folder = os.path.join(output, stem)
      os.makedirs(folder, exist_ok=True)
      export.write_files(folder, reconstruct.video_files(
          reconstructor, path, video, _FRAME_STEP.value),
                         overwrite=_OVERWRITE.value)
    except (ValueError, FileExistsError, OSError) as e:
      errors.append(str(e))
      continue
    written += 1
    tqdm.tqdm.write(f'{folder}: {len(video.frames)} frames, faces in '
                    f'{int(video.found.sum())}')
  for error in errors:
    print(f'mofa reconstruct: {error}', file=sys.stderr)
  print(f'{written} reconstruction(s) written into {output}')
  if errors:
    sys.exit(1)
