"""Fixtures of the kg tests: the real MovieLens-100K tables, read once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgrec.kg.extract.recbole import fetch_ml100k, read_recbole
from kgrec.kg.tables import GraphTables


@pytest.fixture(scope="session")
def ml100k_wheel() -> Path:
    return fetch_ml100k()


@pytest.fixture(scope="session")
def ml100k_tables(ml100k_wheel: Path) -> GraphTables:
    return read_recbole(ml100k_wheel, "ml-100k")
