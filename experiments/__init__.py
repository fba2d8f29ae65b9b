"""Benchmarks that write docs/results: `python -m experiments.<name>`, from
the repository root (see docs/results.md). Not part of the installed
package; tests import them from the checkout."""

import json
import os

from mofa_ml import image_io


def write_results(output: str, results: dict, markdown: str):
  """Writes `results` as JSON to `output` and `markdown` beside it (.md),
  each atomically, and prints the markdown."""
  image_io.atomic_write_bytes(output, json.dumps(results, indent=1).encode(),
                              overwrite=True)
  image_io.atomic_write_bytes(os.path.splitext(output)[0] + '.md',
                              (markdown + '\n').encode(), overwrite=True)
  print(markdown)
