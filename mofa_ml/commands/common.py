"""Flags and helpers shared by the subcommands.

Each command calls the `define_*` functions it needs at import; only the
chosen subcommand is imported (`cli.py`), so a flag is defined once per run.
"""

from typing import NamedTuple, Optional, Sequence

from absl import app
from absl import flags

from mofa_ml.facemodel import face_model as fm
from mofa_ml.fitting import fit


def define_face_model_flag() -> flags.FlagHolder:
  return flags.DEFINE_string(
      'face_model', fm.DEFAULT_SPEC, "Face model: 'ict' (bundled) or "
      "'bfm09:PATH' (a BFM_model_front.mat). With --checkpoint, the "
      "checkpoint's own model is used and this must match it.")


class ReconstructionFlags(NamedTuple):
  checkpoint: flags.FlagHolder
  fit: flags.FlagHolder
  fit_steps: flags.FlagHolder
  fit_solver: flags.FlagHolder


def define_reconstruction_flags(fit_by_default: bool) -> ReconstructionFlags:
  """--checkpoint, --fit, --fit_steps and --fit_solver."""
  return ReconstructionFlags(
      checkpoint=flags.DEFINE_string(
          'checkpoint', None, 'A regressor: a training workdir (or its '
          'checkpoints/) or a weights file (.npz, python -m '
          'mofa_ml.learning.export_weights); without it the faces are '
          'fitted per image.'),
      fit=flags.DEFINE_bool(
          'fit', fit_by_default, 'With --checkpoint: refine the '
          "regressor's prediction by per-image fitting (--nofit: the "
          "regressor alone; a video's frames are fitted either way)."),
      fit_steps=flags.DEFINE_list(
          'fit_steps', None, 'Fitting steps: base phase (Levenberg-Marquardt '
          'iterations at full weights, or Adam steps with --fit_solver=adam), '
          'final phase (Adam steps). Default 12,60 (adam: 200,60).'),
      fit_solver=flags.DEFINE_enum(
          'fit_solver', 'gauss_newton', list(fit.BASE_STEPS),
          "The base phase's solver."))


# Upper bounds of --fit_steps (base, final) per solver: 20 times the
# defaults, well past where the objective stops moving, so that a typo
# cannot cost hours a face.
MAX_FIT_STEPS = {'gauss_newton': (240, 1200), 'adam': (4000, 1200)}


def fit_config(fit_steps: Optional[Sequence[str]],
               fit_solver: str = 'gauss_newton') -> fit.FitConfig:
  """--fit_steps (base phase, final phase) and --fit_solver -> FitConfig.

  Raises:
    app.UsageError: not two non-negative counts.
  """
  if fit_steps is None:
    return fit.FitConfig(base_solver=fit_solver)
  try:
    steps = [int(value) for value in fit_steps]
  except ValueError:
    steps = []
  if len(steps) != 2 or min(steps) < 0:
    raise app.UsageError('--fit_steps must be two counts, e.g. 12,60')
  limits = MAX_FIT_STEPS[fit_solver]
  if steps[0] > limits[0] or steps[1] > limits[1]:
    raise app.UsageError(f'--fit_steps must be at most {limits[0]},'
                         f'{limits[1]} with --fit_solver={fit_solver}, got '
                         f'{steps[0]},{steps[1]}')
  return fit.FitConfig(base_solver=fit_solver, base_steps=steps[0],
                       final_steps=steps[1])
