"""The notebooks as committed: every one is executed by tests/notebooks, none carries outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.notebooks.test_notebooks import NAMES, NOTEBOOKS

FILES = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_every_notebook_is_executed_by_the_tests() -> None:
    assert {f.stem for f in FILES} == set(NAMES)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_a_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert notebook.cells[0].cell_type == "markdown"  # what it answers, reads, needs
    assert "parameters" in code[0].metadata.get("tags", [])
