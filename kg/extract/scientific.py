"""Amazon 2018 "Industrial & Scientific" 5-core, LC-Rec style JSON -> GraphTables.

The folder holds two JSON documents (one object each, integer ids as keys):

- ``Scientific.item.json``: ``{"<item id>": {"title", "description", "brand", "categories"}}``
- ``Scientific.inter.json``: ``{"<user id>": [item ids in time order]}``

Items become ``Product`` nodes (id = the item id as text). ``title`` and ``description`` are
HTML-cleaned like every reader (changes reported as repaired); a missing title keeps the
product (its purchases are real) and is reported. ``brand`` -> ``Brand`` + ``HAS_BRAND``.
``categories`` is one comma-joined path (``Industrial & Scientific,Fasteners,Staples``),
split on commas *not followed by a space*: 1,123 paths hold a name with ", " in it
(``Tapes, Adhesives & Sealants``), so a plain split would invent bogus levels. The path
then follows the Amazon reader: cut at the first non-category element (reported),
``Category`` ids are the path so far joined by " > ", ``SUBCATEGORY_OF`` child -> parent,
``IN_CATEGORY`` to the leaf, and ``category_path`` is the kept path joined by " > ".

Each list entry becomes one ``PURCHASED`` event (5-core reviews are purchases; there is no
rating, so value 1 and the default purchase weight). **``timestamp`` is an ordinal, not unix
time**: the 0-based position of the entry in its user's list. The files keep no dates, and
the list order is the time order, so the position is what orders a user's events (the
per-user temporal split uses it). It means nothing across users and must not be read as
seconds. A rejected entry leaves a gap: positions are those of the file.

A repeated item in one user's list (none in the shipped file) is a second purchase at a
later position and kept, as every reader keeps events that differ in time; only exact
(user, product, timestamp) duplicates are rejected.

Rejects: both files are single JSON documents (the interactions file is one text line), so
the report's ``line`` is the 1-based number of the entry in the file's top-level object,
and ``value`` names the id. Unknown or malformed item ids in a list are rejected with
``field`` ``items[<position>]``. A syntax error makes a whole document unreadable: that,
like a missing file, is an :class:`~kgrec.errors.InputError` naming the file (and line).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from kgrec.errors import InputError
from kgrec.kg import schema
from kgrec.kg.extract import build
from kgrec.kg.extract import validate as v
from kgrec.kg.extract.generic import merge_users, product_tables
from kgrec.kg.extract.mapping import DEFAULT_OPTIONS
from kgrec.kg.extract.parse import event_weights
from kgrec.kg.tables import GraphTables

ITEM_FILE = "Scientific.item.json"
INTER_FILE = "Scientific.inter.json"
ITEM_FIELDS = ("title", "description", "brand", "categories")
PRODUCT_COLUMNS = {
    "id": "item_id",
    "title": "title",
    "description": "description",
    "brand": "brand",
    "category": "categories",
}
#: A path separator is a comma not followed by a space (names contain ", ").
PATH_SEPARATOR = re.compile(r",(?! )")


class _Pairs(list):
    """A JSON object as its (key, value) pairs: keeps duplicate keys visible and tells an
    object from an array."""


def read_scientific(folder: str | Path, *, progress: bool = False) -> GraphTables:
    """Read the Scientific folder (``Scientific.item.json`` + ``Scientific.inter.json``).

    Args:
        folder: folder holding both files.
        progress: print one line per file read.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError("Scientific folder does not exist", file=str(root))
    rejects = v.Rejects()
    read: dict[str, int] = {}
    item_path, inter_path = root / ITEM_FILE, root / INTER_FILE
    for path in (item_path, inter_path):
        if not path.exists():
            raise InputError("file does not exist", file=str(path))
    entries = _load_object(item_path, read, progress)
    parts = _products(entries, str(item_path), rejects)
    catalogue = pd.Index(parts[schema.PRODUCT]["id"])
    lists = _load_object(inter_path, read, progress)
    parts[schema.PURCHASED] = _purchases(lists, str(inter_path), rejects, catalogue)
    parts[schema.USER] = merge_users(None, parts)
    # A line lists one user's items: count the rejected share in (user, item) records.
    records = sum(len(items) if isinstance(items, list) else 1 for _, items in lists)
    return build.assemble(parts, rejects, read, {str(inter_path): records})


def _load_object(path: Path, read: dict[str, int], progress: bool) -> list[tuple[str, Any]]:
    """The (key, value) entries of a file holding one JSON object."""
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_Pairs)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"bad JSON: {exc.msg} at column {exc.colno}", file=str(path), row=exc.lineno
        ) from exc
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x}): save the file as UTF-8",
            file=str(path), row=raw.count(b"\n", 0, exc.start) + 1,
        ) from None
    if not isinstance(data, _Pairs):
        raise InputError("bad JSON: expected one object {id: ...}", file=str(path), row=1)
    read[str(path)] = len(data)
    if progress:
        print(f"read {len(data):,} entries from {path}", file=sys.stderr)
    return list(data)


