"""Learned corrective spaces F(delta | Theta) of the final level (Sec. 4.2).

F maps C corrective coefficients to a per-vertex 3-vector field: geometry
offsets (mm) for F_g, reflectance offsets (RGB units) for F_r. The paper's
default is affine, F(delta) = M delta + b, with Theta = (M, b) trained with
the network; the supplement also tests one and two ReLU non-linearities
(`hidden_sizes`). Theta is fixed at test time and delta is regressed.
"""

from typing import Sequence

import flax.linen as nn
import jax


class CorrectiveSpace(nn.Module):
  """F: (..., C) -> (..., N, 3).

  Attributes:
    num_vertices: N.
    hidden_sizes: () for the affine model, (H,) for L1(relu(L0 d)), (H1, H2)
      for L2(relu(L1(relu(L0 d)))).
    output_scale: std of each output entry for delta ~ N(0, I) at
      initialisation (mm or RGB units). The offset b starts at zero, so the
      final level starts equal to the base level.
  """
  num_vertices: int
  hidden_sizes: Sequence[int] = ()
  output_scale: float = 1.0

  @nn.compact
  def __call__(self, delta: jax.Array) -> jax.Array:
    x = delta
    for index, width in enumerate(self.hidden_sizes):
      x = nn.relu(nn.Dense(width, name=f'hidden_{index}')(x))
    fan_in = x.shape[-1]
    basis_init = nn.initializers.normal(self.output_scale / max(fan_in, 1)**0.5)
    out = nn.Dense(3 * self.num_vertices, kernel_init=basis_init,
                   bias_init=nn.initializers.zeros, name='basis')(x)
    return out.reshape(delta.shape[:-1] + (self.num_vertices, 3))

