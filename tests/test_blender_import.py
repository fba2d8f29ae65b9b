"""The .glb in real clients: Blender's glTF importer (headless) and the
Khronos glTF validator; each skipped where its program is not installed."""

import io
import json
import os
import shutil
import subprocess
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from mofa_ml.facemodel import arkit
from mofa_ml.export import animation
from mofa_ml.fitting import fit

BLENDER_SCRIPT = textwrap.dedent('''
    import json, sys
    import bpy
    bpy.ops.wm.read_factory_settings(use_empty=True)
    # Shading from the file's normals: the default ('NORMALS') fails in
    # Debian's Blender 3.4 with numpy >= 1.24 (np.bool).
    bpy.ops.import_scene.gltf(filepath=sys.argv[-2], import_shading='SMOOTH')
    mesh = [o for o in bpy.data.objects if o.type == 'MESH'][0]
    keys = mesh.data.shape_keys.key_blocks
    images = [i for i in bpy.data.images if i.size[0] > 0]
    with open(sys.argv[-1], 'w') as f:
      json.dump({'vertices': len(mesh.data.vertices),
                 'keys': [k.name for k in keys[1:]],
                 'values': [k.value for k in keys[1:]],
                 'images': [list(i.size) for i in images],
                 'textured': any(n.type == 'TEX_IMAGE' for m in
                                 mesh.data.materials for n in
                                 m.node_tree.nodes)}, f)
''')

VALIDATOR_SCRIPT = textwrap.dedent('''
    const validator = require('gltf-validator');
    const data = new Uint8Array(require('fs').readFileSync(process.argv[2]));
    validator.validateBytes(data).then(
        (report) => console.log(JSON.stringify(report.issues)));
''')


@pytest.fixture(scope='module')
def face_glb(ict_model, tmp_path_factory):
  """A .glb of the mean face with a texture and known default weights."""
  import PIL.Image  # pylint: disable=g-import-not-at-top
  rig = arkit.load_rig(ict_model)
  layout = fit.fit_layout(ict_model)
  zeros = np.zeros((ict_model.num_vertices, 3))
  picture = io.BytesIO()
  PIL.Image.new('RGB', (64, 64), (200, 140, 110)).save(picture, 'PNG')
  weights = np.round(np.linspace(0.0, 1.0, 53), 3)
  path = tmp_path_factory.mktemp('glb') / 'face.glb'
  params = layout.split(jnp.zeros(layout.size))
  path.write_bytes(animation.face_glb(
      ict_model, rig, params, zeros, zeros, picture.getvalue(),
      animation.BlendshapeFace(weights, 0.0, params.shape)))
  return path, rig, weights


@pytest.mark.skipif(shutil.which('blender') is None,
                    reason='Blender is not installed (Debian: apt-get '
                    'install blender); the .glb import is not checked')
def test_blender_imports_mesh_texture_and_53_shape_keys(face_glb, ict_model,
                                                        tmp_path):
  path, rig, weights = face_glb
  script = tmp_path / 'import_glb.py'
  script.write_text(BLENDER_SCRIPT)
  report = tmp_path / 'report.json'
  # Blender's Python finds its home from the first python on PATH: that of
  # Blender's own folder (a Debian blender: /usr/bin), not a virtualenv's.
  blender = shutil.which('blender')
  env = {key: value for key, value in os.environ.items()
         if not key.startswith('PYTHON')}
  env['PATH'] = os.path.dirname(blender) + os.pathsep + env.get('PATH', '')
  result = subprocess.run(
      [blender, '-b', '--factory-startup', '--python', str(script), '--',
       str(path), str(report)], capture_output=True, text=True, timeout=300,
      env=env)
  assert report.exists(), result.stdout[-2000:] + result.stderr[-2000:]
  imported = json.loads(report.read_text())
  assert imported['vertices'] == ict_model.num_vertices
  assert imported['keys'] == list(rig.names)
  np.testing.assert_allclose(imported['values'], weights, atol=1e-6)
  assert imported['images'] == [[64, 64]] and imported['textured']


def _validator_found() -> bool:
  if shutil.which('node') is None:
    return False
  found = subprocess.run(['node', '-e', "require.resolve('gltf-validator')"],
                         capture_output=True, check=False)
  return found.returncode == 0


@pytest.mark.skipif(not _validator_found(),
                    reason='node with the npm package gltf-validator is not '
                    'installed (npm install gltf-validator, NODE_PATH)')
def test_khronos_validator_finds_no_errors(face_glb, tmp_path):
  script = tmp_path / 'validate.js'
  script.write_text(VALIDATOR_SCRIPT)
  result = subprocess.run(['node', str(script), str(face_glb[0])],
                          capture_output=True, text=True, timeout=120,
                          check=True)
  issues = json.loads(result.stdout)
  assert issues['numErrors'] == 0, issues['messages'][:5]
