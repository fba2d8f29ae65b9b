"""Photos or videos -> tight landmark crops -> a TFDS dataset.

    prepare(['photos/'], 'prepared/celeba', PrepareOptions(name='celeba'))

1. The inputs (folders, searched recursively; image files; .txt lists of
   paths; videos, sampled every `frame_step` frames) are listed in a fixed
   order and cut into shards.
2. Each item is read, its face found (an existing .pts or menpo .ljson
   beside the photo is used instead of detection), checked, cropped to
   240 x 240 with the landmarks mapped into the crop, and assigned to train
   or validation by a hash of its source (deterministic). A shard is written
   atomically as `shards/shard-NNNNN.npz` with a report of its rejects; a
   rerun skips finished shards. Unreadable files and rejected faces are
   reported, never fatal; nothing is written next to the inputs.
3. The shards become the TFDS dataset `mofa_faces/<name>` in `<output>/tfds`.
"""

import dataclasses
import glob
import hashlib
import io
import json
import multiprocessing
import os
import signal
import zlib
from typing import Dict, List, Optional, Tuple

import numpy as np

from mofa_ml import image_io
from mofa_ml.data import crop
from mofa_ml.data import detection
from mofa_ml.data import faces_dataset
from mofa_ml.data import inputs as inputs_lib
from mofa_ml.facemodel import landmarks as lm


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
  """Settings of one preparation run.

  Attributes:
    name: dataset config name (the dataset is `mofa_faces/<name>`).
    frame_step: sample every n-th frame of videos.
    shard_size: items per shard (the unit of resumption).
    validation_fraction: share of sources in the validation split.
    min_confidence: drop faces whose mean landmark confidence is lower
      (`detection.flip_confidence`; 0.32 rejects the faces whose mirror
      fits disagree by about 0.05 eye distances on average).
    min_eye_distance_px: drop faces smaller than this in the photo.
    all_faces: keep every face of a photo, not only the largest.
    num_workers: processes working on shards in parallel.
    part_index, part_count: this process prepares only the shards whose
      index is part_index modulo part_count, for spreading one preparation
      over machines that share the output folder; the dataset is built by
      whichever run finds every shard done.
  """
  name: str = 'faces'
  frame_step: int = 10
  shard_size: int = 256
  validation_fraction: float = 0.02
  min_confidence: float = 0.32
  min_eye_distance_px: float = 20.0
  all_faces: bool = False
  num_workers: int = 1
  part_index: int = 0
  part_count: int = 1


def read_item(item: inputs_lib.Item) -> np.ndarray:
  """The item's pixels, (H, W, 3) uint8. Raises ValueError if unreadable."""
  if item.frame < 0:
    return image_io.load_photo(item.source)
  import cv2  # pylint: disable=g-import-not-at-top
  capture = cv2.VideoCapture(item.source)
  capture.set(cv2.CAP_PROP_POS_FRAMES, item.frame)
  ok, frame = capture.read()
  capture.release()
  if not ok:
    raise ValueError(f'{item.label}: frame could not be read')
  return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def read_annotation(path: str) -> Optional[np.ndarray]:
  """68 landmarks from a .pts or menpo .ljson beside `path`, or None.

  menpo's LJSON stores image points as (y, x); they are swapped here.
  """
  stem = os.path.splitext(path)[0]
  if os.path.isfile(stem + '.pts'):
    return lm.read_pts(stem + '.pts')
  if os.path.isfile(stem + '.ljson'):
    with open(stem + '.ljson', encoding='utf-8') as f:
      try:
        data = json.load(f)
        points = np.asarray(data['landmarks']['points'], np.float32)
      except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f'{stem}.ljson: not a menpo landmark file with '
                         f'landmarks.points ({type(e).__name__}: {e})'
                         ) from None
    if points.shape != (lm.NUM_LANDMARKS, 2):
      raise ValueError(f'{stem}.ljson: expected 68 points, got '
                       f'{points.shape}')
    return points[:, ::-1].copy()
  return None


def check_landmarks(points: np.ndarray, image: np.ndarray, where: str):
  """Refuses landmarks no crop can be made of.

  Raises:
    ValueError: not finite, all on a line or a point, or outside the photo.
  """
  if not np.all(np.isfinite(points)):
    raise ValueError(f'{where}: landmarks are not finite numbers')
  low, high = points.min(axis=0), points.max(axis=0)
  if np.any(high - low < 1.0):
    raise ValueError(f'{where}: degenerate landmarks (they span '
                     f'{high[0] - low[0]:.1f} x {high[1] - low[1]:.1f} px)')
  height, width = image.shape[:2]
  if high[0] < 0 or high[1] < 0 or low[0] > width or low[1] > height:
    raise ValueError(f'{where}: landmarks lie outside the '
                     f'{width} x {height} px photo')


def validation_share(item: inputs_lib.Item, fraction: float) -> bool:
  """Deterministic split by a hash of the source (frames of one video stay
  together)."""
  return zlib.crc32(item.source.encode()) % 10_000 < fraction * 10_000


