"""The ``kgrec`` command line. Thin: each sub-command lives in a ``kgrec.commands_*`` module
that parses its options and calls the packages."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from kgrec.kg.errors import KgrecError

# torch_geometric still calls torch.jit.script on import; the warning is noise to users.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

#: Modules that each provide ``register(subparsers)``; their sub-commands set ``func``.
COMMAND_MODULES = (
    "kgrec.commands_kg",
    "kgrec.commands_gnn",
    "kgrec.commands_fusion",
    "kgrec.pipeline",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="kgrec",
        description=(
            "Knowledge-graph-fused recommender: build a product-user-event graph from "
            "catalogue dumps (Neo4j or the embedded store), train GCN/GAT embeddings, blend "
            "them with transformer text scores and batch-score long-tail products."
        ),
    )
    parser.add_argument(
        "--config", help="TOML settings file (default: ./kgrec.toml if present)", default=None
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KgrecError as exc:
        print(f"kgrec: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
