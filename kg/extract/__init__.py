"""Readers and adapters: every input format becomes a validated
:class:`kgrec.kg.tables.GraphTables`."""

from __future__ import annotations

from kgrec.kg.extract.amazon import read_amazon
from kgrec.kg.extract.mapping import ColumnMapping, load_mapping
from kgrec.kg.extract.recbole import fetch_ml100k, read_recbole, read_recbole_ml100k
from kgrec.kg.extract.stream import read_generic

__all__ = [
    "ColumnMapping",
    "fetch_ml100k",
    "load_mapping",
    "read_amazon",
    "read_generic",
    "read_recbole",
    "read_recbole_ml100k",
]
