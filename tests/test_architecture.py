"""The package's layers: which modules may import which, no cycles, and
every module importable on its own."""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'mofa_ml'

# Lower layers never import higher ones (module-level imports).
# The package's own __init__ only applies the XLA workaround: the bottom.
LAYERS = (
    ('mofa_ml.xla_workaround',),
    ('mofa_ml.image_io', 'mofa_ml.samples', 'mofa_ml.compilation_cache',
     'mofa_ml.configs', 'mofa_ml.rendering'),
    ('mofa_ml.facemodel', 'mofa_ml.metrics'),
    ('mofa_ml.data',),
    ('mofa_ml.learning',),
    ('mofa_ml.fitting',),
    ('mofa_ml.export',),
    ('mofa_ml.reconstruction',),
    ('mofa_ml.evaluation',),
    ('mofa_ml.commands', 'mofa_ml.cli'),
)
MAX_LINES = 400


def _modules():
  for path in sorted(PACKAGE.rglob('*.py')):
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
    yield name, path


def _layer(module: str) -> int:
  if module == 'mofa_ml':
    return 0
  best, rank = -1, None
  for index, prefixes in enumerate(LAYERS):
    for prefix in prefixes:
      if (module == prefix or module.startswith(prefix + '.')) and len(
          prefix) > best:
        best, rank = len(prefix), index
  assert rank is not None, f'{module} is in no layer'
  return rank


def _imports(path: pathlib.Path):
  """mofa_ml modules imported at module level (not inside functions)."""
  tree = ast.parse(path.read_text())
  for node in tree.body:
    if isinstance(node, ast.ImportFrom) and (node.module or '').startswith(
        'mofa_ml'):
      for alias in node.names:
        candidate = f'{node.module}.{alias.name}'
        yield candidate if (PACKAGE.parent / (candidate.replace('.', '/') +
                                              '.py')).exists() else (
                                                  node.module)
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith('mofa_ml'):
          yield alias.name


def test_layers_only_import_downwards_and_there_is_no_cycle():
  graph = {name: set(_imports(path)) for name, path in _modules()}
  upward = [f'{module} -> {imported}' for module, imports in graph.items()
            for imported in imports if _layer(imported) > _layer(module)]
  assert not upward, upward
  state = {}

  def visit(module, trail):
    if state.get(module) == 'done':
      return
    assert state.get(module) != 'open', ' -> '.join(trail + [module])
    state[module] = 'open'
    for imported in graph.get(module, ()):
      visit(imported, trail + [module])
    state[module] = 'done'

  for module in graph:
    visit(module, [])


@pytest.mark.heavy
def test_every_module_imports_alone():
  names = [name for name, _ in _modules()]
  # One fresh interpreter per module: an import cycle that a previously
  # imported module would hide shows up here.
  script = ('import subprocess, sys\n'
            'failed = [n for n in sys.argv[1:] if subprocess.run('
            '[sys.executable, "-c", f"import {n}"], capture_output=True)'
            '.returncode]\n'
            'print(failed)\n')
  result = subprocess.run([sys.executable, '-c', script, *names],
                          capture_output=True, text=True, timeout=1200)
  assert result.stdout.strip() == '[]', result.stdout + result.stderr


def test_no_module_is_over_the_size_limit():
  long = {name: len(path.read_text().splitlines())
          for name, path in _modules()}
  assert not {n: c for n, c in long.items() if c > MAX_LINES}
