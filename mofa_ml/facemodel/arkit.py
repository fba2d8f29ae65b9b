"""ARKit blendshape weights of a model's expression coefficients.

The bundled ICT FaceKit model's 53 expression blendshapes are the ARKit set
(51 of ARKit's 52 names; `browInnerUp` and `cheekPuff` are split into _L and
_R halves and `tongueOut` is absent). Its expression basis E is a PCA of
their vertex offsets D (`ict.build_derived`), so the offsets alpha E of
expression coefficients alpha are exactly those of the weights
w0 = alpha T with T = E D^+ (E lies in D's row space). Animation tools want
w in [0, 1]; the nearest such weights in vertex offsets solve

    min_w ||D^T (w - w0)||^2  subject to 0 <= w <= 1,

a 53-variable bounded least-squares problem. With the Cholesky factor R of
D D^T (R^T R = D D^T), ||D^T v|| = ||R v||, so each face solves it on a
53 x 53 matrix computed once per model (`load_rig`).

A model without named blendshapes (BFM09) has no rig: `load_rig` returns
None and no weights are reported.
"""

import dataclasses
from typing import Optional, Tuple

import chex
import numpy as np

from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import ict

# The L1 pull of `weights` in `mofa reconstruct`'s outputs (mm^2 per unit
# weight); chosen on synthetic faces (docs/results.md, ARKit weights).
DEFAULT_SPARSITY = 0.3


@dataclasses.dataclass(frozen=True)
class BlendshapeRig:
  """A model's named blendshapes and the cached maps to their weights.

  Attributes (K blendshapes, me expression coefficients, N vertices):
    names: (K,) blendshape names, e.g. 'eyeBlink_L'.
    blendshapes: (K, N, 3) float32 vertex offsets at weight 1, mm.
    to_weights: (me, K) float64 T: unbounded weights w0 = alpha T.
    to_coefficients: (K, me) float64: coefficients alpha = w S of weights
      (the projection of w D onto the expression basis; exact for the ICT
      model, whose basis spans the blendshapes).
    factor: (K, K) float64 upper-triangular R with R^T R = D D^T (mm^2).
  """
  names: Tuple[str, ...]
  blendshapes: np.ndarray
  to_weights: np.ndarray
  to_coefficients: np.ndarray
  factor: np.ndarray

  @property
  def num_vertices(self) -> int:
    return self.blendshapes.shape[1]


def make_rig(model: fm.FaceModel, names, blendshapes: np.ndarray
             ) -> BlendshapeRig:
  """The rig of `model` for these (K, N, 3) blendshape offsets (mm)."""
  blendshapes = np.asarray(blendshapes, np.float32)
  chex.assert_shape(blendshapes, (len(names), model.num_vertices, 3))
  offsets = blendshapes.reshape(len(names), -1).astype(np.float64)
  basis = np.asarray(model.expression_basis, np.float64).reshape(
      model.num_expression, -1)
  # T solves alpha E = w0 D for every alpha: D^T T^T = E^T.
  to_weights = np.linalg.lstsq(offsets.T, basis.T, rcond=None)[0].T
  to_coefficients = np.linalg.lstsq(basis.T, offsets.T, rcond=None)[0].T
  factor = np.linalg.cholesky(offsets @ offsets.T).T
  return BlendshapeRig(tuple(str(n) for n in names), blendshapes, to_weights,
                       to_coefficients, factor)


def load_rig(model: fm.FaceModel) -> Optional[BlendshapeRig]:
  """The bundled model's ARKit rig, or None for a model without one."""
  if model.name != ict.NAME:
    return None
  names, blendshapes = ict.expression_blendshapes()
  return make_rig(model, names, blendshapes)


def weights(rig: BlendshapeRig, expression: np.ndarray,
            sparsity: float = 0.0) -> Tuple[np.ndarray, float]:
  """Blendshape weights in [0, 1] nearest (in vertex offsets) to the
  offsets of expression coefficients, optionally pulled towards 0.

  Minimises mean_v |offset error_v|^2 + sparsity sum_k w_k: since w >= 0
  the L1 term is linear, and with R^T R = D D^T it is the same bounded
  least-squares problem with the target moved by sparsity N / 2 R^-T 1.

  Args:
    rig: the model's rig.
    expression: (me,) expression coefficients.
    sparsity: mm^2 (mean over vertices) that a unit of weight must explain
      to be kept; 0 for the plain nearest weights.

  Returns:
    weights: (K,) float64 in [0, 1].
    residual_mm: RMS over vertices of the offset the bounds (and sparsity)
      cost against the unbounded expression (0 when nothing is lost).
  """
  import scipy.linalg  # pylint: disable=g-import-not-at-top
  import scipy.optimize  # pylint: disable=g-import-not-at-top
  expression = np.asarray(expression, np.float64)
  chex.assert_shape(expression, (rig.to_weights.shape[0],))
  unbounded = expression @ rig.to_weights
  clipped = np.clip(unbounded, 0.0, 1.0)
  if sparsity == 0.0 and np.array_equal(clipped, unbounded):
    return clipped, 0.0
  pull = scipy.linalg.solve_triangular(rig.factor.T, np.ones(len(unbounded)),
                                       lower=True)
  target = rig.factor @ unbounded - sparsity * rig.num_vertices / 2 * pull
  solution = scipy.optimize.lsq_linear(
      rig.factor, target, bounds=(0.0, 1.0), method='bvls', tol=1e-12).x
  solution = np.clip(solution, 0.0, 1.0)
  residual = np.linalg.norm(rig.factor @ (solution - unbounded))
  return solution, float(residual / np.sqrt(rig.num_vertices))


def weights_over_time(rig: BlendshapeRig, expressions: np.ndarray,
                      sparsity: float = 0.0
                      ) -> Tuple[np.ndarray, np.ndarray]:
  """`weights` of each row of (T, me) coefficients: (T, K) weights and
  (T,) residuals, mm."""
  solved = [weights(rig, row, sparsity) for row in np.asarray(expressions)]
  return (np.stack([w for w, _ in solved]),
          np.asarray([r for _, r in solved]))
