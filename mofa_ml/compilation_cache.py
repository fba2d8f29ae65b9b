"""JAX's persistent compilation cache for the `mofa` commands.

Fitting and the network compile for tens of seconds on a CPU; with the cache,
a second `mofa reconstruct` (same model, shapes and JAX version) loads the
compiled programs from disk instead. The folder is
`$MOFA_COMPILATION_CACHE`, else `$XDG_CACHE_HOME/mofa_ml/jax` (default
`~/.cache/mofa_ml/jax`); `MOFA_COMPILATION_CACHE=off` turns it off.

The cache skips compiling, not tracing: a fit's program takes 3-4 s to trace
and lower in every new process. `call_exported` keeps such a program's
traced form (`jax.export`) in the same folder, so that a later process only
loads it.
"""

import functools
import hashlib
import os
import pickle
import sys
import tempfile
from typing import Any, Callable, Dict, Optional, Tuple

import jax
from jax import export

from mofa_ml import image_io

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


# Where `call_exported` keeps the traced programs, under the cache folder.
EXPORTED_FOLDER = 'exported'


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
  """A hash of the package's Python source: an exported program is traced
  from it, so any edit must not reuse programs traced before."""
  digest = hashlib.sha256()
  package = os.path.dirname(os.path.abspath(__file__))
  for folder, subfolders, names in os.walk(package):
    subfolders.sort()
    for name in sorted(names):
      if name.endswith('.py'):
        with open(os.path.join(folder, name), 'rb') as f:
          digest.update(name.encode() + f.read())
  return digest.hexdigest()


@functools.lru_cache(maxsize=32)
def _program(path: str, function: Callable, tree: Any,
             static: Tuple[Tuple[str, Any], ...],
             avals: Tuple[jax.ShapeDtypeStruct, ...]
             ) -> Optional[Tuple[export.Exported, Any]]:
  """The exported program of `function` at `path` (read, or traced and
  written there) and its output's tree structure; None where it cannot be
  exported."""
  try:
    with open(path, 'rb') as f:
      blob, out_tree = pickle.load(f)
    return export.deserialize(bytearray(blob)), out_tree
  except Exception:  # pylint: disable=broad-except
    pass  # absent, damaged or from elsewhere: traced anew and rewritten
  out_trees = []

  def flat(*leaves):
    out = function(*jax.tree_util.tree_unflatten(tree, leaves), **dict(static))
    out_leaves, out_tree = jax.tree_util.tree_flatten(out)
    out_trees.append(out_tree)
    return out_leaves

  try:
    exported = export.export(jax.jit(flat))(*avals)
  except Exception:  # pylint: disable=broad-except
    # Not exportable (or failing): the caller runs `function` itself,
    # which raises the error again where it is a real one.
    return None
  try:
    image_io.atomic_write_bytes(
        path, pickle.dumps((exported.serialize(), out_trees[0])),
        overwrite=True)
  except OSError:
    pass  # an unwritable folder: the program still runs, traced each time
  return exported, out_trees[0]


def call_exported(name: str, function: Callable, args: Tuple,
                  static: Dict[str, Any],
                  directory: Optional[str] = None) -> Any:
  """`function(*args, **static)` through its traced program kept on disk.

  Args:
    name: the program's name in the folder.
    function: a jitted function of array pytrees `args`, with hashable
      static keyword arguments `static` (their repr enters the key).
    args: tuple of pytrees of arrays.
    static: the static arguments.
    directory: the cache folder; default JAX's (set by `enable`). Without
      one, or called inside a trace, this is `function(*args, **static)`.

  Returns:
    What `function` returns. The program is keyed by the arguments' tree,
    shapes and dtypes, `static`, the JAX version and backend, and the
    package's source, so a change to any of them traces it anew.
  """
  directory = directory or jax.config.jax_compilation_cache_dir
  leaves, tree = jax.tree_util.tree_flatten(args)
  if not directory or not all(
      isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
      for x in leaves):
    return function(*args, **static)
  static = tuple(sorted(static.items()))
  avals = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves)
  key = hashlib.sha256(repr((
      name, static, str(tree), [(a.shape, str(a.dtype)) for a in avals],
      jax.__version__, jax.default_backend(), _source_digest())).encode())
  path = os.path.join(directory, EXPORTED_FOLDER,
                      f'{name}-{key.hexdigest()[:32]}')
  program = _program(path, function, tree, static, avals)
  if program is None:
    return function(*args, **dict(static))
  exported, out_tree = program
  return jax.tree_util.tree_unflatten(out_tree, exported.call(*leaves))
