"""Generated hostile command lines: random flags of each command, with
random values, must end in a line and an exit status, never a traceback.

The cases are drawn from each command's own flag list (so new flags join
the fuzz by themselves) with a fixed seed, so a failure reproduces; its
command line is in the assertion message. Inputs that would start real
work (a photo to fit, a dataset to evaluate) are never valid here, so each
case costs the command's checks and setup only.
"""

import importlib
import random

from absl import flags
import pytest

import cli_harness
from mofa_ml import cli

COMMANDS = ('render', 'prepare', 'eval', 'reconstruct')
CASES_PER_COMMAND = 16
FLAGS_PER_CASE = 3
# Values a hostile or careless user types: empty, signs, overflow, not a
# number, lists, paths that do not exist or are not what the flag wants.
VALUES = ('', '0', '-1', '1e30', 'nan', 'inf', 'abc', '1,2', '-0.5',
          '99999999999999999999999', '/nonexistent/x', '{file}', '{folder}',
          'sample:nosuch', 'true')
# absl's own flags (help, logging) are not the commands'.
SKIPPED = ('help', 'helpfull', 'helpshort', 'helpxml', 'flagfile', 'undefok')


def _command_flags(command: str):
  """{name: values to draw from} for the flags `mofa <command>` defines:
  plausible values of the flag's type (which get past parsing to the
  command's own checks) and the hostile ones."""
  module = cli.SUBCOMMANDS[command][0]
  importlib.import_module(module)
  owned = list(flags.FLAGS.flags_by_module_dict().get(module, []))
  for owner, defined in flags.FLAGS.flags_by_module_dict().items():
    if owner.startswith('mofa_ml.commands.common'):
      owned += defined
  pools = {}
  for flag in owned:
    if flag.name in SKIPPED:
      continue
    kind = flag.flag_type()
    if kind.endswith('enum'):
      plausible = tuple(flag.parser.enum_values)
    else:
      plausible = {'int': ('-2', '0', '1', '3', '1000000'),
                   'float': ('-1', '0', '0.5', '1e9', 'nan'),
                   'bool': ('true', 'false'),
                   }.get(kind, ('{file}', '{folder}', '/nonexistent/x',
                                'a,b'))
    pools[flag.name] = plausible * 4 + VALUES
  cli_harness.forget_commands()
  return pools


def _cases(command: str, tmp_path):
  rng = random.Random(f'fuzz-{command}')
  pools = _command_flags(command)
  a_file = tmp_path / 'a_file.txt'
  a_file.write_text('not what any flag wants')
  folder = tmp_path / 'a_folder'
  folder.mkdir(exist_ok=True)
  for index in range(CASES_PER_COMMAND):
    chosen = rng.sample(sorted(pools), min(FLAGS_PER_CASE, len(pools)))
    values = {name: rng.choice(pools[name]).format(file=a_file,
                                                   folder=folder)
              for name in chosen}
    # Nothing real to work on, whatever else was drawn.
    values.setdefault('output', str(tmp_path / f'out{index}'))
    if command in ('prepare', 'reconstruct'):
      values['input'] = '/nonexistent/photo.jpg'
    if command == 'eval':
      # A set that does not build itself (the synthetic ones would).
      values['data_dir'] = str(tmp_path / 'no_datasets')
      values['dataset'] = 'mofa_faces/faces'

    if command == 'render':
      values.setdefault('image_size', '-1')  # refused before rendering
    yield [f'--{name}={value}' for name, value in values.items()]


@pytest.mark.parametrize('command', COMMANDS)
def test_random_flags_never_end_in_a_traceback(command, tmp_path):
  for args in _cases(command, tmp_path):
    result = cli_harness.run(command, *args)
    line = f'mofa {command} {" ".join(args)}'
    assert 'Traceback' not in result.stderr + result.stdout, (
        line, result.stderr[-2000:])
    assert result.code in (0, 1, 2), (line, result)
    if result.code:
      assert result.stderr.strip(), (line, 'a failure says why')
