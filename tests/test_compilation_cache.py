"""The persistent compilation cache: created, then hit by a second process."""

import json
import os
import subprocess
import sys

from mofa_ml import compilation_cache

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
