"""Flag parsing shared by the subcommands that fit faces."""

from typing import Sequence

from absl import app

from mofa_ml import fit


def fit_config(fit_steps: Sequence[str]) -> fit.FitConfig:
  """--fit_steps (base phase, final phase) -> FitConfig.

  Raises:
    app.UsageError: not two non-negative counts.
  """
  try:
    steps = [int(value) for value in fit_steps]
    assert len(steps) == 2 and min(steps) >= 0
  except (ValueError, AssertionError):
    raise app.UsageError('--fit_steps must be two counts, e.g. 200,150'
                         ) from None
  return fit.FitConfig(base_steps=steps[0], final_steps=steps[1])
