"""The house's shape (benchmarks/house.py): one direction of imports, no circles, and a
command line that answers without loading torch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("house", REPO / "benchmarks" / "house.py")
assert _spec is not None and _spec.loader is not None
house = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(house)


def test_circles_finds_strongly_connected_groups_only() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": set(), "f": {"f"}}
    assert house.circles(graph) == [["a", "b", "c"]]  # a self-import is no circle
    assert house.circles({"a": {"b"}, "b": set()}) == []


def test_layers_put_shared_modules_below_every_package() -> None:
    assert house.layer("kgrec.errors") == 0 < house.layer("kgrec.kg.schema")
    assert house.layer("kgrec.kg.schema") < house.layer("kgrec.gnn.train")
    assert house.layer("kgrec.gnn.train") < house.layer("kgrec.fusion.fit")
    assert house.layer("kgrec.fusion.fit") < house.layer("kgrec.api")


def test_the_command_line_loads_no_heavy_library() -> None:
    code = ("import sys, json; from kgrec.cli import build_parser; build_parser(); "
            f"print(json.dumps([m for m in {house.HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert json.loads(out.stdout) == []


def test_no_import_circle_and_no_back_arrow_in_the_package() -> None:
    shape = house.measure(REPO)
    assert shape["import_circles"] == []
    assert shape["circles_with_deferred"] == []
    assert shape["back_arrows"] == []
    assert shape["internal_imports_at_load"] > 150  # the graph was read at all


def test_loading_a_catalogue_loads_no_model_library() -> None:
    code = ("import sys, json; import kgrec.loading; print(json.dumps([m for m in "
            "('torch', 'torch_geometric', 'transformers') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert json.loads(out.stdout) == []
