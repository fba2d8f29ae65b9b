"""Every notebook in notebooks/ executes top to bottom on a CPU."""

import glob
import os

import nbclient
import nbformat
import pytest

NOTEBOOKS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), '..',
                                          'notebooks', '*.ipynb')))


def test_there_are_notebooks():
  assert NOTEBOOKS


@pytest.mark.heavy
@pytest.mark.parametrize('path', NOTEBOOKS, ids=os.path.basename)
def test_notebook_executes(path, tmp_path):
  notebook = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(notebook, timeout=600,
                                   kernel_name='python3',
                                   resources={'metadata': {'path': tmp_path}})
  client.execute()
  outputs = [output for cell in notebook.cells if cell.cell_type == 'code'
             for output in cell.get('outputs', [])]
  assert not [o for o in outputs if o.output_type == 'error']
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert images  # every notebook shows pictures
