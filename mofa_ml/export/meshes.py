"""Mesh files: PLY and OBJ with vertex colours, and OBJ + MTL + texture.

Written by hand (plain text formats of a few lines each; no mesh library is
needed to write them). Meshes are in model space: millimetres, y up, z
towards the viewer, which Blender's and MeshLab's importers take as is.
Every file is written atomically and never over an existing file unless
asked.
"""

import io
import os
from typing import Dict, NamedTuple, Tuple

import jax.numpy as jnp
import numpy as np

from mofa_ml import image_io
from mofa_ml.rendering import raster


def _colours_uint8(colours: np.ndarray) -> np.ndarray:
  return np.round(np.clip(np.asarray(colours), 0.0, 1.0) * 255).astype(
      np.uint8)


def ply_bytes(vertices: np.ndarray, triangles: np.ndarray,
              colours: np.ndarray) -> bytes:
  """Binary little-endian PLY with per-vertex RGB."""
  vertices = np.asarray(vertices, np.float32)
  triangles = np.asarray(triangles, np.int32)
  header = '\n'.join([
      'ply', 'format binary_little_endian 1.0',
      'comment mofa_ml reconstruction, millimetres, y up',
      f'element vertex {len(vertices)}', 'property float x',
      'property float y', 'property float z', 'property uchar red',
      'property uchar green', 'property uchar blue',
      f'element face {len(triangles)}',
      'property list uchar int vertex_indices', 'end_header']) + '\n'
  vertex_type = np.dtype([('p', '<f4', 3), ('c', 'u1', 3)])
  vertex_data = np.empty(len(vertices), vertex_type)
  vertex_data['p'] = vertices
  vertex_data['c'] = _colours_uint8(colours)
  face_type = np.dtype([('n', 'u1'), ('i', '<i4', 3)])
  face_data = np.empty(len(triangles), face_type)
  face_data['n'] = 3
  face_data['i'] = triangles
  return header.encode() + vertex_data.tobytes() + face_data.tobytes()


def obj_bytes(vertices: np.ndarray, triangles: np.ndarray,
              colours: np.ndarray) -> bytes:
  """OBJ with the common `v x y z r g b` vertex-colour extension."""
  buffer = io.StringIO()
  buffer.write('# mofa_ml reconstruction, millimetres, y up\n')
  rows = np.concatenate([np.asarray(vertices, np.float64),
                         np.clip(np.asarray(colours, np.float64), 0, 1)], 1)
  np.savetxt(buffer, rows, fmt='v %.4f %.4f %.4f %.4f %.4f %.4f')
  np.savetxt(buffer, np.asarray(triangles) + 1, fmt='f %d %d %d')
  return buffer.getvalue().encode()


def cylindrical_uv(vertices: np.ndarray) -> np.ndarray:
  """(N, 2) UVs in [0, 1] of a face mesh: angle about the vertical axis
  through the head centre, and height. The front face is a single sheet in
  these coordinates, so no triangle folds over another."""
  vertices = np.asarray(vertices, np.float64)
  angle = np.arctan2(vertices[:, 0], vertices[:, 2])
  height = vertices[:, 1]
  uv = np.stack([angle, height], axis=1)
  low, high = uv.min(0), uv.max(0)
  # Equal scale on both axes (angle in radians times the mean radius).
  radius = np.mean(np.linalg.norm(vertices[:, [0, 2]], axis=1))
  extent = np.array([(high[0] - low[0]) * radius, high[1] - low[1]])
  uv = (uv - low) / (high - low) * extent / extent.max()
  margin = 0.01
  return margin + uv * (1 - 2 * margin)


class TextureMap(NamedTuple):
  """Where each texel of a baked texture takes its colour: fixed for a mesh
  and its UV map, so it is rasterized once (`texture_map`) and each face's
  texture costs a gather (`bake_texture`).

  Attributes:
    corners: (S, S, 3) int32 vertices of the triangle each texel samples:
      its own, or outside the mesh its nearest covered texel's.
    barycentric: (S, S, 3) float32 weights of those corners.
    distance: (S, S) float32 texels to the mesh (0 on it).
    band: texels beyond the mesh that keep their nearest covered texel's
      colour before the smooth fill takes over.
  """
  corners: np.ndarray
  barycentric: np.ndarray
  distance: np.ndarray
  band: int


