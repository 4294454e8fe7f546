"""Reading raw records from CSV/TSV, JSON lines (optionally gzipped) and Parquet files.

Every reader returns a frame of raw values plus a ``_line`` column: the 1-based line of
the record in the source file (CSV: the header is line 1; Parquet: the row number).
Records that cannot be parsed at all (bad JSON, wrong number of fields) go to the rejects.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import pandas as pd
from kgrec.kg.errors import InputError
from kgrec.kg.extract.validate import LINE, REJECTED, Rejects

csv.field_size_limit(1 << 30)


def open_text(path: str | Path) -> IO[str]:
    """Open a text file, transparently un-gzipping ``*.gz``."""
    path = Path(path)
    if not path.exists():
        raise InputError("file does not exist", file=str(path))
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def file_format(path: str | Path) -> str:
    """``"csv"``, ``"tsv"``, ``"jsonl"`` or ``"parquet"`` from the file name."""
    name = Path(path).name.lower().removesuffix(".gz")
    for ext, fmt in (
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".txt", "tsv"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "jsonl"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
    ):
        if name.endswith(ext):
            return fmt
    raise InputError(
        "unknown file format (expected .csv, .tsv, .jsonl/.json, .parquet, optionally .gz)",
        file=str(path),
    )


def read_records(path: str | Path, rejects: Rejects) -> tuple[pd.DataFrame, int]:
    """Raw records of ``path`` (format from its name) and the number of records read."""
    fmt = file_format(path)
    if fmt == "parquet":
        return read_parquet(path)
    with open_text(path) as fh:
        if fmt == "jsonl":
            return read_json_lines(fh, str(path), rejects)
        return read_delimited(fh, str(path), rejects, sep="," if fmt == "csv" else "\t")


def read_parquet(path: str | Path) -> tuple[pd.DataFrame, int]:
    if not Path(path).exists():
        raise InputError("file does not exist", file=str(path))
    frame = pd.read_parquet(path)
    frame[LINE] = range(1, len(frame) + 1)
    return frame, len(frame)


def read_json_lines(lines: Iterable[str], file: str, rejects: Rejects) -> tuple[pd.DataFrame, int]:
    """One JSON object per line; blank lines are skipped, bad ones rejected."""
    records: list[dict] = []
    numbers: list[int] = []
    read = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        read += 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            rejects.add(
                file,
                number,
                "",
                f"bad JSON: {exc.msg} at column {exc.colno}",
                REJECTED,
                line.strip(),
            )
            continue
        if not isinstance(record, dict):
            rejects.add(file, number, "", "bad JSON: not an object", REJECTED, line.strip())
            continue
        records.append(record)
        numbers.append(number)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    frame[LINE] = numbers
    return frame, read


def read_delimited(
    fh: IO[str], file: str, rejects: Rejects, *, sep: str = ","
) -> tuple[pd.DataFrame, int]:
    """Delimited text with a header line; all values kept as strings ("" = missing).

    Tab-separated files are read without quote handling (RecBole atomic files contain
    bare quotes in titles)."""
    if sep == "\t":
        reader = csv.reader(fh, delimiter=sep, quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(fh, delimiter=sep, quoting=csv.QUOTE_MINIMAL)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError("empty file (no header line)", file=file, row=1) from None
    rows: list[list[str]] = []
    numbers: list[int] = []
    read = 0
    for record in reader:
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        read += 1
        if len(record) != len(header):
            rejects.add(
                file,
                reader.line_num,
                "",
                f"expected {len(header)} fields, found {len(record)}",
                REJECTED,
                sep.join(record),
            )
            continue
        rows.append(record)
        numbers.append(reader.line_num)
    frame = pd.DataFrame(rows, columns=header, dtype="object")
    frame[LINE] = numbers
    return frame, read
