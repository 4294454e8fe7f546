"""Row validation shared by every reader: one place that decides what is rejected or repaired.

Each check takes a frame with a ``_line`` column (1-based line/row number in the source
file), returns the rows that pass and records every rejected or repaired row in a
:class:`Rejects` collector, so nothing is dropped silently.

Event weights: ``weight = schema.DEFAULT_EVENT_WEIGHTS[type]`` (or the override given),
and for ``RATED`` events ``weight = value / rating_scale * that weight`` so a 5-star rating
on a 1-5 scale weighs as much as a purchase and a 1-star rating a fifth of that.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from kgrec.kg import schema
from kgrec.kg.errors import SchemaError
from kgrec.kg.tables import REJECT_COLUMNS

LINE = "_line"
REJECTED, REPAIRED = "rejected", "repaired"
#: Longest value text kept in the rejects report (the source row is named by file and line).
MAX_VALUE_CHARS = 200

_SCRIPT = re.compile(r"<(script|style)\b.*?(</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>|<[^>]*$")
_SPACE = re.compile(r"\s+")
_PRICE = re.compile(r"^\s*\$?\s*([0-9][0-9,]*(?:\.[0-9]+)?)\s*$")


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
        were read) and line."""
        out = pd.DataFrame(self._rows, columns=REJECT_COLUMNS)
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


def clean_html(text: Any) -> str | None:
    """Plain text of ``text``: scripts/styles and tags (also an unclosed trailing tag)
    removed, entities unescaped, whitespace collapsed; None when nothing is left."""
    if text is None or (isinstance(text, float) and np.isnan(text)) or text is pd.NA:
        return None
    out = _SCRIPT.sub(" ", str(text))
    out = html.unescape(_TAG.sub(" ", out))
    out = _SPACE.sub(" ", out).strip()
    return out or None


def clean_text_column(frame: pd.DataFrame, field: str, file: str, rejects: Rejects) -> pd.Series:
    """HTML-cleaned ``frame[field]``; every changed non-blank value is reported as repaired."""
    raw = frame[field]
    cleaned = raw.map(clean_html).astype("string")
    plain = raw.astype("string").str.strip().replace("", pd.NA)
    changed = plain.notna() & (cleaned.isna() | (cleaned != plain)).fillna(True)
    # Only markup or entities count as a repair, not mere surrounding whitespace.
    changed &= raw.astype("string").str.contains(r"[<>&]", regex=True).fillna(False)
    reasons = [
        "HTML removed from text" if pd.notna(c) else "text was only HTML markup: set to empty"
        for c in cleaned[changed]
    ]
    rejects.add_many(file, frame.loc[changed, LINE], field, reasons, REPAIRED, raw[changed])
    return cleaned


def parse_price(frame: pd.DataFrame, field: str, file: str, rejects: Rejects) -> pd.Series:
    """Prices like ``"$1,250.00"`` -> 1250.0; blank -> NA; anything else -> NA, reported."""
    raw = frame[field].astype("string")
    extracted = raw.str.extract(_PRICE, expand=False).str.replace(",", "", regex=False)
    price = pd.to_numeric(extracted, errors="coerce").astype("Float64")
    bad = price.isna() & ~blank(raw)
    rejects.add_many(
        file, frame.loc[bad, LINE], field, "unparsable price: set to empty", REPAIRED, raw[bad]
    )
    return price


def parse_number(
    frame: pd.DataFrame, field: str, file: str, rejects: Rejects, *, required: bool
) -> tuple[pd.DataFrame, pd.Series]:
    """Numeric ``frame[field]``: unparsable values reject the row; blanks are NA (or
    rejected when ``required``). Returns the kept rows and their numbers."""
    raw = frame[field]
    num = pd.to_numeric(raw.astype("string").str.strip(), errors="coerce")
    empty = blank(raw)
    bad = (num.isna() & ~empty) | (empty & required)
    reasons = ["missing " + field if e else "unparsable " + field for e in empty[bad]]
    rejects.add_many(file, frame.loc[bad, LINE], field, reasons, REJECTED, raw[bad])
    return frame[~bad], num[~bad]


def parse_timestamp(
    frame: pd.DataFrame, field: str, file: str, rejects: Rejects
) -> tuple[pd.DataFrame, pd.Series]:
    """Unix seconds (numbers, or ISO-8601 date strings) as Int64; blank -> NA;
    unparsable -> row rejected. Millisecond epochs (> 1e11) are scaled to seconds."""
    raw = frame[field]
    text = raw.astype("string").str.strip()
    num = pd.to_numeric(text, errors="coerce")
    need_date = num.isna() & ~blank(raw)
    if need_date.any():
        dates = pd.to_datetime(text[need_date], errors="coerce", utc=True, format="ISO8601")
        num.loc[need_date] = (dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    num = num.where(num.abs() < 1e11, num // 1000)
    bad = num.isna() & ~blank(raw)
    rejects.add_many(file, frame.loc[bad, LINE], field, "unparsable timestamp", REJECTED, raw[bad])
    return frame[~bad], num[~bad].round().astype("Int64")


#: The reject reason of an event word that maps to no event type.
UNKNOWN_EVENT = "unknown event type"


def event_types(
    frame: pd.DataFrame, field: str, file: str, rejects: Rejects,
    words: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Map event words to relationship types, the user's ``words`` (lower-case word ->
    type) first; unknown words reject the row (the ingest summary lists them)."""
    raw = frame[field].astype("string")
    mapping: dict[str, str | None] = {}
    for word in raw.dropna().unique():
        try:
            mapping[word] = (words or {}).get(str(word).strip().lower()) or schema.event_type(
                str(word))
        except SchemaError:
            mapping[word] = None
    types = raw.map(mapping)
    bad = types.isna()
    reasons = ["missing event type" if e else UNKNOWN_EVENT for e in blank(raw)[bad]]
    rejects.add_many(file, frame.loc[bad, LINE], field, reasons, REJECTED, frame.loc[bad, field])
    return frame[~bad], types[~bad].astype("string")


def event_weights(
    types: pd.Series,
    values: pd.Series,
    *,
    weights: Mapping[str, float] | None = None,
    rating_scale: float = 5.0,
) -> pd.Series:
    """Weight of each event (see the module docstring for the rule)."""
    table = {**schema.DEFAULT_EVENT_WEIGHTS, **(weights or {})}
    base = types.map(table).astype("Float64")
    rated = types.eq(schema.RATED).fillna(False)
    scaled = base.where(~rated, base * values.astype("Float64") / rating_scale)
    return scaled.astype("Float64")


def category_chain(path: list[str]) -> list[tuple[str, str, int]]:
    """``(id, name, level)`` for every prefix of a category path; id = names joined by " > "
    (so ``["Gift Cards", "Gift Cards"]`` gives two distinct nodes, not a self-loop)."""
    return [(" > ".join(path[: i + 1]), name, i) for i, name in enumerate(path)]
