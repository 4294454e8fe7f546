"""``kgrec config show``: every effective setting and where it came from."""

from __future__ import annotations

import argparse
import json

from kgrec.config import cli_config


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "config",
        help="show the effective settings and their sources",
        description="Inspect the settings: defaults < TOML file < KGREC_<SECTION>_<KEY> "
        "environment variables < --set SECTION.KEY=VALUE (root options, before the command).",
    )
    csub = c.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    s = csub.add_parser(
        "show",
        help="print every section.key = value with its source (secrets masked)",
        description="Print every setting as `section.key = value  # source`, the source being "
        "default, file PATH, env KGREC_X_Y or --set; the Neo4j password shows as ***.",
    )
    s.add_argument("--json", action="store_true",
                   help='print {"section.key": {"value": ..., "source": ...}} as JSON')
    s.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    config = cli_config(args)
    rows = [(key, config.shown(key), config.source_of(key)) for key, _ in config.items()]
    if args.json:
        print(json.dumps({key: {"value": value, "source": source}
                          for key, value, source in rows}, indent=1))
        return 0
    # Values as JSON (strings quoted, lists in brackets): close to what kgrec.toml takes.
    lefts = [f"{key} = {json.dumps(value)}" for key, value, _ in rows]
    width = min(max(map(len, lefts)), 44)  # long lists push only their own comment
    for left, (_, _, source) in zip(lefts, rows, strict=True):
        print(f"{left:<{width}}  # {source}")
    return 0
