"""Photos and videos -> 3D face reconstructions and their files.

Each face is reconstructed by `reconstructor.Reconstructor`, each video by
`video`. `reconstruct_inputs` is the loop of `mofa reconstruct`: it
resolves inputs, checks each result folder before the work, reconstructs
photos and videos, writes each folder whole (never a half one) and reports
every success or failure through callbacks.
"""

import collections
import hashlib
import os
import shutil
import tempfile
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

from mofa_ml import image_io
from mofa_ml import samples
from mofa_ml.data import detection as detection_lib
from mofa_ml.data import inputs as inputs_lib
from mofa_ml.export import meshes
from mofa_ml.export import outputs
from mofa_ml.reconstruction import reconstructor as reconstructor_lib
from mofa_ml.reconstruction import video as video_lib


class Job(NamedTuple):
  """One input: a photo or a video, and its result folder's name (relative
  to the output folder; unique within a run)."""
  source: str
  name: str
  is_video: bool


class Inputs(NamedTuple):
  """What --input names: the jobs, and problems (one line each)."""
  jobs: List[Job]
  errors: List[str]


def _unique_names(jobs: List[Job]) -> List[Job]:
  """Names shared by several sources get the file type, then a short hash
  of the path: `face_jpg`, `face_png`, `face_3f2a9c`."""
  for suffix in (lambda job: os.path.splitext(job.source)[1][1:].lower(),
                 lambda job: hashlib.sha1(job.source.encode()).hexdigest()[:6]):
    counts = collections.Counter(job.name for job in jobs)
    jobs = [job._replace(name=f'{job.name}_{suffix(job)}')
            if counts[job.name] > 1 else job for job in jobs]
  return jobs


def resolve_inputs(entries: Sequence[str],
                   output: Optional[str] = None) -> Inputs:
  """Photos and videos named by paths, folders, lists or sample:<name>.

  A photo's result folder is its path under the folder given as input
  (`photos/a/face.jpg` from `--input=photos` -> `a/face`), else its stem;
  names that would collide are made unique (`_unique_names`). When an
  input folder holds the `output` folder, the files found in the output
  folder (an earlier run's overlays and pictures) are not inputs.
  """
  inside = (os.path.join(os.path.realpath(output), '') if output else None)
  jobs, errors, seen = [], [], set()
  bundled = samples.sample_faces()
  for entry in entries:
    if entry.startswith('sample:'):
      name = entry.split(':', 1)[1]
      if name not in bundled:
        errors.append(f'{entry}: no such sample (choose from '
                      f'{", ".join(bundled)})')
      else:
        jobs.append(Job(bundled[name].image_path, name, False))
      continue
    items, problems = inputs_lib.list_inputs([entry], frame_step=1)
    errors += [problem.replace(': not found', ': file not found')
               for problem in problems]
    root = os.path.abspath(entry) if os.path.isdir(entry) else None
    # Walking a folder that holds the output folder skips what is in it.
    skip = inside if root and inside and inside.startswith(
        os.path.join(os.path.realpath(root), '')) else None
    for item in items:
      if skip and os.path.realpath(item.source).startswith(skip):
        continue
      relative = (os.path.relpath(item.source, root) if root else
                  os.path.basename(item.source))
      # The same file named by two inputs (or through a link) is done once.
      key = inputs_lib.file_key(item.source)
      if key not in seen:
        seen.add(key)
        jobs.append(Job(item.source, os.path.splitext(relative)[0],
                        item.frame >= 0))
  return Inputs(_unique_names(jobs), errors)


def write_folder(folder: str, files: Dict[str, bytes], overwrite: bool):
  """Writes a result folder so that no half folder is ever seen: a new
  folder is filled under a temporary name and renamed; into an existing one
  each file is written atomically (all refused first if one exists and not
  `overwrite`).

  Raises:
    FileExistsError, OSError: naming the path.
  """
  if os.path.isdir(folder):
    meshes.write_files(folder, files, overwrite=overwrite)
    return
  if os.path.lexists(folder):
    raise FileExistsError(f'{folder} exists and is not a folder')
  parent = os.path.dirname(folder)
  os.makedirs(parent, exist_ok=True)
  partial = tempfile.mkdtemp(dir=parent, prefix='.partial-')
  try:
    os.chmod(partial, 0o777 & ~image_io.current_umask())
    meshes.write_files(partial, files)
    os.rename(partial, folder)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise


def check_folder(folder: str, names: Sequence[str], overwrite: bool):
  """Refuses, before any work, a result that could not be written.

  Raises:
    FileExistsError: `folder` is a file, or holds one of `names` and not
      `overwrite`.
  """
  if os.path.lexists(folder) and not os.path.isdir(folder):
    raise FileExistsError(f'{folder} exists and is not a folder')
  if not overwrite:
    for name in names:
      if os.path.exists(os.path.join(folder, name)):
        raise FileExistsError(f'{os.path.join(folder, name)} exists; pass '
                              '--overwrite to replace it')


def describe_failure(source: str, error: BaseException) -> str:
  """One line naming the input and what went wrong."""
  message = str(error).strip().splitlines()[0] if str(error).strip() else ''
  if not isinstance(error, (ValueError, OSError)):
    message = f'{type(error).__name__}: {message}'
  return message if message.startswith(source) else f'{source}: {message}'


