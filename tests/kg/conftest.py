"""Fixtures of the kg tests: the real MovieLens-100K tables, read once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from kg.extract.recbole import fetch_ml100k, read_recbole
from kg.tables import GraphTables

#: The shared real data (../shared/data from the repository root), or $KGREC_SHARED_DATA.
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    import os

    return Path(os.environ.get("KGREC_SHARED_DATA", SHARED_DATA)).resolve()


@pytest.fixture(scope="session")
def ml100k_wheel() -> Path:
    return fetch_ml100k()


@pytest.fixture(scope="session")
def ml100k_tables(ml100k_wheel: Path) -> GraphTables:
    return read_recbole(ml100k_wheel, "ml-100k")
