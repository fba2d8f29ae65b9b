"""Turns off an XLA:CPU fusion that computes wrong values in some jaxlibs.

jaxlib 0.10.2 and 0.11 hand some broadcast-multiply-reduce fusions to
YNNPACK on the CPU, which returns wrong values without any error
(jax-ml/jax#39103). Here it hit the vertex normals' derivatives: with
(N, 3) normals and K (N, 3) fields, N = 6706, `n * sum(n * d, -1)` came
back wrong for every field after the first when jitted. XLA reads its flags
once, when JAX creates the CPU backend, so importing `mofa_ml` adds the flag
that turns the fusion off (it also made per-image fitting ~30% faster on a
2-core CPU) unless XLA_FLAGS already names it.
"""

import importlib.metadata
import os
import re
import sys
import warnings
from typing import Optional, Tuple

FLAG_NAME = '--xla_cpu_experimental_ynn_fusion_type'
# jaxlib versions known to ship the fusion (and the flag), [first, end).
AFFECTED = ((0, 10, 2), (0, 12, 0))


def jaxlib_version() -> Optional[Tuple[int, ...]]:
  """The installed jaxlib's (major, minor, patch), or None."""
  try:
    text = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return None
  numbers = re.findall(r'\d+', text)[:3]
  return tuple(int(n) for n in numbers) if len(numbers) == 3 else None


def apply(environ=os.environ) -> bool:
  """Adds `FLAG_NAME=` (the fusion off) to XLA_FLAGS for affected jaxlibs.

  Returns:
    Whether the flag was added (False: unaffected jaxlib, or the user's
    XLA_FLAGS already sets it).
  """
  version = jaxlib_version()
  existing = environ.get('XLA_FLAGS', '')
  if (version is None or not AFFECTED[0] <= version < AFFECTED[1] or
      FLAG_NAME in existing):
    return False
  environ['XLA_FLAGS'] = f'{existing} {FLAG_NAME}='.strip()
  if _backend_started():
    warnings.warn(
        f'JAX computed something before mofa_ml was imported, so XLA runs '
        f'without {FLAG_NAME}= and this jaxlib may compute wrong values on '
        f'the CPU (jax-ml/jax#39103): import mofa_ml first, or set '
        f'XLA_FLAGS={FLAG_NAME}= yourself.')
  return True


def _backend_started() -> bool:
  if 'jax' not in sys.modules:  # nothing computed; importing JAX costs 1.5 s
    return False
  # A private JAX function; without it, assume the backend is not started.
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return False