def faces_of(item: inputs_lib.Item, image: np.ndarray,
             landmarker: Optional[detection.FaceLandmarker],
             options: PrepareOptions
             ) -> Tuple[List[Tuple[np.ndarray, np.ndarray]], str]:
  """Accepted (landmarks, confidence) pairs of an item, or a reject
  reason (a photo too small, an annotation beside it that is unusable)."""
  problem = detection.size_problem(image)
  if problem:
    return [], problem
  try:
    annotated = read_annotation(item.source) if item.frame < 0 else None
    if annotated is not None:
      check_landmarks(annotated, image, item.label)
  except (ValueError, OSError) as e:
    return [], f'bad annotation ({e})'
  if annotated is not None:
    return [(annotated, np.ones(lm.NUM_LANDMARKS, np.float32))], ''
  detections = landmarker.detect(image)
  if not detections:
    return [], 'no face found'
  if not options.all_faces:
    detections = detections[:1]
  kept, reason = [], ''
  for face in detections:
    eyes = float(lm.outer_eye_distance(face.landmarks))
    if face.confidence < options.min_confidence:
      reason = f'low landmark confidence ({face.confidence:.2f})'
    elif eyes < options.min_eye_distance_px:
      reason = f'face too small ({eyes:.0f} px between the eyes)'
    else:
      kept.append((face.landmarks, face.point_confidence))
  return kept, reason


def _crop_row(image: np.ndarray, points: np.ndarray,
              confidence: np.ndarray) -> Dict[str, np.ndarray]:
  transform = crop.crop_transform(points)
  return {'image': crop.warp_crop(image, transform),
          'landmarks': crop.apply_transform(transform, points).astype(
              np.float32),
          'landmark_confidence': confidence.astype(np.float32),
          'crop_transform': transform}


def _process_shard(items: List[inputs_lib.Item], landmarker,
                   options: PrepareOptions
                   ) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
  rows = {key: [] for key in ('image', 'landmarks', 'landmark_confidence',
                              'crop_transform', 'source', 'frame', 'split')}
  rejects = {}
  for item in items:
    try:
      image = read_item(item)
    except (ValueError, OSError) as e:
      rejects[item.label] = f'unreadable ({e})'
      continue
    try:
      faces, reason = faces_of(item, image, landmarker, options)
      crops = [_crop_row(image, points, confidence)
               for points, confidence in faces]
    except Exception as e:  # pylint: disable=broad-except
      # One photo, whatever else is wrong with it (a shape OpenCV refuses),
      # costs its own entry in the report, not the run.
      rejects[item.label] = f'failed ({type(e).__name__}: {e})'
      continue
    if not faces:
      rejects[item.label] = reason
      continue
    split = ('validation' if validation_share(item, options.validation_fraction)
             else 'train')
    for row in crops:
      for key, value in row.items():
        rows[key].append(value)
      rows['source'].append(item.source)
      rows['frame'].append(item.frame)
      rows['split'].append(split)
  size = crop.CROP_SIZE
  empty = {'image': np.zeros((0, size, size, 3), np.uint8),
           'landmarks': np.zeros((0, lm.NUM_LANDMARKS, 2), np.float32),
           'landmark_confidence': np.zeros((0, lm.NUM_LANDMARKS), np.float32),
           'crop_transform': np.zeros((0, 2, 3))}
  arrays = {key: (np.stack(values) if values else empty.get(key, np.array(
      [], dtype=str if key in ('source', 'split') else np.int32)))
            for key, values in rows.items()}
  arrays['frame'] = np.asarray(arrays['frame'], np.int32)
  return arrays, rejects


def _write_shard(job, landmarker=None) -> int:
  """Processes one shard and writes it with its rejects; returns its size."""
  path, chunk, options = job
  arrays, rejects = _process_shard(
      chunk, landmarker or detection.FaceLandmarker(), options)
  image_io.atomic_write_bytes(path.replace('.npz', '.rejects.json'),
                              json.dumps(rejects, indent=1).encode(),
                              overwrite=True)
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  image_io.atomic_write_bytes(path, buffer.getvalue(), overwrite=True)
  return len(chunk)


def _worker_pool(count: int):
  """Processes for `_write_shard` that leave Ctrl-C to this one: they
  would each print a KeyboardInterrupt traceback, and the pool's end
  (SIGTERM) lets a shard being written remove its temporary file."""
  held = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited, and
  try:  # Python in the child then installs no KeyboardInterrupt of its own
    return multiprocessing.get_context('spawn').Pool(
        count, initializer=signal.signal,
        initargs=(signal.SIGTERM, _exit_on_sigterm))
  finally:
    signal.signal(signal.SIGINT, held)


def _exit_on_sigterm(number, frame):
  del frame
  raise SystemExit(128 + number)


def _manifest_digest(items: List[inputs_lib.Item],
                     options: PrepareOptions) -> str:
  digest = hashlib.sha256()
  for item in items:
    digest.update(item.label.encode() + b'\0')
  settings = dataclasses.asdict(options)
  for name in ('num_workers', 'part_index', 'part_count'):
    del settings[name]  # they do not change the result
  digest.update(json.dumps(settings, sort_keys=True).encode())
  return digest.hexdigest()


