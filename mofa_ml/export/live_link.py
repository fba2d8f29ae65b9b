"""Per-frame ARKit weights as a CSV in the layout of Epic's Live Link Face.

Columns: Timecode, BlendShapeCount, the 52 ARKit blendshapes in ARKit's
order with Live Link Face's CamelCase names (`eyeBlink_L` -> EyeBlinkLeft),
then head and eye rotations (61 values a row). Model blendshapes split into
halves (`browInnerUp_L/_R`, `cheekPuff_L/_R` in ICT FaceKit) give the
mean of their halves; an ARKit shape the model lacks (`tongueOut`) and the
eye rotations, which are not estimated, are 0. Head rotations are the
fitted pose in radians (yaw, pitch and roll of `camera.pose_rotation`).
Timecodes are HH:MM:SS:FF.mmm of each frame's time in the video at its own
frame rate (FF the frame within the second, .mmm the sub-frame fraction).
"""

import io
from typing import Sequence, Tuple

import chex
import numpy as np

ARKIT_COLUMNS = (
    'EyeBlinkLeft', 'EyeLookDownLeft', 'EyeLookInLeft', 'EyeLookOutLeft',
    'EyeLookUpLeft', 'EyeSquintLeft', 'EyeWideLeft', 'EyeBlinkRight',
    'EyeLookDownRight', 'EyeLookInRight', 'EyeLookOutRight', 'EyeLookUpRight',
    'EyeSquintRight', 'EyeWideRight', 'JawForward', 'JawRight', 'JawLeft',
    'JawOpen', 'MouthClose', 'MouthFunnel', 'MouthPucker', 'MouthRight',
    'MouthLeft', 'MouthSmileLeft', 'MouthSmileRight', 'MouthFrownLeft',
    'MouthFrownRight', 'MouthDimpleLeft', 'MouthDimpleRight',
    'MouthStretchLeft', 'MouthStretchRight', 'MouthRollLower',
    'MouthRollUpper', 'MouthShrugLower', 'MouthShrugUpper', 'MouthPressLeft',
    'MouthPressRight', 'MouthLowerDownLeft', 'MouthLowerDownRight',
    'MouthUpperUpLeft', 'MouthUpperUpRight', 'BrowDownLeft', 'BrowDownRight',
    'BrowInnerUp', 'BrowOuterUpLeft', 'BrowOuterUpRight', 'CheekPuff',
    'CheekSquintLeft', 'CheekSquintRight', 'NoseSneerLeft', 'NoseSneerRight',
    'TongueOut')
ROTATION_COLUMNS = ('HeadYaw', 'HeadPitch', 'HeadRoll', 'LeftEyeYaw',
                    'LeftEyePitch', 'LeftEyeRoll', 'RightEyeYaw',
                    'RightEyePitch', 'RightEyeRoll')
HEADER = ('Timecode', 'BlendShapeCount') + ARKIT_COLUMNS + ROTATION_COLUMNS


def live_link_name(name: str) -> str:
  """Live Link Face's name of a model blendshape: 'eyeBlink_L' ->
  'EyeBlinkLeft', 'jawOpen' -> 'JawOpen'."""
  base, _, side = name.partition('_')
  return base[:1].upper() + base[1:] + {'L': 'Left', 'R': 'Right'}.get(
      side, side)


def column_sources(names: Sequence[str]) -> Tuple[Tuple[int, ...], ...]:
  """Per ARKit column, the indices of the model blendshapes averaged into
  it: the one of the same name, else its _L and _R halves, else none."""
  renamed = [live_link_name(name) for name in names]
  sources = []
  for column in ARKIT_COLUMNS:
    same = tuple(k for k, n in enumerate(renamed) if n == column)
    halves = tuple(k for k, n in enumerate(renamed)
                   if n in (column + 'Left', column + 'Right'))
    sources.append(same or halves)
  return tuple(sources)


def timecode(seconds: float, fps: float) -> str:
  """'HH:MM:SS:FF.mmm' of a time in a video of `fps` frames a second."""
  whole = int(np.floor(seconds + 1e-9))
  frames = max(0.0, (seconds - whole) * fps)
  frame = int(np.floor(frames + 1e-6))
  fraction = min(999, int(round((frames - frame) * 1000)))
  return (f'{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}:'
          f'{frame:02d}.{max(0, fraction):03d}')


def csv_bytes(names: Sequence[str], weights: np.ndarray, times: np.ndarray,
              fps: float, rotations: np.ndarray) -> bytes:
  """The CSV of T frames.

  Args:
    names: (K,) the model's blendshape names.
    weights: (T, K) weights in [0, 1].
    times: (T,) seconds of each frame in the video.
    fps: the video's frame rate (for the timecodes' frame numbers).
    rotations: (T, 3) head (pitch, yaw, roll), radians.
  """
  chex.assert_shape(weights, (len(times), len(names)))
  chex.assert_shape(rotations, (len(times), 3))
  columns = np.zeros((len(times), len(ARKIT_COLUMNS) + 9))
  for k, sources in enumerate(column_sources(names)):
    if sources:
      columns[:, k] = np.mean(np.asarray(weights)[:, list(sources)], axis=1)
  head = len(ARKIT_COLUMNS)
  columns[:, head:head + 3] = np.asarray(rotations)[:, [1, 0, 2]]
  buffer = io.StringIO()
  buffer.write(','.join(HEADER) + '\n')
  count = len(ARKIT_COLUMNS) + len(ROTATION_COLUMNS)
  for seconds, row in zip(times, columns):
    values = ','.join(f'{v:.6f}' for v in row)
    buffer.write(f'{timecode(float(seconds), fps)},{count},{values}\n')
  return buffer.getvalue().encode()
