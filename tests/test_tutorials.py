"""Every tutorial runs top to bottom in a Jupyter kernel, as the notebook the docs offer.

Each ``tutorials/plot_*.py`` is converted into a notebook by sphinx-gallery, with the settings
of ``docs/conf.py`` and the steps of its own build (ignore blocks and config comments removed),
so what runs here is the ``.ipynb`` a user downloads from the docs. nbclient executes it in a
fresh ``python3`` kernel (ipykernel) whose working directory is the test's temporary folder; a
cell that raises fails the test with the cell and its traceback. This replaces running the
tutorials as scripts: the script holds the same code, and ``make docs`` executes it as one.
"""

from __future__ import annotations

import copy
import json
import runpy
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from sphinx_gallery import py_source_parser
from sphinx_gallery.gen_gallery import DEFAULT_GALLERY_CONF
from sphinx_gallery.notebook import jupyter_notebook

ROOT = Path(__file__).parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("plot_*.py"))
CELL_TIMEOUT_S = 120  # one cell; a stalled writer or follower fails loudly, not the suite


def gallery_conf() -> dict[str, Any]:
    """sphinx-gallery's configuration as the docs build has it."""
    conf = copy.deepcopy(DEFAULT_GALLERY_CONF)
    conf.update(runpy.run_path(str(ROOT / "docs" / "conf.py"))["sphinx_gallery_conf"])
    return conf


def to_notebook(script: Path, conf: dict[str, Any]) -> nbformat.NotebookNode:
    """The notebook sphinx-gallery makes of a tutorial for the docs' download link."""
    _, blocks = py_source_parser.split_code_and_text_blocks(script)
    blocks = [
        py_source_parser.Block(label, py_source_parser.remove_ignore_blocks(text), line)
        for label, text, line in blocks
    ]
    if conf["remove_config_comments"]:
        blocks = [
            py_source_parser.Block(label, py_source_parser.remove_config_comments(text), line)
            for label, text, line in blocks
        ]
    if blocks[-1].content.isspace():
        blocks = blocks[:-1]
    notebook = jupyter_notebook(blocks, conf, script.parent)
    return nbformat.reads(json.dumps(notebook), as_version=4)


def test_there_are_tutorials():
    assert len(TUTORIALS) >= 5


def test_a_tutorial_becomes_a_notebook_of_text_and_code_cells():
    notebook = to_notebook(TUTORIALS[0], gallery_conf())
    kinds = {cell.cell_type for cell in notebook.cells}
    assert kinds == {"markdown", "code"}
    assert notebook.cells[0].cell_type == "markdown"  # the tutorial's title and introduction
    nbformat.validate(notebook)


@pytest.mark.live
@pytest.mark.parametrize("script", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_executes_as_a_notebook(script, tmp_path):
    notebook = to_notebook(script, gallery_conf())
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the cell and its traceback
    nbformat.write(notebook, tmp_path / f"{script.stem}.ipynb")  # kept for a look on failure
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
