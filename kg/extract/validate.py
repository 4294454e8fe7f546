"""Row validation shared by every reader: one place that decides what is rejected or repaired.

Each check takes a frame with a ``_line`` column (1-based line/row number in the source
file), returns the rows that pass and records every rejected or repaired row in a
:class:`Rejects` collector, so nothing is dropped silently.

Field values (text, prices, numbers, timestamps, event types) are parsed and cleaned by
:mod:`kgrec.kg.extract.parse`, which reports through the same collector.

Unicode text (CJK, emoji, right-to-left, combining marks) is kept verbatim, not NFC-
normalised: ids that differ in their code points are different ids.

Ids (:func:`id_columns`) are kept verbatim, surrounding spaces included (``" lead"`` is
not ``"lead"``: a user asking for ``" lead"`` must find it). The one normalisation is of
numbers: 1, "1" and 1.0 are one id (a whole float is its integer, as numeric id columns
with gaps arrive as floats); -0.0, whose sign is lost that way, is reported as repaired.
Booleans, arrays, objects and non-finite numbers are not ids: their rows are rejected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from kgrec.kg.tables import REJECT_COLUMNS

LINE = "_line"
REJECTED, REPAIRED = "rejected", "repaired"
#: Longest value text kept in the rejects report (the source row is named by file and line).
MAX_VALUE_CHARS = 200


class Rejects:
    """Collects one report row per rejected or repaired input row."""

    def __init__(self) -> None:
        self._rows: list[tuple[Any, ...]] = []

    def add(
        self,
        file: str,
        line: int | None,
        field: str,
        reason: str,
        action: str = REJECTED,
        value: Any = None,
    ) -> None:
        """Record one row."""
        self._rows.append((file, line, field, reason, action, _short(value)))

    def add_many(
        self,
        file: str,
        lines: Iterable[Any],
        field: str,
        reason: str | Iterable[str],
        action: str,
        values: Iterable[Any],
    ) -> None:
        """Record many rows of one file and field at once (``reason`` may be per row)."""
        lines = [int(x) for x in lines]
        reasons = [reason] * len(lines) if isinstance(reason, str) else list(reason)
        for line, why, value in zip(lines, reasons, values, strict=True):
            self._rows.append((file, line, field, why, action, _short(value)))

    def __len__(self) -> int:
        return len(self._rows)

    def frame(self) -> pd.DataFrame:
        """The report: :data:`kgrec.kg.tables.REJECT_COLUMNS`, sorted by file (in the order files
        were read) and line. The note of an id -0.0 read as "0" is left out when a later
        check rejected its row (an event of an unknown product): the id was never stored."""
        rejected = {(f, line) for f, line, _, _, action, _ in self._rows if action == REJECTED}
        rows = [r for r in self._rows if r[3] != MINUS_ZERO or (r[0], r[1]) not in rejected]
        out = pd.DataFrame(rows, columns=REJECT_COLUMNS)
        out["line"] = out["line"].astype("Int64")
        for col in ("file", "field", "reason", "action", "value"):
            out[col] = out[col].astype("string")
        rank = out["file"].map({f: i for i, f in enumerate(out["file"].unique())})
        out = out.assign(_rank=rank).sort_values(["_rank", "line"], kind="stable")
        return out.drop(columns="_rank").reset_index(drop=True)


def _short(value: Any) -> str | None:
    if value is None or (not isinstance(value, list | dict | np.ndarray) and pd.isna(value)):
        return None
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def blank(series: pd.Series) -> pd.Series:
    """True where a value is missing or only whitespace."""
    return series.isna() | series.astype("string").str.strip().eq("").fillna(True)


def id_columns(frame: pd.DataFrame, fields: Iterable[str], file: str,
               rejects: Rejects) -> pd.DataFrame:
    """``frame`` with ``fields`` as id text (see the module docstring): strings verbatim,
    numbers as their text (a whole float as its integer); rows whose id is a boolean, an
    array, an object or not a finite number are rejected naming the field; -0.0 (read as
    "0") is reported as repaired. Blank ids are left to :func:`require`."""
    for name in fields:
        raw = frame[name]
        if pd.api.types.infer_dtype(raw, skipna=True) in ("string", "empty"):
            frame = frame.assign(**{name: raw.astype("string")})
            continue
        problem = raw.map(_id_problem)
        bad = problem.notna().to_numpy()
        rejects.add_many(file, frame.loc[bad, LINE], name, problem[bad], REJECTED, raw[bad])
        frame, raw = frame[~bad], raw[~bad]
        minus = raw.map(_minus_zero).astype(bool).to_numpy()
        rejects.add_many(file, frame.loc[minus, LINE], name, MINUS_ZERO, REPAIRED, raw[minus])
        frame = frame.assign(**{name: raw.map(_id_value).astype("string")})
    return frame


#: The repair note of an id -0.0 (its sign is lost: it is the id "0").
MINUS_ZERO = 'id -0.0 read as "0"'


def id_text(values: pd.Series) -> pd.Series:
    """Ids as text by the rule of :func:`id_columns`, without a report: for readers that
    pair ids with rows already checked there. Values that are not ids are NA."""
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        return values.astype("string")
    return values.map(lambda x: None if _id_problem(x) else _id_value(x)).astype("string")


def _id_problem(value: Any) -> str | None:
    """Why ``value`` cannot be an id (None: it can, or it is missing)."""
    if isinstance(value, bool | np.bool_):
        return "id is a boolean (true/false), not an id"
    if isinstance(value, list | tuple | dict | set | np.ndarray):
        return f"id is {'an object' if isinstance(value, dict) else 'an array'}, not an id"
    if isinstance(value, float | np.floating) and math.isinf(value):
        return "id is not a finite number"
    return None


def _minus_zero(value: Any) -> bool:
    return isinstance(value, float | np.floating) and value == 0 and math.copysign(1, value) < 0


def _id_value(value: Any) -> Any:
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, int | np.integer | float | np.floating):
        return str(value)
    return value


def require(
    frame: pd.DataFrame, fields: Iterable[str], file: str, rejects: Rejects
) -> pd.DataFrame:
    """Reject rows where any of ``fields`` (ids) is missing or blank."""
    keep = pd.Series(True, index=frame.index)
    for name in fields:
        bad = blank(frame[name]) & keep
        rejects.add_many(
            file, frame.loc[bad, LINE], name, f"missing {name}", REJECTED, frame.loc[bad, name]
        )
        keep &= ~bad
    return frame[keep]


def known(
    frame: pd.DataFrame,
    field: str,
    ids: pd.Index | Iterable[str],
    file: str,
    rejects: Rejects,
    what: str,
) -> pd.DataFrame:
    """Reject rows whose ``field`` is not one of ``ids`` (e.g. an event on an unknown product)."""
    bad = ~member(frame[field], list(ids) if not isinstance(ids, pd.Index) else ids)
    rejects.add_many(
        file, frame.loc[bad, LINE], field, f"unknown {what}", REJECTED, frame.loc[bad, field]
    )
    return frame[~bad]


def member(values: pd.Series | pd.Index, ids: object) -> np.ndarray:
    """Boolean mask: which ``values`` are among ``ids``. Hash lookup on object arrays:
    ``Series.isin`` on Arrow-backed strings loops in Python (seconds per 100k rows)."""
    pool = pd.Index(pd.unique(np.asarray(ids, dtype=object)))
    return pool.get_indexer(np.asarray(values, dtype=object)) >= 0


def dedupe(
    frame: pd.DataFrame,
    key: list[str],
    file: str,
    rejects: Rejects,
    compare: list[str] | None = None,
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Keep the first row of every ``key``; reject later ones, saying whether they conflict.

    Args:
        frame: rows with a ``_line`` column.
        key: columns identifying one node or relationship.
        file: source file named in the report.
        rejects: collector.
        compare: value columns checked for conflicts (default: every other column).
        names: column -> source field name used in the report (default: the column).
    """
    names = names or {}
    dup = frame.duplicated(key, keep="first")
    if not dup.any():
        return frame
    compare = compare or [c for c in frame.columns if c not in key and c != LINE]
    # Position of each row's first occurrence: group numbers are shared by equal keys.
    group = frame.groupby(key, sort=False, dropna=False).ngroup().to_numpy()
    first_pos = pd.Series(range(len(frame))).groupby(group).transform("min").to_numpy()
    what = "/".join(names.get(k, k) for k in key)
    records = frame[[*key, *compare, LINE]].to_dict("records")
    for pos in dup.to_numpy().nonzero()[0]:
        row, first = records[pos], records[first_pos[pos]]
        differing = [c for c in compare if not _same(row[c], first[c])]
        where = f"line {int(first[LINE])}"
        if differing:
            col = differing[0]
            field = names.get(col, col)
            reason = f"duplicate {what} with conflicting {field} (first kept, {where})"
            value = row[col]
        else:
            field, reason, value = names.get(key[0], key[0]), f"duplicate of {where}", row[key[0]]
        rejects.add(file, int(row[LINE]), field, reason, REJECTED, value)
    return frame[~dup]


def _same(a: Any, b: Any) -> bool:
    """Equality of two raw values; lists/arrays element-wise, NA equal to NA."""
    if isinstance(a, dict) or isinstance(b, dict):
        return bool(a == b)
    if isinstance(a, list | np.ndarray) or isinstance(b, list | np.ndarray):
        return _listed(a) == _listed(b)
    a_na, b_na = bool(pd.isna(a)), bool(pd.isna(b))
    return a_na and b_na if (a_na or b_na) else bool(a == b)


def _listed(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value