def texture_map(uv: np.ndarray, triangles: np.ndarray,
                size: int = 1024) -> TextureMap:
  """The `TextureMap` of a (size, size) texture of a mesh with (N, 2) `uv`
  coordinates in [0, 1] and (F, 3) `triangles`."""
  import cv2  # pylint: disable=g-import-not-at-top
  screen = np.stack([uv[:, 0] * (size - 1), (1 - uv[:, 1]) * (size - 1),
                     np.ones(len(uv))], axis=1)
  fragments = raster.render(jnp.asarray(screen, jnp.float32),
                            jnp.asarray(triangles), size, size)
  triangle = np.asarray(fragments.triangle)
  covered = triangle >= 0
  distance, nearest = cv2.distanceTransformWithLabels(
      (~covered).astype(np.uint8), cv2.DIST_L2, 5,
      labelType=cv2.DIST_LABEL_PIXEL)
  rows, cols = np.nonzero(covered)
  label_to_pixel = np.zeros((nearest.max() + 1, 2), np.int64)
  label_to_pixel[nearest[rows, cols]] = np.stack([rows, cols], 1)
  source = label_to_pixel[nearest]
  source_rows, source_cols = source[..., 0], source[..., 1]
  return TextureMap(
      np.asarray(triangles, np.int32)[triangle[source_rows, source_cols]],
      np.asarray(fragments.barycentric, np.float32)[source_rows, source_cols],
      distance.astype(np.float32), max(2, size // 128))


def bake_texture(texture: TextureMap, colours: np.ndarray) -> np.ndarray:
  """(S, S, 3) texture image in [0, 1] of (N, 3) per-vertex colours.

  Texels outside the mesh keep their nearest covered texel's colour within
  `band` texels (so that filtering across an island's edge meets the
  edge's colour), then fade over three bands into `smooth_fill` (no dark
  seams, no radial streaks of a nearest-texel fill all the way).
  """
  colours = np.asarray(colours, np.float32)
  image = np.einsum('hwk,hwkc->hwc', texture.barycentric,
                    colours[texture.corners])
  filled = smooth_fill(image, texture.distance <= texture.band)
  fade = np.clip((texture.distance - texture.band) / (3.0 * texture.band),
                 0.0, 1.0)[..., None]
  return np.clip((1.0 - fade) * image + fade * filled, 0.0, 1.0)


def smooth_fill(image: np.ndarray, known: np.ndarray) -> np.ndarray:
  """(H, W, C) push-pull fill of the (H, W) bool `known` texels of `image`:
  the mask-weighted mean over ever larger neighbourhoods, which turns
  smoothly to the known texels' mean far from them. Known texels keep
  their own colour."""
  import cv2  # pylint: disable=g-import-not-at-top
  weight = known.astype(np.float32)
  levels = [(np.asarray(image, np.float32) * weight[..., None], weight)]
  while min(levels[-1][1].shape) > 1:
    colour, mass = levels[-1]
    levels.append((cv2.pyrDown(colour), cv2.pyrDown(mass)))
  colour, mass = levels[-1]
  filled = colour / np.maximum(mass, 1e-8)[..., None]
  for colour, mass in reversed(levels[:-1]):
    up = cv2.resize(filled, (mass.shape[1], mass.shape[0]),
                    interpolation=cv2.INTER_LINEAR).reshape(colour.shape)
    # Where this level is covered its own mean is used, else the coarser
    # fill, in proportion.
    share = np.clip(mass, 0.0, 1.0)[..., None]
    own = colour / np.maximum(mass, 1e-8)[..., None]
    filled = share * own + (1.0 - share) * up
  return filled


def textured_obj_files(stem: str, vertices: np.ndarray, triangles: np.ndarray,
                       uv: np.ndarray, texture: np.ndarray
                       ) -> Dict[str, bytes]:
  """{file name: bytes} of an OBJ + MTL + PNG texture set named `stem`."""
  name = os.path.basename(stem)
  buffer = io.StringIO()
  buffer.write('# mofa_ml reconstruction, millimetres, y up\n')
  buffer.write(f'mtllib {name}.mtl\nusemtl face\n')
  np.savetxt(buffer, np.asarray(vertices, np.float64), fmt='v %.4f %.4f %.4f')
  np.savetxt(buffer, np.asarray(uv, np.float64), fmt='vt %.6f %.6f')
  faces = np.asarray(triangles) + 1
  np.savetxt(buffer, np.repeat(faces, 2, axis=1),
             fmt='f %d/%d %d/%d %d/%d')
  material = (f'newmtl face\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n'
              f'map_Kd {name}_albedo.png\n')
  picture = io.BytesIO()
  import PIL.Image  # pylint: disable=g-import-not-at-top
  PIL.Image.fromarray(image_io.to_uint8(texture)).save(picture, format='PNG')
  return {f'{name}.obj': buffer.getvalue().encode(),
          f'{name}.mtl': material.encode(),
          f'{name}_albedo.png': picture.getvalue()}


def write_files(folder: str, files: Dict[str, bytes],
                overwrite: bool = False) -> Tuple[str, ...]:
  """Writes {name: bytes} into `folder` atomically; returns the paths.

  Raises:
    FileExistsError: a file exists and `overwrite` is False (checked for all
      files before any is written).
  """
  paths = tuple(os.path.join(folder, name) for name in files)
  if not overwrite:
    existing = [p for p in paths if os.path.exists(p)]
    if existing:
      raise FileExistsError(f'{existing[0]} exists; pass --overwrite to '
                            'replace it')
  for path, data in zip(paths, files.values()):
    image_io.atomic_write_bytes(path, data, overwrite=True)
  return paths
