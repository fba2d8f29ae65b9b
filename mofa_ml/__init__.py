"""mofa_ml: self-supervised multi-level face model learning (Tewari et al.,
CVPR 2018) in JAX/Flax."""

from mofa_ml import xla_workaround

# Before JAX creates its CPU backend (the first computation).
xla_workaround.apply()
