"""`experiments/results.py`: docs/results.md from the committed JSONs."""

import os
import re

from experiments import results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'docs', 'results')
MAX_LINES = 300


def _rendered() -> str:
  with open(results.TEMPLATE, encoding='utf-8') as f:
    return results.render(RESULTS, f.read())


def test_results_page_is_short_and_fully_resolved():
  text = _rendered()
  assert len(text.splitlines()) <= MAX_LINES
  assert '{{' not in text and '}}' not in text
  assert '(run `' not in text  # every table's JSON is committed


def test_committed_results_page_is_the_rendered_one():
  # docs/results.md is regenerated whole, never edited by hand.
  with open(os.path.join(ROOT, 'docs', 'results.md'), encoding='utf-8') as f:
    assert f.read() == _rendered()


def test_template_holds_no_hand_typed_numbers():
  """Numbers come from the JSONs: outside code, placeholders and link
  targets the template has no digits (3D-style words aside)."""
  with open(results.TEMPLATE, encoding='utf-8') as f:
    prose = f.read()
  for pattern in (r'```.*?```', r'`[^`]*`', r'\{\{[^{}]*\}\}', r'\]\([^)]*\)'):
    prose = re.sub(pattern, '', prose, flags=re.DOTALL)
  assert not re.findall(r'\b\d[\d.,]*\b', prose)


def test_json_value_reads_and_formats_one_value(tmp_path):
  (tmp_path / 'a.json').write_text('{"x": {"y": [1, 0.12345]}}')
  assert results.json_value(str(tmp_path), 'a.json:x/y/1:.3f') == '0.123'
  assert results.json_value(str(tmp_path), 'a.json:x/y/0:d') == '1'