def detect_faces(landmarker, path: str, faces: Optional[str],
                 is_face: Optional[Callable] = None):
  """(photo, detections, count of detections refused by `is_face`).

  Args:
    faces: None (the photo must show one face), 'largest' or 'all'.
    is_face: (photo, landmarks) -> bool, a check of each detection.

  Raises:
    ValueError / FileNotFoundError: naming the photo and the problem.
  """
  photo = image_io.load_photo(path)
  problem = detection_lib.size_problem(photo)
  if problem:
    raise ValueError(f'{path}: {problem}')
  found = landmarker.detect(photo)
  detections = [d for d in found
                if is_face is None or is_face(photo, d.landmarks)]
  if not detections:
    raise ValueError(f'{path}: no face found')
  if len(detections) > 1 and faces is None:
    raise ValueError(f'{path}: {len(detections)} faces found; choose with '
                     '--faces=largest or --faces=all')
  return (photo, detections if faces == 'all' else detections[:1],
          len(found) - len(detections))


class Summary(NamedTuple):
  written: int
  failed: List[str]
  stopped: bool
  unfinished: Optional[str] = None  # the video `stop` ended, not written


def reconstruct_inputs(reconstructor: reconstructor_lib.Reconstructor,
                       landmarker,
                       entries: Sequence[str], output: str,
                       faces: Optional[str] = None, overwrite: bool = False,
                       frame_step: int = 1, smooth_frames: float = 1.5,
                       report: Callable[[str], None] = print,
                       fail: Callable[[str], None] = print,
                       stop: Callable[[], bool] = lambda: False,
                       progress: bool = False) -> Summary:
  """Reconstructs every photo and video and writes one folder per face.

  Every input that fails, whatever raises, costs one line (`fail`) and the
  run goes on; `stop` is asked between inputs and faces, so an interrupted
  run ends after a whole folder, and between a video's frames, which drops
  the video (`Summary.unfinished`).

  Args:
    reconstructor: the model and how to reconstruct.
    landmarker: a `detection.FaceLandmarker`.
    entries: --input values (see `resolve_inputs`).
    output: the results folder.
    faces: see `photo_faces`.
    overwrite: replace existing result files.
    frame_step, smooth_frames: videos (see `video.reconstruct_video`).
    report: called with a line for every folder written.
    fail: called with a line for every input that failed, as it happens.
    stop: True when the run should end.
    progress: show progress bars.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  inputs = resolve_inputs(entries, output)
  failed = []
  for line in inputs.errors:
    failed.append(line)
    fail(line)
  written = 0
  photo_files = outputs.FACE_FILES
  for job in tqdm.tqdm(inputs.jobs, unit='input',
                       disable=not progress or len(inputs.jobs) < 2):
    if stop():
      break
    try:
      if job.is_video:
        if reconstructor.fit_config is None:
          report(f'{job.source}: --nofit applies to photos; a video\'s '
                 'frames are fitted (the identity from the network)')
        folder = os.path.join(output, job.name)
        check_folder(folder, video_lib.VIDEO_FILES, overwrite)
        video = video_lib.reconstruct_video(
            reconstructor, job.source, landmarker, frame_step, smooth_frames,
            progress=progress, stop=stop)
        # The overlay is encoded in the output folder: the system's
        # temporary one may be small.
        write_folder(folder, video_lib.video_files(
            reconstructor.model, job.source, video, frame_step,
            reconstructor.texture_map, reconstructor.rig,
            output if os.path.isdir(output) else None, stop), overwrite)
        written += 1
        report(f'{folder}: {len(video.frames)} frames, {int(sum(~video.found))}'
               f' without a face, {int(sum(video.refitted))} refitted, '
               f'{int(sum(video.lost))} lost')
        continue
      photo, detections, refused = detect_faces(
          landmarker, job.source, faces, reconstructor.is_face)
      if refused:
        report(f'{job.source}: {refused} detection(s) skipped: no face for '
               'the face-mesh network')
      names = [job.name if len(detections) == 1 else f'{job.name}_face{k}'
               for k in range(len(detections))]
      for name in names:
        check_folder(os.path.join(output, name), photo_files, overwrite)
      for name, detection in zip(names, detections):
        if stop():
          break
        result = reconstructor.reconstruct_face(photo, detection.landmarks,
                                                detection.point_confidence)
        folder = os.path.join(output, name)
        write_folder(folder, reconstructor.files(photo, result), overwrite)
        written += 1
        metrics = result.metrics
        report(f'{folder}: landmark error '
               f'{metrics["landmark_error_px"]:.2f} px, photometric error '
               f'base {metrics["photometric_error_base"]:.3f} final '
               f'{metrics["photometric_error_final"]:.3f}, '
               f'{result.seconds:.1f} s' + (
                   f'; fell back to {result.fallback}' if result.fallback
                   else ''))
    except video_lib.Stopped:
      return Summary(written, failed, True, job.source)
    except Exception as e:  # pylint: disable=broad-except
      # One input's failure, whatever it is, must not end the run.
      line = describe_failure(job.source, e)
      failed.append(line)
      fail(line)
  return Summary(written, failed, stop())
