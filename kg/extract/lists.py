"""Per-behaviour adjacency lists: one file per behaviour, each line ``user<TAB>item item ...``
(the layout of the multi-behaviour benchmarks: Tmall, Taobao, Beibei as MB-CGCN and CRGCN
ship them, and LightGCN's ``train.txt``).

Which file holds which behaviour is a mapping (``view_train.txt=view``); without one, every
``<word>_train.txt`` whose word names an event type (``buy``, ``cart``, ``view`` ...) is read
as that behaviour, and ``<word>_test.txt`` files are the held-out pairs of a ``given`` split
(:func:`held_out_pairs`; they never enter the graph). Lines carry no time: the events get
none. Products and users are bare nodes (their ids).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from kgrec.errors import InputError, SchemaError
from kgrec.kg import schema
from kgrec.kg.extract import build
from kgrec.kg.extract import validate as v
from kgrec.kg.extract.generic import event_tables
from kgrec.kg.tables import GraphTables

#: ``<word>_<part>.txt``: the behaviour word, then ``train`` or ``test``.
_NAMED = re.compile(r"^(?P<word>[A-Za-z][A-Za-z_-]*?)_(?P<part>train|test)\.txt$")


def behaviour_files(folder: str | Path, mapping: Iterable[str] = (), part: str = "train"
                    ) -> dict[Path, str]:
    """File -> event type. ``mapping`` holds ``file=behaviour`` entries (file names relative
    to ``folder``); when empty, the folder's ``<word>_<part>.txt`` files whose word is an
    event word (:data:`kgrec.kg.schema.EVENT_ALIASES`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("is not a folder of per-behaviour files", file=str(folder))
    files: dict[Path, str] = {}
    for entry in mapping:
        name, sep, word = entry.partition("=")
        if not sep or not name.strip() or not word.strip():
            raise InputError(f"expected file=behaviour, got {entry!r}", field="source.behaviours")
        path = folder / name.strip()
        if not path.is_file():
            raise InputError("does not exist", file=str(path), field="source.behaviours")
        files[path] = _event(word, "source.behaviours")
    if mapping:
        return files
    for path in sorted(folder.glob(f"*_{part}.txt")):
        match = _NAMED.match(path.name)
        if match:
            try:
                files[path] = schema.event_type(match["word"])
            except SchemaError:
                continue  # a file that names no behaviour is not one of ours
    if not files and part == "train":
        raise InputError("holds no <behaviour>_train.txt file (e.g. buy_train.txt); name the "
                         "files with source.behaviours = [\"file=behaviour\"]", file=str(folder))
    return files


def _event(word: str, field: str) -> str:
    try:
        return schema.event_type(word)
    except SchemaError as exc:
        raise InputError(str(exc), field=field) from exc


def read_list_file(path: Path) -> pd.DataFrame:
    """``user, product, _line`` rows of one list file; a line with a user and no item is
    kept as a row with an empty product (the validation rejects it, naming the line)."""
    users, items, lines = [], [], []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            rest = fields[1:] or [""]
            users += [fields[0]] * len(rest)
            items += rest
            lines += [number] * len(rest)
    return pd.DataFrame({"user": users, "product": items, v.LINE: lines})


def read_lists(folder: str | Path, mapping: Iterable[str] = ()) -> GraphTables:
    """GraphTables of every behaviour file: one event type per file, users and products as
    bare nodes. Bad rows (an empty item list, a duplicate pair) go to the rejects report."""
    rejects = v.Rejects()
    parts: dict[str, list[pd.DataFrame]] = {}
    rows_read, records_read = {}, {}
    frames = {path: read_list_file(path) for path in behaviour_files(folder, mapping)}
    products = pd.Index(pd.concat([f["product"] for f in frames.values()]).unique())
    products = products[products != ""]
    for path, rel in behaviour_files(folder, mapping).items():
        frame = frames[path]
        rows_read[str(path)] = int(frame[v.LINE].nunique())
        records_read[str(path)] = len(frame)
        rels, _ = event_tables(frame, {"user": "user", "product": "product"}, str(path), rejects,
                               products, {"event_type": rel})
        for name, table in rels.items():
            parts.setdefault(name, []).append(table)
    events = {name: pd.concat(tables, ignore_index=True) for name, tables in parts.items()}
    users = pd.concat([t["src"] for t in events.values()]).drop_duplicates()
    nodes = {schema.USER: pd.DataFrame({"id": users}),
             schema.PRODUCT: pd.DataFrame({"id": products})}
    return build.assemble({**nodes, **events}, rejects, rows_read, records_read)


def held_out_pairs(folder: str | Path, behaviour: str, mapping: Iterable[str] = ()
                   ) -> pd.DataFrame:
    """``user, product`` (external ids, as strings) of the held-out file of ``behaviour``
    (an event type): ``mapping`` entries ``file=behaviour``, else ``<word>_test.txt``."""
    files = [p for p, rel in behaviour_files(folder, mapping, part="test").items()
             if rel == behaviour]
    if len(files) != 1:
        raise InputError(f"expected one held-out file of {behaviour} (e.g. buy_test.txt), "
                         f"found {len(files)}", file=str(folder), field="source.held_out")
    frame = read_list_file(files[0])
    empty = frame["product"] == ""
    if empty.any():
        raise InputError("a held-out line without an item", file=str(files[0]),
                         row=int(frame.loc[empty, v.LINE].iloc[0]), field="product")
    return frame[["user", "product"]].drop_duplicates(ignore_index=True)
