"""`mofa reconstruct`: photos -> 3D faces you can open in Blender or MeshLab.

    mofa reconstruct --input=photo.jpg --output=out/ [--faces=largest]
    mofa reconstruct --input=photos/ --output=out/ --checkpoint=runs/stage2

Per face, in <output>/<photo name>[_face<k>]/: mesh_base.{ply,obj},
mesh_final.{ply,obj} (vertex colours = reflectance), textured_final.obj +
.mtl + _albedo.png (UV texture), code.mofa (compact parameters, < 5 KiB),
reconstruction.json (pose, light, cameras, landmarks, errors, ARKit
blendshape weights), face.glb (glTF with the 53 ARKit blendshapes as
morph targets at the fitted weights), and overlay.png, overlay_base.png,
reflectance.png, shading.png, lit_sphere.png. `sample:<name>` inputs are
the bundled photos (breakingbad, einstein, takeo).

Videos (.mp4, .avi, .mov, .mkv, .webm): every --frame_step-th frame is
reconstructed; the fits of up to five sharp, near-frontal frames fix the
identity (shape, reflectance, correctives) and every frame fits pose,
expression and light from the previous one; pose and expression are
smoothed over --smooth_frames.
<output>/<video name>/ gets parameters.npz (per-frame parameter vectors
and ARKit weights), identity_final.ply, overlay.mp4, live_link.csv (the
weights and head rotation per frame in Live Link Face's layout) and
face.glb (the morph targets animated over the frames).

Without --checkpoint the parameters come from per-image fitting (a few
seconds per face on a CPU); with one, the regressor predicts them and
fitting refines them unless --nofit. --face_model=bfm09:PATH fits a Basel
Face Model 2009 file instead of the bundled ICT model.
"""

import dataclasses
import os
import signal
import sys

from absl import app
from absl import flags
import tqdm

from mofa_ml import cli
from mofa_ml.commands import common
from mofa_ml.data import detection
from mofa_ml.facemodel import face_model as fm
from mofa_ml.learning import regressor as regressor_lib
from mofa_ml.reconstruction import reconstruct
from mofa_ml.reconstruction import reconstructor as reconstructor_lib

_INPUT = flags.DEFINE_multi_string(
    'input', None, 'Image, folder of images (recursive), video or '
    'sample:<name>; repeat for several.')
_OUTPUT = flags.DEFINE_string('output', None, 'Folder for the results.')
_RECONSTRUCTION = common.define_reconstruction_flags(fit_by_default=True)
_FACE_MODEL = common.define_face_model_flag()
_FACES = flags.DEFINE_enum(
    'faces', None, ['largest', 'all'], 'Which faces of a photo with several: '
    'the largest, or all. Without it, a photo with several faces is an '
    'error.')
_FRAME_STEP = flags.DEFINE_integer('frame_step', 1,
                                   'Videos: reconstruct every n-th frame.')
_SMOOTH = flags.DEFINE_float(
    'smooth_frames', 1.5, 'Videos: std (in sampled frames) of the Gaussian '
    'that smooths pose and expression over time; 0 turns it off.')
_DENSE = flags.DEFINE_bool(
    'dense_landmarks', True, "Fit MediaPipe's 468 face-mesh points too "
    '(--nodense_landmarks: the 68 points alone).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace existing result files.')
flags.mark_flags_as_required(['input', 'output'])
# Beyond this a Gaussian over sampled frames smooths a clip into one pose.
MAX_SMOOTH_FRAMES = 100.0


def _fail(message: str):
  raise SystemExit(f'mofa reconstruct: {message}')


