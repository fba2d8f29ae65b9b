"""The persistent compilation cache (created, then hit by a second process)
and the traced programs kept beside it."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofa_ml import compilation_cache
from mofa_ml import samples

SCRIPT = '''
import json, sys
import jax, jax.numpy as jnp
from mofa_ml import compilation_cache
hits = []
jax.monitoring.register_event_listener(
    lambda name, **kwargs: hits.append(name)
    if name == '/jax/compilation_cache/cache_hits' else None)
folder = compilation_cache.enable(min_compile_seconds=0.0)
f = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T + 3.0)
f(jnp.ones((64, 64))).block_until_ready()
print(json.dumps({'folder': folder, 'hits': len(hits)}))
'''


def _run(env):
  result = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True,
                          text=True, env=env, timeout=300)
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_cache_folder_is_created_and_reused(tmp_path):
  folder = str(tmp_path / 'cache' / 'jax')
  env = dict(os.environ, MOFA_COMPILATION_CACHE=folder)
  first = _run(env)
  assert first == {'folder': folder, 'hits': 0}
  assert os.listdir(folder)  # the compiled program was written
  second = _run(env)
  assert second['hits'] >= 1  # and read back by a new process


def test_the_environment_chooses_or_disables_the_folder(monkeypatch,
                                                        tmp_path):
  monkeypatch.setenv('MOFA_COMPILATION_CACHE', 'off')
  assert compilation_cache.cache_directory() is None
  monkeypatch.delenv('MOFA_COMPILATION_CACHE')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  assert compilation_cache.cache_directory() == str(tmp_path / 'mofa_ml' /
                                                    'jax')


EXPORT_SCRIPT = '''
import functools, json, sys
import jax, jax.numpy as jnp
from mofa_ml import compilation_cache
compilation_cache.enable()
traces = []

@functools.partial(jax.jit, static_argnames=('power',))
def combine(pair, scale, power):
  traces.append(power)  # runs only while tracing
  return {'sum': pair[0] + pair[1] ** power * scale, 'first': pair[0]}

args = ((jnp.arange(3.0), jnp.full(3, 2.0)), jnp.float32(0.5))
out = compilation_cache.call_exported('combine', combine, args,
                                      {'power': int(sys.argv[1])})
print(json.dumps({'traces': len(traces), 'sum': out['sum'].tolist(),
                  'first': out['first'].tolist()}))
'''


def _run_exported(env, power):
  result = subprocess.run([sys.executable, '-c', EXPORT_SCRIPT, str(power)],
                          capture_output=True, text=True, env=env,
                          timeout=300)
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_traced_program_is_kept_and_run_untraced_by_a_new_process(
    tmp_path):
  folder = tmp_path / 'jax'
  env = dict(os.environ, MOFA_COMPILATION_CACHE=str(folder))
  squares = {'sum': [2.0, 3.0, 4.0], 'first': [0.0, 1.0, 2.0]}
  assert _run_exported(env, 2) == dict(squares, traces=1)
  kept = folder / compilation_cache.EXPORTED_FOLDER
  assert len(os.listdir(kept)) == 1
  assert _run_exported(env, 2) == dict(squares, traces=0)
  # The static argument is part of the key.
  cubes = {'sum': [4.0, 5.0, 6.0], 'first': [0.0, 1.0, 2.0]}
  assert _run_exported(env, 3) == dict(cubes, traces=1)
  assert len(os.listdir(kept)) == 2
  # A damaged file is traced anew and rewritten.
  for name in os.listdir(kept):
    (kept / name).write_bytes(b'not a program')
  assert _run_exported(env, 2) == dict(squares, traces=1)
  assert _run_exported(env, 2) == dict(squares, traces=0)


def test_without_a_folder_or_inside_a_trace_the_function_runs_as_it_is(
    tmp_path):
  traces = []

  @jax.jit
  def double(x):
    traces.append(x.shape)
    return 2 * x

  run = lambda x, folder: compilation_cache.call_exported(
      'double', double, (x,), {}, directory=folder)
  np.testing.assert_allclose(run(jnp.ones(2), str(tmp_path)), [2.0, 2.0])
  assert os.listdir(tmp_path / compilation_cache.EXPORTED_FOLDER)
  assert jax.jit(lambda x: run(x, str(tmp_path / 'inner')) + 1)(
      jnp.ones(3)).tolist() == [3.0, 3.0, 3.0]
  assert not (tmp_path / 'inner').exists()  # traced into the outer program
  assert run(jnp.ones(4), None).tolist() == [2.0] * 4  # no folder
  # A new shape is a new program.
  np.testing.assert_allclose(run(jnp.ones((2, 2)), str(tmp_path)),
                             np.full((2, 2), 2.0))
  assert len(os.listdir(tmp_path / compilation_cache.EXPORTED_FOLDER)) == 2
  # A program that cannot be exported (a host callback) runs as it is.
  host = jax.jit(lambda x: jax.pure_callback(
      lambda y: np.asarray(y) * 3, jax.ShapeDtypeStruct(x.shape, x.dtype), x))
  np.testing.assert_allclose(compilation_cache.call_exported(
      'host', host, (jnp.ones(2),), {}, directory=str(tmp_path)), [3.0, 3.0])
  assert len(os.listdir(tmp_path / compilation_cache.EXPORTED_FOLDER)) == 2


@pytest.mark.heavy
def test_a_photo_fits_the_same_through_its_kept_program(tmp_path):
  """The first run traces and keeps the fit and the ARKit refinement, the
  second runs what it kept, the third (no cache) traces and compiles as
  before: one mesh, one set of ARKit weights."""
  photo = samples.sample_faces()['takeo'].image_path
  meshes = []
  for run, folder in enumerate((str(tmp_path / 'jax'),) * 2 + ('off',)):
    output = tmp_path / f'run{run}'
    result = subprocess.run(
        [sys.executable, '-m', 'mofa_ml.cli', 'reconstruct',
         f'--input={photo}', f'--output={output}', '--fit_steps=4,10'],
        capture_output=True, text=True, timeout=900,
        env=dict(os.environ, MOFA_COMPILATION_CACHE=folder))
    assert result.returncode == 0, result.stderr
    arkit = json.loads((output / 'takeo' /
                        'reconstruction.json').read_text())['arkit']
    meshes.append(((output / 'takeo' / 'mesh_final.ply').read_bytes(),
                   arkit))
    if run == 0:
      kept = os.listdir(tmp_path / 'jax' / compilation_cache.EXPORTED_FOLDER)
      assert sorted(name.split('-')[0] for name in kept) == ['fit', 'refine']
  assert meshes[0] == meshes[1] == meshes[2]
