"""Field parsers and cleaners of the readers: text, prices, numbers, timestamps, event types.

Each parser records every rejected or repaired row in a
:class:`kgrec.kg.extract.validate.Rejects` collector, so nothing is dropped silently.

Event weights: ``weight = schema.DEFAULT_EVENT_WEIGHTS[type]`` (or the override given),
and for ``RATED`` events ``weight = value / rating_scale * that weight`` so a 5-star rating
on a 1-5 scale weighs as much as a purchase and a 1-star rating a fifth of that.

Repairs: a text value is reported as repaired only when its meaning changed (markup,
scripts or entities removed, a "by " prefix cut). Collapsing whitespace (CRLF/CR line
ends, tabs, runs of spaces, leading/trailing blanks) is a normalisation, not reported.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from kgrec.errors import SchemaError
from kgrec.kg import schema
from kgrec.kg.extract.validate import LINE, REJECTED, REPAIRED, Rejects, blank

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
