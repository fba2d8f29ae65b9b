"""JAX's persistent compilation cache for the `mofa` commands.

Fitting and the network compile for tens of seconds on a CPU; with the cache,
a second `mofa reconstruct` (same model, shapes and JAX version) loads the
compiled programs from disk instead. The folder is
`$MOFA_COMPILATION_CACHE`, else `$XDG_CACHE_HOME/mofa_ml/jax` (default
`~/.cache/mofa_ml/jax`); `MOFA_COMPILATION_CACHE=off` turns it off.
"""

import os
import sys
import tempfile
from typing import Optional

import jax

ENVIRONMENT_VARIABLE = 'MOFA_COMPILATION_CACHE'
# Programs that compile faster than this are not worth a disk round trip.
MIN_COMPILE_SECONDS = 0.5


def cache_directory() -> Optional[str]:
  """The cache folder the environment asks for, or None for no cache."""
  chosen = os.environ.get(ENVIRONMENT_VARIABLE)
  if chosen is not None:
    return None if chosen.strip().lower() in ('', 'off', '0', 'none') else (
        os.path.expanduser(chosen))
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'mofa_ml', 'jax')


def enable(directory: Optional[str] = None,
           min_compile_seconds: float = MIN_COMPILE_SECONDS) -> Optional[str]:
  """Turns the persistent cache on (before anything is compiled).

  Args:
    directory: the folder; default `cache_directory()`.
    min_compile_seconds: cache only programs that took this long.

  Returns:
    The folder in use, or None where the cache is off or the folder cannot
    be created or written (said in one line on stderr; the commands then
    simply compile as usual).
  """
  directory = directory or cache_directory()
  if directory is None:
    return None
  try:
    os.makedirs(directory, exist_ok=True)
    # JAX itself warns at length on every program it fails to store.
    with tempfile.TemporaryFile(dir=directory):
      pass
  except OSError:
    print(f'mofa: compilation cache {directory} not writable; compiling '
          'every run', file=sys.stderr)
    return None
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs',
                    min_compile_seconds)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return directory