def _plain(value: Any) -> Any:
    """Nested objects back to dicts (last key wins inside an entry, as in plain JSON)."""
    if isinstance(value, _Pairs):
        return {k: _plain(x) for k, x in value}
    if isinstance(value, list):
        return [_plain(x) for x in value]
    return value


def _item_frame(entries: list[tuple[str, Any]], file: str, rejects: v.Rejects) -> pd.DataFrame:
    """One raw row per item entry (``item_id`` = key, ``_line`` = entry number)."""
    rows: list[dict[str, Any]] = []
    for line, (key, value) in enumerate(entries, start=1):
        if not isinstance(value, _Pairs):
            rejects.add(file, line, "", "bad JSON: item entry is not an object", v.REJECTED, key)
            continue
        fields = {k: x for k, x in _plain(value).items() if k not in ("item_id", v.LINE)}
        rows.append({**fields, "item_id": key, v.LINE: line})
    frame = pd.DataFrame.from_records(rows, columns=None if rows else ["item_id", v.LINE])
    for name in ITEM_FIELDS:
        if name not in frame.columns:
            frame[name] = None
    return frame


def _products(
    entries: list[tuple[str, Any]], file: str, rejects: v.Rejects
) -> dict[str, pd.DataFrame]:
    """Product, Category and Brand tables (plus their relationships) of the item file."""
    frame = _item_frame(entries, file, rejects)
    untitled = v.blank(frame["title"])
    rejects.add_many(
        file,
        frame.loc[untitled, v.LINE],
        "title",
        "missing title: Product kept without one",
        v.REPAIRED,
        frame.loc[untitled, "item_id"],
    )
    paths = pd.Series(
        [_path(raw, line, file, rejects) for raw, line in zip(frame["categories"],
                                                              frame[v.LINE], strict=True)],
        index=frame.index,
        dtype="object",
    )
    return product_tables(frame, PRODUCT_COLUMNS, file, rejects, DEFAULT_OPTIONS, paths=paths)


def _path(raw: Any, line: int, file: str, rejects: v.Rejects) -> list[str]:
    """Category names of one comma-joined path (a JSON list of names is accepted too)."""
    if isinstance(raw, list):
        return [str(x).strip() for x in raw if str(x).strip()]
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return []
    if not isinstance(raw, str):
        rejects.add(
            file, line, "categories", "category path is not text: dropped", v.REPAIRED, raw
        )
        return []
    return [name.strip() for name in PATH_SEPARATOR.split(raw) if name.strip()]


def _purchases(
    entries: list[tuple[str, Any]], file: str, rejects: v.Rejects, catalogue: pd.Index
) -> pd.DataFrame:
    """PURCHASED events (timestamp = list position) of the interactions file."""
    known = set(catalogue)
    rows: list[tuple[str, str, int, int]] = []
    first: dict[str, int] = {}
    for line, (user, items) in enumerate(entries, start=1):
        if not _user_entry_ok(user, items, line, first, file, rejects):
            continue
        for pos, item in enumerate(items):
            product = _item_id(item)
            field = f"items[{pos}]"
            if product is None:
                rejects.add(file, line, field, "bad item id", v.REJECTED, json.dumps(item))
            elif product not in known:
                rejects.add(file, line, field, "unknown product", v.REJECTED, product)
            else:
                rows.append((user, product, pos, line))
    table = pd.DataFrame(rows, columns=["src", "dst", "timestamp", v.LINE])
    table = v.dedupe(table, ["src", "dst", "timestamp"], file, rejects)
    types = pd.Series(schema.PURCHASED, index=table.index, dtype="string")
    table["timestamp"] = table["timestamp"].astype("Int64")
    table["value"] = pd.Series(1.0, index=table.index, dtype="Float64")
    table["weight"] = event_weights(types, table["value"])
    return table.drop(columns=v.LINE)


def _user_entry_ok(
    user: str, items: Any, line: int, first: dict[str, int], file: str, rejects: v.Rejects
) -> bool:
    """Whether a user's entry is a non-empty list under a new, non-blank user id."""
    if not isinstance(items, list) or isinstance(items, _Pairs):
        rejects.add(file, line, "", "bad JSON: user entry is not a list of item ids",
                    v.REJECTED, user)
        return False
    if not user.strip():
        rejects.add(file, line, "user", "missing user", v.REJECTED, user)
        return False
    if user in first:
        where = f"line {first[user]}"
        rejects.add(file, line, "user", f"duplicate user (first kept, {where})", v.REJECTED, user)
        return False
    first[user] = line
    if not items:
        rejects.add(file, line, "items", "user without interactions", v.REJECTED, user)
        return False
    return True


def _item_id(value: Any) -> str | None:
    """An item id as text: an integer or a non-blank string (None for anything else)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value  # verbatim, as the item file's keys
    return None
