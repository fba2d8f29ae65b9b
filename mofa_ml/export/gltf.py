"""glTF 2.0 binary (.glb) of a face: textured mesh, named morph targets and
an animation of their weights.

Written with pygltflib (the format's structure and padding are its job).
glTF lengths are metres, y up, +z towards the viewer: model space scaled by
1/1000. Morph-target names go where Blender, three.js and trimesh read them
(`mesh.extras.targetNames`).
"""

from typing import Optional, Sequence

import chex
import numpy as np

MM_TO_M = 1e-3


class _Buffer:
  """The binary chunk, grown one 4-byte-aligned buffer view at a time."""

  def __init__(self, gltf):
    self.gltf = gltf
    self.data = bytearray()

  def view(self, data: bytes, target: Optional[int] = None) -> int:
    import pygltflib  # pylint: disable=g-import-not-at-top
    self.data.extend(b'\0' * (-len(self.data) % 4))
    self.gltf.bufferViews.append(pygltflib.BufferView(
        buffer=0, byteOffset=len(self.data), byteLength=len(data),
        target=target))
    self.data.extend(data)
    return len(self.gltf.bufferViews) - 1

  def accessor(self, array: np.ndarray, kind: str,
               target: Optional[int] = None, bounds: bool = False) -> int:
    """Accessor index of a float32 or uint32 array of SCALAR/VEC2/VEC3."""
    import pygltflib  # pylint: disable=g-import-not-at-top
    array = np.ascontiguousarray(array)
    component = (pygltflib.UNSIGNED_INT if array.dtype == np.uint32 else
                 pygltflib.FLOAT)
    rows = array.reshape(len(array), -1)
    self.gltf.accessors.append(pygltflib.Accessor(
        bufferView=self.view(array.tobytes(), target),
        componentType=component, count=len(array), type=kind,
        min=rows.min(0).tolist() if bounds else None,
        max=rows.max(0).tolist() if bounds else None))
    return len(self.gltf.accessors) - 1


def glb_bytes(vertices: np.ndarray, normals: np.ndarray,
              triangles: np.ndarray, uv: np.ndarray,
              texture_png: bytes, target_offsets: Optional[np.ndarray] = None,
              target_names: Sequence[str] = (),
              weights: Optional[np.ndarray] = None,
              times: Optional[np.ndarray] = None,
              weights_over_time: Optional[np.ndarray] = None) -> bytes:
  """A one-mesh .glb.

  Args:
    vertices: (N, 3) base positions, mm, model space.
    normals: (N, 3) their unit normals (smooth shading in every viewer).
    triangles: (F, 3) int, counter-clockwise from outside.
    uv: (N, 2) texture coordinates in [0, 1], v up (as `export`).
    texture_png: the base-colour texture, PNG bytes.
    target_offsets: (K, N, 3) morph-target offsets at weight 1, mm, or None.
    target_names: (K,) their names.
    weights: (K,) default morph weights (the still pose).
    times: (T,) seconds of an animation of the weights, or None.
    weights_over_time: (T, K) weights at `times`.

  Returns:
    The .glb file's bytes.
  """
  import pygltflib  # pylint: disable=g-import-not-at-top
  chex.assert_shape(vertices, (None, 3))
  num_vertices = len(vertices)
  chex.assert_shape([normals, uv], [(num_vertices, 3), (num_vertices, 2)])
  gltf = pygltflib.GLTF2(asset=pygltflib.Asset(generator='mofa_ml'))
  buffer = _Buffer(gltf)
  positions = np.asarray(vertices, np.float32) * MM_TO_M
  attributes = pygltflib.Attributes(
      POSITION=buffer.accessor(positions, pygltflib.VEC3,
                               pygltflib.ARRAY_BUFFER, bounds=True),
      NORMAL=buffer.accessor(np.asarray(normals, np.float32), pygltflib.VEC3,
                             pygltflib.ARRAY_BUFFER),
      TEXCOORD_0=buffer.accessor(
          np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1).astype(np.float32),
          pygltflib.VEC2, pygltflib.ARRAY_BUFFER))
  indices = buffer.accessor(np.asarray(triangles, np.uint32).reshape(-1),
                            pygltflib.SCALAR, pygltflib.ELEMENT_ARRAY_BUFFER)
  gltf.images.append(pygltflib.Image(
      bufferView=buffer.view(texture_png), mimeType='image/png'))
  gltf.samplers.append(pygltflib.Sampler(
      magFilter=pygltflib.LINEAR, minFilter=pygltflib.LINEAR_MIPMAP_LINEAR))
  gltf.textures.append(pygltflib.Texture(source=0, sampler=0))
  gltf.materials.append(pygltflib.Material(
      name='face', doubleSided=False,
      pbrMetallicRoughness=pygltflib.PbrMetallicRoughness(
          baseColorTexture=pygltflib.TextureInfo(index=0),
          metallicFactor=0.0, roughnessFactor=1.0)))
  primitive = pygltflib.Primitive(attributes=attributes, indices=indices,
                                  material=0, mode=pygltflib.TRIANGLES)
  mesh = pygltflib.Mesh(name='face', primitives=[primitive])
  if target_offsets is not None:
    chex.assert_shape(target_offsets, (len(target_names), num_vertices, 3))
    chex.assert_shape(weights, (len(target_names),))
    primitive.targets = [
        {'POSITION': buffer.accessor(
            np.asarray(offsets, np.float32) * MM_TO_M, pygltflib.VEC3,
            pygltflib.ARRAY_BUFFER, bounds=True)}
        for offsets in target_offsets]
    mesh.weights = np.asarray(weights, np.float64).tolist()
    mesh.extras = {'targetNames': list(target_names)}
  gltf.meshes.append(mesh)
  gltf.nodes.append(pygltflib.Node(name='face', mesh=0))
  gltf.scenes.append(pygltflib.Scene(nodes=[0]))
  gltf.scene = 0
  if times is not None:
    chex.assert_shape(weights_over_time, (len(times), len(target_names)))
    gltf.animations.append(pygltflib.Animation(
        name='expression',
        samplers=[pygltflib.AnimationSampler(
            input=buffer.accessor(np.asarray(times, np.float32),
                                  pygltflib.SCALAR, bounds=True),
            output=buffer.accessor(
                np.asarray(weights_over_time, np.float32).reshape(-1),
                pygltflib.SCALAR),
            interpolation=pygltflib.ANIM_LINEAR)],
        channels=[pygltflib.AnimationChannel(
            sampler=0, target=pygltflib.AnimationChannelTarget(
                node=0, path=pygltflib.WEIGHTS))]))
  gltf.buffers.append(pygltflib.Buffer(byteLength=len(buffer.data)))
  gltf.set_binary_blob(bytes(buffer.data))
  return b''.join(gltf.save_to_bytes())