def prepare(inputs: List[str], output: str, options: PrepareOptions,
            progress: bool = True,
            landmarker: Optional[detection.FaceLandmarker] = None
            ) -> Dict[str, object]:
  """Runs (or resumes) a preparation; returns its report (with 'dataset'
  None and 'shards_missing' while other parts are still to run).

  Raises:
    ValueError: no inputs found, or `output` holds a run over other inputs.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  items, problems = inputs_lib.list_inputs(inputs, options.frame_step)
  if not items:
    raise ValueError('no images or videos found in ' + ', '.join(inputs) +
                     (f' ({"; ".join(problems)})' if problems else ''))
  output = os.path.abspath(output)
  if os.path.lexists(output) and not os.path.isdir(output):
    raise ValueError(f'--output {output} is a file; name a folder')
  blocking = image_io.file_above(output)
  if blocking:
    raise ValueError(f'--output {output}: {blocking} is a file, not a folder')
  for path in inputs:
    if os.path.commonpath([os.path.abspath(path), output]) == os.path.abspath(
        path) and os.path.isdir(path):
      raise ValueError(f'--output {output} lies inside the input folder '
                       f'{path}; choose a folder outside it')
  shard_dir = os.path.join(output, 'shards')
  os.makedirs(shard_dir, exist_ok=True)
  manifest_path = os.path.join(output, 'manifest.json')
  digest = _manifest_digest(items, options)
  if os.path.isfile(manifest_path):
    try:
      with open(manifest_path, encoding='utf-8') as f:
        manifest = json.load(f)
      manifest['digest']  # pylint: disable=pointless-statement
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(f'{manifest_path} is damaged ({type(e).__name__}: '
                       f'{e}); use a new --output folder') from None
    if manifest['digest'] != digest:
      raise ValueError(f'{output} holds a preparation of other inputs or '
                       'options; use a new --output folder')
  else:
    image_io.atomic_write_bytes(manifest_path, json.dumps(
        {'digest': digest, 'items': len(items),
         'options': dataclasses.asdict(options)}, indent=2).encode())
  shard_count = -(-len(items) // options.shard_size)
  jobs = []
  for shard in range(shard_count):
    path = os.path.join(shard_dir, f'shard-{shard:05d}.npz')
    chunk = items[shard * options.shard_size:(shard + 1) * options.shard_size]
    if (not os.path.isfile(path) and
        shard % options.part_count == options.part_index):
      jobs.append((path, chunk, options))
  done = len(items) - sum(len(chunk) for _, chunk, _ in jobs)
  # Closed on Ctrl-C too, so that the line saying so is a line of its own.
  with tqdm.tqdm(total=len(items), initial=done, unit='image',
                 desc='prepare', disable=not progress) as bar:
    if options.num_workers > 1 and len(jobs) > 1:
      with _worker_pool(options.num_workers) as pool:
        for count in pool.imap_unordered(_write_shard, jobs):
          bar.update(count)
    else:
      landmarker = landmarker or detection.FaceLandmarker()
      for job in jobs:
        bar.update(_write_shard(job, landmarker))
  missing = [shard for shard in range(shard_count) if not os.path.isfile(
      os.path.join(shard_dir, f'shard-{shard:05d}.npz'))]
  if missing:
    return {'dataset': None, 'shards_missing': len(missing),
            'shards': shard_count}
  return build_dataset(output, options, problems)


def build_dataset(output: str, options: PrepareOptions,
                  problems: List[str]) -> Dict[str, object]:
  """Shards -> TFDS `mofa_faces/<name>` in `<output>/tfds`; the report."""
  shard_dir = os.path.join(output, 'shards')
  counts = {'train': 0, 'validation': 0}
  reasons: Dict[str, int] = {}
  rejected = {}
  for path in sorted(glob.glob(os.path.join(shard_dir,
                                            faces_dataset.SHARD_PATTERN))):
    with np.load(path, allow_pickle=False) as shard:
      for split in counts:
        counts[split] += int(np.sum(shard['split'] == split))
    with open(path.replace('.npz', '.rejects.json'), encoding='utf-8') as f:
      for label, reason in json.load(f).items():
        rejected[label] = reason
        key = reason.split(' (')[0]
        reasons[key] = reasons.get(key, 0) + 1
  report = {'dataset': f'mofa_faces/{options.name}',
            'data_dir': os.path.join(output, 'tfds'),
            'faces': counts, 'rejected': len(rejected),
            'rejected_by_reason': reasons, 'rejects': rejected,
            'input_problems': problems}
  report_path = os.path.join(output, 'report.json')
  image_io.atomic_write_bytes(report_path,
                              json.dumps(report, indent=2).encode(),
                              overwrite=True)
  if counts['train'] == 0:
    causes = [f'{count} {reason}' for reason, count in reasons.items()]
    causes += problems[:3] + ([f'{len(problems) - 3} more input problems']
                              if len(problems) > 3 else [])
    raise ValueError('no face was accepted (' + '; '.join(causes or [
        'no input']) + f'); every reject is listed in {report_path}')
  faces_dataset.build(os.path.join(output, 'tfds'), options.name, shard_dir)
  return report
