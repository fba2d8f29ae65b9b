"""Runs `mofa <command>` inside the test process, as a user would see it.

A subprocess pays seconds of JAX import per case; the hostile-input tables
run dozens of cases, so they call `cli.main` here instead. Each run imports
the subcommand afresh and drops its flags afterwards: two subcommands
define the same flag names (--output), and a flag value must not leak from
one case into the next.
"""

import contextlib
import io
import sys
import traceback
from typing import NamedTuple

from absl import app
from absl import flags

from mofa_ml import cli


class Result(NamedTuple):
  code: int
  stdout: str
  stderr: str


def forget_commands():
  """Drops the imported subcommand modules and their flags, so that the
  next import defines them afresh; the flags of libraries they imported
  (grain's) stay, as the libraries stay imported."""
  for owner, owned in flags.FLAGS.flags_by_module_dict().items():
    if owner.startswith('mofa_ml.commands.'):
      for flag in {flag.name for flag in owned}:
        if flag in flags.FLAGS:
          delattr(flags.FLAGS, flag)
  for name in [name for name in sys.modules
               if name.startswith('mofa_ml.commands.')]:
    del sys.modules[name]


def run(*args: str) -> Result:
  """`mofa *args` in this process: its exit status, stdout and stderr."""
  app.define_help_flags()  # once per process: keep them across runs
  forget_commands()
  saved = (list(sys.argv), sys.modules['__main__'].__doc__)
  out, err = io.StringIO(), io.StringIO()
  code = 0
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      try:
        code = cli.main(['mofa', *args]) or 0
      except SystemExit as e:
        if isinstance(e.code, str):
          err.write(e.code + '\n')  # as the interpreter prints it
          code = 1
        else:
          code = e.code or 0
      except Exception:  # pylint: disable=broad-except
        traceback.print_exc()  # what the interpreter would print, and exit 1
        code = 1
  finally:
    sys.argv[:], sys.modules['__main__'].__doc__ = saved
    forget_commands()
    flags.FLAGS.unparse_flags()
  return Result(code, out.getvalue(), err.getvalue())


def assert_one_line_failure(result: Result, *expected: str):
  """A refusal: non-zero status, one line naming the problem, no
  traceback."""
  assert result.code != 0, result
  assert 'Traceback' not in result.stderr, result.stderr
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert lines, result
  text = '\n'.join(lines)
  for part in expected:
    assert part in text, (part, text)
  return text
