"""Fixtures of the kg tests: the recbole wheel the real MovieLens-100K tables come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgrec.kg.extract.recbole import fetch_ml100k


@pytest.fixture(scope="session")
def ml100k_wheel() -> Path:
    return fetch_ml100k()
