"""The ``kgrec`` command line. Thin: each sub-command lives in a ``kgrec.commands_*`` module
that parses its options and calls the packages."""

from __future__ import annotations

import argparse
import errno
import gzip
import logging
import sys
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

from kgrec.errors import KgrecError
from kgrec.settings import Neo4jConfig

log = logging.getLogger("kgrec")

# torch_geometric still calls torch.jit.script on import; the warning is noise to users.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

#: Modules that each provide ``register(subparsers)``; their sub-commands set ``func``.
COMMAND_MODULES = (
    "kgrec.commands_kg",
    "kgrec.commands_gnn",
    "kgrec.commands_fusion",
    "kgrec.commands_config",
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
    parser.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override one setting, after the file and KGREC_* variables (repeatable), e.g. "
        "--set train.epochs=50 --set train.event_weights=RATED=1,VIEWED=0.5",
    )
    parser.add_argument(
        "--debug", action="store_true", help="debug logging, and tracebacks on errors"
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
    _late_root_options(parser)
    return parser


def _late_root_options(parser: argparse.ArgumentParser) -> None:
    """Accept ``--set`` and ``--debug`` after the command too (``kgrec train --set ...``).
    Leaf commands store them under their own names and without defaults, so they add to the
    root options instead of overwriting them (argparse copies a sub-command's namespace)."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in action.choices.values():
            if any(isinstance(a, argparse._SubParsersAction) for a in child._actions):
                _late_root_options(child)
                continue
            child.add_argument("--set", action="append", dest="late_set", default=argparse.SUPPRESS,
                               metavar="SECTION.KEY=VALUE",
                               help="override one setting (repeatable; as `kgrec --set`)")
            child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help="debug logging, and tracebacks on errors")


def _setup_logging(debug: bool) -> None:
    """One stderr handler on the ``kgrec`` logger, replaced on every call so that in-process
    callers (tests, the demo) write to the current ``sys.stderr``."""
    for handler in [h for h in log.handlers if h.get_name() == "kgrec-cli"]:
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("kgrec-cli")
    handler.setFormatter(logging.Formatter("kgrec: %(levelname)s: %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.WARNING)
    log.propagate = False  # one line per problem, even where the root logger has handlers
    # The neo4j driver logs each retried transaction with its traceback; the error that ends
    # the retries is reported as one line, so its chatter shows only with --debug.
    driver_log = logging.getLogger("neo4j")
    for old in [h for h in driver_log.handlers if h.get_name() == "kgrec-cli"]:
        driver_log.removeHandler(old)
    quiet = logging.NullHandler()
    quiet.set_name("kgrec-cli")
    driver_log.addHandler(handler if debug else quiet)
    driver_log.propagate = False


def _neo4j_uri(args: argparse.Namespace) -> str:
    try:
        from kgrec.config import cli_config

        return cli_config(args).neo4j.uri
    except Exception:  # the settings themselves are broken: say so generically
        return "neo4j.uri"


#: What a write that failed for want of room or rights says after the path.
WRITE_ERRORS = {
    errno.ENOSPC: "no space left on device; free some space or choose another folder",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another folder",
    errno.EROFS: "read-only file system; choose another folder",
}


def _not_a_folder(name: str) -> str:
    """NotADirectoryError names the path asked for; say which part of it is a file."""
    path = Path(name)
    file = next((p for p in path.parents if p.is_file()), None)
    return f"cannot use {name}: {file} is a file, not a folder" if file else (
        f"{name} is not a folder")


def error_message(exc: BaseException, args: argparse.Namespace) -> str:
    """One line for a failure a user can cause: the problem and, where known, the fix."""
    if isinstance(exc, KgrecError):
        return str(exc)
    neo4j = sys.modules.get("neo4j.exceptions")  # loaded whenever a driver error can happen
    if neo4j is not None and isinstance(exc, neo4j.AuthError):
        return (f"Neo4j at {_neo4j_uri(args)} refused the credentials: "
                f"{Neo4jConfig.PASSWORD_HINT}")
    if neo4j is not None and isinstance(exc, neo4j.ServiceUnavailable | neo4j.SessionExpired):
        return (f"cannot reach Neo4j at {_neo4j_uri(args)}: start it with "
                "`bash scripts/neo4j/server.sh start` or set neo4j.uri")
    if neo4j is not None and isinstance(exc, neo4j.Neo4jError):
        return f"Neo4j at {_neo4j_uri(args)} failed: {exc.code}: {exc.message}"
    name = getattr(exc, "filename", None)
    if isinstance(exc, gzip.BadGzipFile | zlib.error | zipfile.BadZipFile | EOFError):
        return f"corrupt or truncated compressed input ({exc}): check or download the file again"
    if isinstance(exc, FileNotFoundError):
        return f"no such file or folder: {name or exc}; check the path"
    if isinstance(exc, IsADirectoryError):
        return f"{name} is a folder, a file was expected"
    if isinstance(exc, NotADirectoryError):
        return _not_a_folder(str(name))
    if isinstance(exc, FileExistsError) and name and Path(name).is_file():
        return f"{name} is a file, a folder was expected"
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS:
        return f"cannot write {name or 'the output'}: {WRITE_ERRORS[exc.errno]}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {name or exc}; check its permissions or choose another path"
    if isinstance(exc, UnicodeDecodeError):
        return (f"input is not valid {exc.encoding} text (byte {exc.start}: {exc.reason}); "
                "save the file as UTF-8")
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return ("out of memory: lower train.batch_size, score.chunk_size or "
                "fusion.text_batch_size (e.g. --set score.chunk_size=256), or use --device cpu")
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {name}" if name else "")
    if isinstance(exc, ValueError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors: argparse prints them and exits with 2
    debug = bool(getattr(args, "debug", False))
    _setup_logging(debug)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        log.debug("interrupted", exc_info=True)
        print("kgrec: error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        log.debug("traceback of the error below", exc_info=True)
        one_line = " ".join(error_message(exc, args).split())
        print(f"kgrec: error: {one_line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
