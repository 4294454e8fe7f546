"""The explore notebook runs top to bottom on the real ml-100k graph and shows real figures."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore_graph.ipynb"


def _text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def test_explore_notebook_executes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KGREC_NOTEBOOK_STORE", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "Newly created: 233,394" in _text(code[0])
    assert "100,000 interactions between 943 users and 1,682 products" in _text(code[1])
    hood = _text(code[2])
    assert "1 hop: {" in hood and "'User': 7" in hood and "IN_CATEGORY Category:" in hood
    assert any(o.output_type == "display_data" and "image/png" in o.data for o in code[2].outputs)
    lines = _text(code[3]).strip().splitlines()
    assert 1 <= len(lines) <= 8
    assert all(
        line.startswith(("2 ", "3 ")) and "User:196" in line and "Product:1031" in line
        for line in lines
    )
