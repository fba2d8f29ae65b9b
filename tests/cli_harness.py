"""Runs `mofa <command>` inside the test process, as a user would see it.

A subprocess pays seconds of JAX import per case; the hostile-input tables
run dozens of cases, so they call `cli.main` here instead. Each run imports
the subcommand afresh and drops its flags afterwards: two subcommands
define the same flag names (--output), and a flag value must not leak from
one case into the next.
"""

import contextlib
import io
import os
import select
import signal
import subprocess
import sys
import time
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


# The program starts as from a terminal: SIGINT unblocked and raising
# KeyboardInterrupt, whatever the test process's own state (a blocked or
# ignored SIGINT is inherited by a child, and Python then installs no
# handler).
_WITH_DEFAULT_SIGINT = (
    'import runpy, signal, sys\n'
    'signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])\n'
    'signal.signal(signal.SIGINT, signal.default_int_handler)\n'
    "sys.argv = ['mofa'] + sys.argv[1:]\n"
    "runpy.run_module('mofa_ml.cli', run_name='__main__')\n")


def interrupted(*args: str, after: str, delay: float = 0.0,
                timeout: float = 300.0) -> Result:
  """`mofa *args` as a program of its own, sent Ctrl-C (SIGINT to its
  process group, as a terminal does) `delay` seconds after `after` appeared
  on its stderr. The import of each module is a line there too
  (`import time: ... | <module>`, for `import` statements): `after` can
  name a module the command imports; those lines are dropped from the
  result."""
  process = subprocess.Popen(
      [sys.executable, '-c', _WITH_DEFAULT_SIGINT, *args],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, start_new_session=True,
      env=dict(os.environ, PYTHONPROFILEIMPORTTIME='1'))
  err, deadline = b'', time.monotonic() + timeout
  try:
    signal_at = None
    while signal_at is None or time.monotonic() < signal_at:
      assert time.monotonic() < deadline, ('no', after, err.decode())
      # Read on while waiting: a full pipe would stop the program.
      if select.select([process.stderr], [], [], 0.05)[0]:
        chunk = os.read(process.stderr.fileno(), 1 << 16)
        assert chunk, ('ended before', after, err.decode())
        err += chunk
      if signal_at is None and after.encode() in err:
        signal_at = time.monotonic() + delay
    os.killpg(process.pid, signal.SIGINT)
    out, rest = process.communicate(timeout=timeout)
  finally:
    if process.poll() is None:
      process.kill()
  text = (err + rest).decode(errors='replace')
  lines = [line for line in text.split('\n')
           if not line.startswith('import time:')]
  return Result(process.returncode, out.decode(), '\n'.join(lines))


def assert_stopped_by_ctrl_c(result: Result, command: str):
  """Ctrl-C: status 130, its own last line on stderr, no traceback."""
  assert result.code == 128 + signal.SIGINT, result
  assert 'Traceback' not in result.stderr, result.stderr
  lines = [line for line in result.stderr.split('\n') if line.strip()]
  assert lines[-1] == f'mofa {command}: stopped by SIGINT', result.stderr
