"""Row validation shared by every reader: one place that decides what is rejected or repaired.

Each check takes a frame with a ``_line`` column (1-based line/row number in the source
file), returns the rows that pass and records every rejected or repaired row in a
:class:`Rejects` collector, so nothing is dropped silently.

Event weights: ``weight = schema.DEFAULT_EVENT_WEIGHTS[type]`` (or the override given),
and for ``RATED`` events ``weight = value / rating_scale * that weight`` so a 5-star rating
on a 1-5 scale weighs as much as a purchase and a 1-star rating a fifth of that.

Repairs: a text value is reported as repaired only when its meaning changed (markup,
scripts or entities removed, a "by " prefix cut). Collapsing whitespace (CRLF/CR line
ends, tabs, runs of spaces, leading/trailing blanks) is a normalisation, not reported.
Unicode text (CJK, emoji, right-to-left, combining marks) is kept verbatim, not NFC-
normalised: ids that differ in their code points are different ids.

Ids (:func:`id_columns`) are kept verbatim, surrounding spaces included (``" lead"`` is
not ``"lead"``: a user asking for ``" lead"`` must find it). The one normalisation is of
numbers: 1, "1" and 1.0 are one id (a whole float is its integer, as numeric id columns
with gaps arrive as floats); -0.0, whose sign is lost that way, is reported as repaired.
Booleans, arrays, objects and non-finite numbers are not ids: their rows are rejected.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from kgrec.errors import SchemaError
from kgrec.kg import schema
from kgrec.kg.tables import REJECT_COLUMNS

LINE = "_line"
REJECTED, REPAIRED = "rejected", "repaired"
#: Longest value text kept in the rejects report (the source row is named by file and line).
MAX_VALUE_CHARS = 200

#: Prices above this are not prices (a misplaced id, a sum in cents): set to empty.
MAX_PRICE = 1e7
#: Event timestamps outside [0, this) in Unix seconds (1970 .. 2100) are rejected: a
#: microsecond epoch, a year 1800 or 2200 is a broken value, not an event time.
MAX_TIMESTAMP = 4_102_444_800
#: The smallest number read as a millisecond epoch (13 digits: 2001-09-09 in
#: milliseconds). Smaller numbers are seconds, so those of 11 and 12 digits are out of
#: range: 253402300800 is the year 9999 in seconds, which as milliseconds would pass for a
#: 1978 date; a millisecond epoch before 2001 is rejected with a reason saying so.
MIN_MILLISECONDS = 1e12

_SCRIPT = re.compile(r"<(script|style)\b.*?(</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
# A tag starts with a letter, "/" or "!": "5 < 6" and "<3" are text, not markup.
_TAG = re.compile(r"<[A-Za-z/!?][^>]*>|<[A-Za-z/!?][^>]*$")
_SPACE = re.compile(r"\s+")
_PRICE = re.compile(r"^\s*-?\s*\$?\s*-?[0-9][0-9,]*(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$")


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


def clean_html(text: Any) -> str | None:
    """Plain text of ``text``: scripts/styles and tags (also an unclosed trailing tag)
    removed, entities unescaped, whitespace collapsed; None when nothing is left."""
    if text is None or (isinstance(text, float) and np.isnan(text)) or text is pd.NA:
        return None
    out = _SCRIPT.sub(" ", str(text))
    out = html.unescape(_TAG.sub(" ", out))
    out = _SPACE.sub(" ", out).strip()
    return out or None


def _spaced(text: Any) -> str | None:
    """``text`` with whitespace collapsed: the baseline a repair is measured against."""
    if text is None or text is pd.NA or (isinstance(text, float) and np.isnan(text)):
        return None
    return _SPACE.sub(" ", str(text)).strip() or None


def changed_text(raw: pd.Series, cleaned: pd.Series) -> pd.Series:
    """True where cleaning changed a non-blank value beyond its whitespace (see the
    module docstring: only those are reported as repairs)."""
    # Only markup, entities or a "by " prefix can change: compare just those rows.
    maybe = raw.astype("string").str.contains(r"[<&]|^\s*by\s", case=False, regex=True)
    maybe = maybe.fillna(False).astype(bool)
    base = raw[maybe].map(_spaced).astype("string")
    out = pd.Series(False, index=raw.index)
    out[maybe] = (base.notna() & (cleaned[maybe].isna() | (cleaned[maybe] != base))).fillna(True)
    return out


def clean_text_column(frame: pd.DataFrame, field: str, file: str, rejects: Rejects) -> pd.Series:
    """HTML-cleaned ``frame[field]``; values whose text changed are reported as repaired."""
    raw = frame[field]
    cleaned = raw.map(clean_html).astype("string")
    changed = changed_text(raw, cleaned)
    reasons = [
        "HTML removed from text" if pd.notna(c) else "text was only HTML markup: set to empty"
        for c in cleaned[changed]
    ]
    rejects.add_many(file, frame.loc[changed, LINE], field, reasons, REPAIRED, raw[changed])
    return cleaned


def parse_price(frame: pd.DataFrame, field: str, file: str, rejects: Rejects) -> pd.Series:
    """Prices like ``"$1,250.00"`` -> 1250.0; blank -> NA; unparsable, negative or over
    :data:`MAX_PRICE` -> NA, reported as repaired (the product itself is kept)."""
    raw = frame[field].astype("string")
    number = raw.where(raw.str.match(_PRICE).fillna(False)).str.replace(r"[\s$,]", "", regex=True)
    price = pd.to_numeric(number, errors="coerce").astype("Float64")
    unparsable = price.isna() & ~blank(raw)
    odd = price.notna() & ~price.between(0, MAX_PRICE)
    reasons = pd.Series("unparsable price: set to empty", index=raw.index)
    reasons[odd] = f"price out of range (0 to {MAX_PRICE:,.0f}): set to empty"
    bad = (unparsable | odd).fillna(False).astype(bool)
    rejects.add_many(file, frame.loc[bad, LINE], field, reasons[bad], REPAIRED, raw[bad])
    return price.where(~bad)


def parse_number(
    frame: pd.DataFrame, field: str, file: str, rejects: Rejects, *, required: bool
) -> tuple[pd.DataFrame, pd.Series]:
    """Numeric ``frame[field]``: unparsable values reject the row; blanks are NA (or
    rejected when ``required``). Returns the kept rows and their numbers."""
    raw = frame[field]
    num = pd.to_numeric(raw.astype("string").str.strip(), errors="coerce").astype("float64")
    empty = blank(raw)
    infinite = np.isinf(num)  # "inf", "1e400": a weight of infinity would swamp training
    bad = (num.isna() & ~empty) | (empty & required) | infinite
    reasons = pd.Series("unparsable " + field, index=raw.index)
    reasons[empty] = "missing " + field
    reasons[infinite] = f"{field} is not a finite number"
    rejects.add_many(file, frame.loc[bad, LINE], field, reasons[bad], REJECTED, raw[bad])
    return frame[~bad], num[~bad]


def event_value_range(
    frame: pd.DataFrame, value: pd.Series, rated: pd.Series, scale: float, field: str,
    file: str, rejects: Rejects,
) -> pd.Series:
    """Mask of events whose value is usable: ratings within 0..``scale`` (a 50 on a 5-star
    scale would weigh ten purchases), other events' counts not negative (a negative weight
    would push the product away). The rest are rejected."""
    rating_odd = rated & ((value < 0) | (value > scale))
    negative = ~rated & (value < 0)
    bad = (rating_odd | negative).fillna(False).astype(bool)
    reasons = pd.Series(f"rating out of range (0 to {scale:g}, options.rating_scale)",
                        index=value.index)
    reasons[negative.fillna(False).astype(bool)] = f"negative {field}"
    rejects.add_many(file, frame.loc[bad, LINE], field, reasons[bad], REJECTED,
                     frame.loc[bad, field])
    return ~bad


def parse_timestamp(
    frame: pd.DataFrame, field: str, file: str, rejects: Rejects
) -> tuple[pd.DataFrame, pd.Series]:
    """Unix seconds (numbers, or ISO-8601 dates and times) as Int64; blank -> NA;
    unparsable (other date formats: "11/14/2023" is ambiguous) or out of range (before
    1970, from 2100 on: :data:`MAX_TIMESTAMP`) -> row rejected. Numbers of 13 digits or
    more (from :data:`MIN_MILLISECONDS`) are millisecond epochs, scaled to seconds; smaller
    ones are seconds, so a date past 2100 in seconds (253402300800, the year 9999) stays out
    of range instead of becoming a 1970s date in milliseconds. ISO dates past pandas'
    nanosecond range (the year 3000) are out of range, not an error."""
    raw = frame[field]
    text = raw.astype("string").str.strip()
    num = pd.to_numeric(text, errors="coerce").astype("float64")
    need_date = num.isna() & ~blank(raw)
    if need_date.any():
        num.loc[need_date] = _iso_seconds(text[need_date])
    num = num.where(num.abs() < MIN_MILLISECONDS, np.floor(num / 1000)).round()
    unparsable = num.isna() & ~blank(raw)
    odd = num.notna() & ~((num >= 0) & (num < MAX_TIMESTAMP))
    reasons = pd.Series("unparsable timestamp", index=raw.index)
    reasons[odd] = "timestamp out of range (1970 to 2100)"
    seconds_only = odd & ~need_date & (num >= MAX_TIMESTAMP) & (num < MIN_MILLISECONDS)
    reasons[seconds_only] = ("timestamp out of range (1970 to 2100; a number under 13 digits "
                             "is read as seconds)")
    bad = unparsable | odd
    rejects.add_many(file, frame.loc[bad, LINE], field, reasons[bad], REJECTED, raw[bad])
    return frame[~bad], num[~bad].astype("Int64")


def _iso_seconds(text: pd.Series) -> np.ndarray:
    """Unix seconds of ISO-8601 texts (NaN: unparsable), at second resolution, so dates
    beyond pandas' nanosecond range (1677 to 2262) come out as numbers, not an error."""
    dates = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    stamps = dates.dt.tz_convert(None).dt.as_unit("s")
    seconds = stamps.to_numpy().astype("int64").astype("float64")
    seconds[stamps.isna().to_numpy()] = np.nan
    return seconds


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
