"""The base-level reflectance prior built without scan data.

No freely licensed albedo PCA exists, so the base reflectance model is built
deterministically (SPEC.md section 2):

* mean: one skin albedo, with soft lip and brow tints;
* modes: per-vertex scalar fields times colour directions. The fields are the
  mesh's lowest-frequency manifold harmonics (eigenvectors of the cotangent
  Laplacian), the constant field first, so the first modes change the global
  skin tone. The colour directions are luminance and two chroma axes.
  Standard deviations fall with the harmonic's frequency and are smaller for
  chroma than for luminance; the modes kept are the `num_modes` largest.

Colour values are in the input photo's own RGB encoding, channels in [0, 1],
exactly as the photometric loss compares them with pixel values (the paper
applies no gamma, and neither does the BFM09 texture model).
"""

from typing import Dict

import numpy as np

from mofa_ml.facemodel import face_regions

SKIN_ALBEDO = np.array([0.70, 0.52, 0.42])
LIP_ALBEDO = np.array([0.62, 0.36, 0.34])
BROW_ALBEDO = np.array([0.32, 0.24, 0.20])
# Orthonormal colour axes: luminance, red-blue (tan), red-green (flush).
COLOUR_DIRECTIONS = np.array([
    [1.0, 1.0, 1.0] / np.sqrt(3.0),
    [1.0, 0.0, -1.0] / np.sqrt(2.0),
    [1.0, -2.0, 1.0] / np.sqrt(6.0),
])
# Per-vertex RMS standard deviation of the constant-field mode per colour
# axis, in colour units; harmonic k is scaled by HARMONIC_SCALE *
# sqrt(lambda_1 / lambda_k).
GLOBAL_RMS_STD = np.array([0.10, 0.035, 0.015])
HARMONIC_SCALE = 0.5


def mean_reflectance(vertices: np.ndarray,
                     landmark_vertices: np.ndarray) -> np.ndarray:
  """(N, 3) mean albedo: skin, blended towards lips and brows."""
  lips = face_regions.lip_weight(vertices, landmark_vertices)[:, None]
  brows = face_regions.brow_weight(vertices, landmark_vertices)[:, None]
  albedo = SKIN_ALBEDO * (1 - lips) + LIP_ALBEDO * lips
  albedo = albedo * (1 - brows) + BROW_ALBEDO * brows
  return albedo.astype(np.float32)


def select_modes(eigenvalues: np.ndarray, vertex_count: int,
                 num_modes: int) -> Dict[str, np.ndarray]:
  """Picks the `num_modes` (harmonic, colour axis) pairs of largest sigma.

  Returns:
    dict with 'harmonic' (num_modes,) int32, 'colour' (num_modes,) int32 and
    'sigma' (num_modes,) float64, sigma in the units of a unit-norm mode in
    R^3N (per-vertex RMS std times sqrt(N)).
  """
  count = len(eigenvalues)
  if num_modes > 3 * count:
    raise ValueError(f'{num_modes} modes need at least {num_modes // 3 + 1} '
                     f'harmonics, got {count}')
  falloff = np.ones(count)
  falloff[1:] = HARMONIC_SCALE * np.sqrt(eigenvalues[1] / eigenvalues[1:])
  rms = falloff[:, None] * GLOBAL_RMS_STD[None, :]
  harmonic, colour = np.meshgrid(np.arange(count), np.arange(3), indexing='ij')
  order = np.lexsort((colour.ravel(), harmonic.ravel(), -rms.ravel()))
  order = order[:num_modes]
  return {
      'harmonic': harmonic.ravel()[order].astype(np.int32),
      'colour': colour.ravel()[order].astype(np.int32),
      'sigma': rms.ravel()[order] * np.sqrt(vertex_count),
  }


def assemble_modes(fields: np.ndarray, harmonic: np.ndarray,
                   colour: np.ndarray) -> np.ndarray:
  """(M, N, 3) orthonormal modes: field[:, harmonic] times colour axis."""
  return (fields.T[harmonic][:, :, None] *
          COLOUR_DIRECTIONS[colour][:, None, :]).astype(np.float32)