class _StopOnSignal:
  """SIGINT / SIGTERM ask the run to stop after the folder being written;
  a second signal stops at once."""

  def __init__(self):
    self.signal = None
    for number in (signal.SIGINT, signal.SIGTERM):
      signal.signal(number, self._handle)

  def _handle(self, number, frame):
    del frame
    if self.signal is not None:
      raise KeyboardInterrupt
    self.signal = number
    tqdm.tqdm.write('mofa reconstruct: stopping after the current face '
                    '(again to stop at once)', file=sys.stderr)

  def __call__(self) -> bool:
    return self.signal is not None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  fit_config = common.fit_config(_RECONSTRUCTION.fit_steps.value,
                                 _RECONSTRUCTION.fit_solver.value)
  if not _DENSE.value:
    fit_config = dataclasses.replace(fit_config, dense_weight=0.0)
  if _FRAME_STEP.value < 1:
    raise app.UsageError('--frame_step must be at least 1')
  if not all(entry.strip() for entry in _INPUT.value):
    raise app.UsageError('--input is empty; name a photo, folder, video or '
                         'list')
  if not 0.0 <= _SMOOTH.value <= MAX_SMOOTH_FRAMES:
    raise app.UsageError(f'--smooth_frames must be 0 to {MAX_SMOOTH_FRAMES:g} '
                         f'frames, got {_SMOOTH.value}')
  output = os.path.abspath(_OUTPUT.value)
  created = not os.path.isdir(output)

  def fail(message):
    # A folder this run made and left empty is not left behind.
    if created and os.path.isdir(output) and not os.listdir(output):
      os.rmdir(output)
    _fail(message)

  try:
    os.makedirs(output, exist_ok=True)
    probe = os.path.join(output, '.mofa-write-test')
    with open(probe, 'w'):
      pass
    os.remove(probe)
  except OSError as e:
    _fail(f'output folder not writable: {e}')
  stop = _StopOnSignal()
  try:
    model = fm.load_face_model(_FACE_MODEL.value)
    regressor = None
    if _RECONSTRUCTION.checkpoint.value:
      regressor = regressor_lib.Regressor.load(
          _RECONSTRUCTION.checkpoint.value)
    reconstructor = reconstructor_lib.Reconstructor(
        model, regressor, fit_config if _RECONSTRUCTION.fit.value else None)
    landmarker = detection.FaceLandmarker()
  except (ValueError, FileNotFoundError, ImportError) as e:
    fail(str(e))
  except KeyboardInterrupt:
    fail('stopped')
  write_error = lambda line: tqdm.tqdm.write(f'mofa reconstruct: {line}',
                                             file=sys.stderr)
  try:
    summary = reconstruct.reconstruct_inputs(
        reconstructor, landmarker, _INPUT.value, output, faces=_FACES.value,
        overwrite=_OVERWRITE.value, frame_step=_FRAME_STEP.value,
        smooth_frames=_SMOOTH.value, report=tqdm.tqdm.write,
        fail=write_error, stop=stop, progress=True)
  except KeyboardInterrupt:
    # The second signal: the input in progress is dropped (a result folder
    # is written whole or not at all); the folders before it stay.
    number = stop.signal or signal.SIGINT
    if created and os.path.isdir(output) and not os.listdir(output):
      os.rmdir(output)
    print(f'mofa reconstruct: stopped at once by {signal.Signals(number).name}'
          '; the input in progress was not written', file=sys.stderr)
    raise cli.StoppedAtOnce(128 + number) from None
  if summary.failed:
    print(f'mofa reconstruct: {len(summary.failed)} input(s) failed:',
          file=sys.stderr)
    for line in summary.failed:
      print(f'  {line}', file=sys.stderr)
  if created and not os.listdir(output):
    os.rmdir(output)  # nothing written: no empty folder left behind
    print(f'nothing written; {len(summary.failed)} input(s) failed')
  else:
    print(f'{summary.written} reconstruction(s) written into {output}; '
          f'{len(summary.failed)} input(s) failed')
  if summary.stopped:
    dropped = (f'; {summary.unfinished} was not written'
               if summary.unfinished else '')
    print(f'mofa reconstruct: stopped by {signal.Signals(stop.signal).name}'
          f'{dropped}', file=sys.stderr)
    sys.exit(128 + stop.signal)
  if summary.failed:
    sys.exit(1)
