"""One description of "where the catalogue comes from", shared by ``kgrec ingest`` and
``kgrec run``: a :class:`SourceSpec` names a reader and its files; :func:`read_source` reads
them into validated tables and :func:`source_files` lists the files whose contents key a
resumable run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from kgrec.errors import InputError
from kgrec.kg.tables import GraphTables
from kgrec.settings import SOURCE_KINDS, SourceSpec


def read_source(spec: SourceSpec, *, cache_dir: str, progress: bool = True,
                known_products: Callable[[], Iterable[str]] = tuple) -> GraphTables:
    """The validated tables of ``spec``; ``known_products`` lists the store's products (the
    generic reader appends events to them when no products file is given)."""
    if spec.kind == "recbole":
        from kgrec.kg.extract.recbole import ML100K, fetch_ml100k, read_recbole

        if spec.path == ML100K:
            return read_recbole(fetch_ml100k(cache_dir), ML100K, progress=progress)
        return read_recbole(spec.path, spec.dataset or None, progress=progress)
    if spec.kind == "scientific":
        from kgrec.kg.extract.scientific import read_scientific

        return read_scientific(spec.path, progress=progress)
    if spec.kind == "amazon":
        from kgrec.kg.extract.amazon import read_amazon

        return read_amazon(spec.path, spec.reviews or None, bare_products=spec.bare_products)
    if spec.kind == "lists":
        from kgrec.kg.extract.lists import read_lists

        return read_lists(spec.path, spec.behaviours)
    if spec.kind == "generic":
        from kgrec.kg.extract.generic import load_mapping, read_generic

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
        from kgrec.kg.extract.recbole import fetch_ml100k

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
