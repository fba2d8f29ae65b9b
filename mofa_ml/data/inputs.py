"""Walking --input folders: every real folder once, every file once.

A recursive glob follows symbolic links: a link to a parent folder
(`a/loop -> ..`) makes it walk for ever, and a link to the folder itself
(`self -> .`) lists each photo again under every prefix `self/self/...`
until the path is too long (41 copies). Here a folder is entered only the
first time its (device, inode) is seen, and a file found under several
names (links, hard links, overlapping inputs) is kept once, under the name
that goes through the fewest links.

`list_inputs` expands the --input values of `mofa prepare` and
`mofa reconstruct` (folders, photos, videos, .txt lists) into items.
"""

import dataclasses
import os
from typing import List, NamedTuple, Optional, Sequence, Set, Tuple

FileKey = Tuple[int, int]  # (st_dev, st_ino)

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.pgm', '.bmp', '.webp',
                    '.tif', '.tiff')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v')


@dataclasses.dataclass(frozen=True)
class Item:
  """One photo, or one frame of a video (frame >= 0)."""
  source: str
  frame: int = -1

  @property
  def label(self) -> str:
    return self.source if self.frame < 0 else f'{self.source}#{self.frame}'


class Walk(NamedTuple):
  """What a folder holds.

  Attributes:
    files: the wanted files, sorted, each real file once.
    problems: one line per folder that could not be read.
    others: suffixes of the files of other types (for a helpful error).
  """
  files: List[str]
  problems: List[str]
  others: List[str]


def file_key(path: str) -> FileKey:
  """The identity of the file (or folder) a path leads to.

  Raises:
    OSError: it cannot be stat'ed.
  """
  stat = os.stat(path)
  return stat.st_dev, stat.st_ino


def walk(folder: str, suffixes: Sequence[str],
         seen: Optional[Set[FileKey]] = None) -> Walk:
  """The files under `folder` (recursively) whose suffix is in `suffixes`.

  Args:
    folder: the folder to walk.
    suffixes: lower-case suffixes with the dot ('.jpg').
    seen: identities of files already taken (by earlier inputs); the files
      found here are added to it.

  Returns:
    A `Walk`; unreadable folders are problems, never fatal.
  """
  seen = set() if seen is None else seen
  entered: Set[FileKey] = set()
  found = []  # (links on the way, path, key)
  problems, others = [], set()
  # Folders reached without a link are walked before those reached
  # through one, so a photo keeps its plain path where it has one.
  plain, linked = [(folder, 0)], []
  while plain or linked:
    path, links = plain.pop() if plain else linked.pop(0)
    try:
      key = file_key(path)
      if key in entered:
        continue
      entered.add(key)
      with os.scandir(path) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as e:
      problems.append(f'{path}: unreadable folder ({e.strerror or e})')
      continue
    for entry in entries:
      try:
        is_link = entry.is_symlink()
        if entry.is_dir():
          (linked if is_link else plain).append((entry.path,
                                                 links + is_link))
          continue
        if not entry.is_file():
          continue  # a broken link, a socket, ...
        suffix = os.path.splitext(entry.name)[1].lower()
        if suffix not in suffixes:
          others.add(suffix or '(no suffix)')
          continue
        stat = entry.stat()  # of the target, for a link
        key = stat.st_dev, stat.st_ino
      except OSError as e:
        problems.append(f'{entry.path}: unreadable ({e.strerror or e})')
        continue
      found.append((links + is_link, entry.path, key))
  files = []
  for _, path, key in sorted(found):
    if key not in seen:
      seen.add(key)
      files.append(path)
  return Walk(sorted(files), problems, sorted(others))


def list_inputs(entries: List[str], frame_step: int) -> Tuple[List[Item],
                                                              List[str]]:
  """Expands folders, lists and videos into items.

  Folders are walked by `walk` (each real folder and file once,
  whatever links they hold); a file named twice, by two inputs or through
  links, is listed once.

  Returns:
    items in a fixed order, and problems (missing paths, empty or
    unreadable folders, unreadable videos and lists), one line each.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  items, problems = [], []
  seen = set()  # identities of the files taken

  def add_file(path, key=None):
    try:
      key = key or file_key(path)
    except OSError as e:
      problems.append(f'{path}: unreadable ({e.strerror or e})')
      return
    if key in seen:
      return
    seen.add(key)
    extension = os.path.splitext(path)[1].lower()
    if extension in VIDEO_EXTENSIONS:
      capture = cv2.VideoCapture(path)
      count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
      capture.release()
      if count <= 0:
        problems.append(f'{path}: unreadable video')
        return
      items.extend(Item(path, frame) for frame in
                   range(0, count, max(1, frame_step)))
    elif extension == '.txt':
      try:
        with open(path, encoding='utf-8') as f:
          listed = [line.strip() for line in f if line.strip()]
      except (OSError, UnicodeDecodeError) as e:
        problems.append(f'{path}: not a readable UTF-8 list of files ({e})')
        return
      base = os.path.dirname(os.path.abspath(path))
      for entry in listed:
        entry = entry if os.path.isabs(entry) else os.path.join(base, entry)
        if os.path.isfile(entry):
          add_file(entry)
        else:
          problems.append(f'{entry}: listed in {path} but not found')
    else:
      items.append(Item(path))

  wanted = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
  for path in entries:
    if not path.strip():
      # os.path.abspath('') is the current folder: never what was meant.
      problems.append('--input is empty; name a photo, folder, video or '
                      'list')
      continue
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
      walked = walk(path, wanted)
      problems += walked.problems
      for file in walked.files:
        add_file(file)
      if not walked.files and not walked.problems:
        problems.append(f'{path}: ' + (
            f'only {", ".join(walked.others)} files (supported: '
            f'{", ".join(wanted)})' if walked.others else 'no files'))
    elif os.path.isfile(path):
      add_file(path)
    else:
      problems.append(f'{path}: not found')
  return items, problems
