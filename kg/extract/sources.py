"""One description of "where the catalogue comes from", shared by ``kgrec ingest`` and
``kgrec run``: a :class:`SourceSpec` names a reader and its files; :func:`read_source` reads
them into validated tables (:func:`stream_source`: in parts, a generic dump chunk by
chunk) and :func:`source_files` lists the files whose contents key a resumable run. The
dispatcher over every reader of :mod:`kgrec.kg.extract`, so it sits above them all.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow.parquet as pq

from kgrec.errors import InputError
from kgrec.kg.extract.amazon import read_amazon
from kgrec.kg.extract.io import GZIP_MAGIC, file_format
from kgrec.kg.extract.lists import read_lists
from kgrec.kg.extract.mapping import load_mapping
from kgrec.kg.extract.recbole import ML100K, fetch_ml100k, read_recbole
from kgrec.kg.extract.scientific import read_scientific
from kgrec.kg.extract.stream import read_generic, stream_generic
from kgrec.kg.tables import GraphTables
from kgrec.settings import SOURCE_KINDS, SourceSpec


def read_source(spec: SourceSpec, *, cache_dir: str, progress: bool = True,
                known_products: Callable[[], Iterable[str]] = tuple) -> GraphTables:
    """The validated tables of ``spec``; ``known_products`` lists the store's products (the
    generic reader appends events to them when no products file is given)."""
    if spec.kind == "recbole":
        if spec.path == ML100K:
            return read_recbole(fetch_ml100k(cache_dir), ML100K, progress=progress)
        return read_recbole(spec.path, spec.dataset or None, progress=progress)
    if spec.kind == "scientific":
        return read_scientific(spec.path, progress=progress)
    if spec.kind == "amazon":
        return read_amazon(spec.path, spec.reviews or None, bare_products=spec.bare_products)
    if spec.kind == "lists":
        return read_lists(spec.path, spec.behaviours)
    if spec.kind == "generic":
        if not spec.events:
            raise InputError("the generic reader needs an events file (and a products file "
                             "unless the products are already in the store)", field="events")
        return read_generic(
            spec.products or None, spec.events, users=spec.users or None, kg=spec.kg or None,
            links=spec.links or None, mapping=load_mapping(spec.mapping or None, spec.map),
            known_products=[] if spec.products else list(known_products()),
        )
    raise InputError(f"unknown source kind {spec.kind!r}; known: {', '.join(SOURCE_KINDS)}",
                     field="source.kind")


def source_files(spec: SourceSpec, cache_dir: str) -> list[Path]:
    """Every file ``spec`` reads (folders expanded), for content hashing."""
    if spec.kind == "recbole" and spec.path == "ml-100k":
        return [fetch_ml100k(cache_dir)]
    names = [spec.path] if spec.kind != "generic" else []
    names += [spec.reviews, spec.products, spec.events, spec.users, spec.kg, spec.links,
              spec.mapping]
    files: list[Path] = []
    for name in filter(None, names):
        path = Path(name).expanduser()
        if not path.exists():
            raise InputError("does not exist", file=str(path))
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return files


def stream_source(spec: SourceSpec, *, cache_dir: str, chunk_rows: int, progress: bool = True,
                  known_products: Callable[[], Iterable[str]] = tuple) -> Iterator[GraphTables]:
    """The parts of ``spec``: a generic dump streamed, any other source as one part."""
    if spec.kind != "generic" or not spec.events:
        yield read_source(spec, cache_dir=cache_dir, progress=progress,
                          known_products=known_products)
        return
    yield from stream_generic(
        spec.products or None, spec.events, users=spec.users or None, kg=spec.kg or None,
        links=spec.links or None, mapping=load_mapping(spec.mapping or None, spec.map),
        known_products=[] if spec.products else list(known_products()), chunk_rows=chunk_rows,
    )


def count_rows(spec: SourceSpec) -> int | None:
    """Rows of a generic dump's files for a progress total (Parquet: exact; text: lines,
    header left out); None for other sources (their size is known once read)."""
    if spec.kind != "generic":
        return None
    names = [spec.products, spec.users, spec.events, spec.kg, spec.links]
    return sum(_rows_in(Path(name).expanduser()) for name in names if name) or None


def _rows_in(path: Path) -> int:
    """Records of one file, roughly: lines of text, rows of Parquet; 0 when unreadable (the
    reader reports why)."""
    try:
        if file_format(path) == "parquet":
            return pq.ParquetFile(path).metadata.num_rows
        with path.open("rb") as raw:
            zipped = raw.read(2) == GZIP_MAGIC
        lines, last = 0, b"\n"
        with (gzip.open(path, "rb") if zipped else path.open("rb")) as fh:
            while block := fh.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
    except (OSError, ValueError, InputError):
        return 0
    lines += last != b"\n"  # a last line without its newline
    return lines - (file_format(path) in ("csv", "tsv"))
