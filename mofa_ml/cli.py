"""The `mofa` command: `mofa <subcommand> [--flags]`.

Each subcommand is a module with absl flags and a `main(argv)`; only the
chosen one is imported, so flag names never clash between subcommands.
"""

import contextlib
import importlib
import logging
import os
import signal
import sys

from absl import app
from absl import flags

SUBCOMMANDS = {
    'reconstruct': ('mofa_ml.commands.reconstruct',
                    'photos -> 3D faces (meshes, textures, parameters, '
                    'pictures)'),
    'render': ('mofa_ml.commands.render',
               'render the face model (mean face or random) under SH light'),
    'prepare': ('mofa_ml.commands.prepare',
                'photos, folders or videos -> cropped faces with landmarks '
                '(TFDS)'),
    'train': ('mofa_ml.commands.train',
              'two-stage self-supervised training (absl + ml_collections)'),
    'eval': ('mofa_ml.commands.eval',
             'a checkpoint or per-image fitting over a dataset -> the '
             "paper's tables and plots"),
}


def one_line(error: BaseException) -> str:
  """An exception's message on one line, without repr quoting artefacts."""
  text = str(error).replace("\\'", "'").replace('\\n', ' ')
  text = ' '.join(text.split())
  if len(text) > 1 and text[0] == text[-1] and text[0] in '\'"':
    text = text[1:-1]  # the repr quotes of a KeyError's message
  return text or type(error).__name__


def usage() -> str:
  lines = ['usage: mofa <subcommand> [--flags]', '', 'subcommands:']
  width = max(len(name) for name in SUBCOMMANDS)
  for name, (_, summary) in SUBCOMMANDS.items():
    lines.append(f'  {name.ljust(width)}  {summary}')
  lines += ['', "Run 'mofa <subcommand> --help' for its flags."]
  return '\n'.join(lines)


class StoppedAtOnce(Exception):
  """A command stopped by a signal in the middle of its work, after saying
  so itself: `main` ends the program with `status` as Ctrl-C's own."""

  def __init__(self, status: int):
    super().__init__(f'stopped, exit status {status}')
    self.status = status


@contextlib.contextmanager
def interrupts_held():
  """Holds Ctrl-C back while a set of files is written, so that it cannot
  leave some of them: the KeyboardInterrupt comes after the last."""
  received = []
  previous = signal.signal(signal.SIGINT, lambda *_: received.append(1))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
  if received:
    raise KeyboardInterrupt


def main(argv=None):
  as_program = argv is None  # the `mofa` program, not a caller in Python
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ('-h', '--help', 'help'):
    print(usage())
    return 0 if len(argv) >= 2 else 2
  name = argv[1]
  if name not in SUBCOMMANDS:
    print(f"mofa: unknown subcommand '{name}'\n\n{usage()}", file=sys.stderr)
    return 2
  try:
    return _run(name, argv)
  except KeyboardInterrupt:
    # Ctrl-C in a command without its own handling (reconstruct and train
    # stop by themselves): files are written whole or not at all, so there
    # is nothing to undo.
    print(f'mofa {name}: stopped by SIGINT', file=sys.stderr)
    status = 128 + signal.SIGINT
  except StoppedAtOnce as e:
    status = e.status
  if not as_program:
    return status
  util = sys.modules.get('multiprocessing.util')
  if util:  # what exit does for worker pools: else a warning of leaks
    util._run_finalizers(0)  # pylint: disable=protected-access
  sys.stdout.flush()
  sys.stderr.flush()
  # An interrupted XLA compilation crashes the interpreter's shutdown
  # (a segmentation fault, after up to a minute).
  os._exit(status)  # pylint: disable=protected-access


def _run(name, argv):
  """Runs subcommand `name` with absl; its exit status."""
  # Imported here, inside main's Ctrl-C handling: it imports JAX (seconds).
  from mofa_ml import compilation_cache  # pylint: disable=g-import-not-at-top
  # JAX logs every accelerator plugin it fails to find; users need not see it.
  logging.getLogger('jax._src.xla_bridge').setLevel(logging.WARNING)
  compilation_cache.enable()
  module = importlib.import_module(SUBCOMMANDS[name][0])
  # Libraries (orbax, TFDS) log routine steps at INFO through absl; start
  # at WARNING, which a later --verbosity on the command line overrides.
  # absl's --help prints the __main__ module's docstring and the flags of
  # the module that sys.argv[0] names: point both at the subcommand.
  sys.modules['__main__'].__doc__ = module.__doc__
  sys.argv[0] = module.__name__
  started = []

  def usage_error(message: str):
    # absl would print the whole help before the one line that matters.
    print(f'mofa {name}: {message}\nsee mofa {name} --help', file=sys.stderr)
    sys.exit(2)

  def parse_flags(command_argv):
    try:
      return flags.FLAGS(command_argv)
    except flags.Error as e:
      usage_error(one_line(e))

  def run_command(command_argv):
    started.append(True)
    try:
      return module.main(command_argv)
    except app.UsageError as e:
      usage_error(one_line(e))

  try:
    app.run(run_command, argv=[f'mofa {name}', '--verbosity=-1'] + argv[2:],
            flags_parser=parse_flags)
  except SystemExit as e:
    # absl ends --help with status 1; asking for help is not a failure.
    if e.code == 1 and set(argv[2:]) & {'--help', '-h', '--helpfull',
                                        '--helpshort', '-?'}:
      return 0
    raise
  except Exception as e:  # pylint: disable=broad-except
    if started:
      raise
    # A flag value a parser rejected with its own exception (e.g. an
    # unknown --config.<field>): one line, not a traceback.
    print(f'mofa {name}: bad flag: {one_line(e)}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
