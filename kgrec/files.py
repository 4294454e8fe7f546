"""Artefact files that are never half written and never silently damaged.

Writes go to a hidden temporary file beside the target and are renamed over it, so a
crash or a full disk never leaves a half file under the real name. Folders record the
SHA-256 of each artefact at save time; loading refuses a file whose bytes changed
(truncated, flipped, replaced) with a :class:`ModelError` naming it and the command that
rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from kgrec.errors import KgrecError, ModelError

T = TypeVar("T")

#: What a damaged file raises inside torch.load / json / pandas / numpy readers.
READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError, IndexError, EOFError,
           pickle.UnpicklingError, zipfile.BadZipFile)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    The temporary name starts with a dot and keeps the suffix (numpy appends ``.npz``
    otherwise). An ``OSError`` (full disk, no permission) leaves no file behind and names
    ``path`` (writers such as pyarrow name no file, or the temporary one).
    """
    path = Path(path)
    # A device or a pipe (/dev/stdout) cannot be replaced: it is written in place.
    special = path.exists() and not path.is_file() and not path.is_dir()
    tmp = path if special else path.with_name(
        f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        write(tmp)
        if tmp != path:
            os.replace(tmp, path)
    except BaseException as exc:
        if tmp != path:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno and exc.filename in (None, str(tmp)):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    return path


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Writes in place (an append): an ``OSError`` that names no file (a full disk) is
    raised again naming ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.errno and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(folder: str | Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: SHA-256}`` of the files ``folder/name`` (names may hold sub-folders)."""
    return {name: sha256(Path(folder) / name) for name in names}


def verify(folder: str | Path, sums: Mapping[str, str], fix: str) -> None:
    """Raise :class:`ModelError` naming the first file of ``sums`` that is missing or whose
    bytes changed since :func:`checksums`; ``fix`` says what rebuilds it."""
    for name, expected in sums.items():
        path = Path(folder) / name
        if not path.is_file():
            raise ModelError(f"{path} is missing; {fix}")
        if sha256(path) != expected:
            raise ModelError(f"{path} is corrupted (checksum mismatch); {fix}")


def read_artefact(path: str | Path, load: Callable[[Path], T], fix: str) -> T:
    """``load(path)``, a damaged or missing file raised as :class:`ModelError` naming it
    (a truncated torch file raises RuntimeError, bad JSON ValueError, ...)."""
    path = Path(path)
    try:
        return load(path)
    except KgrecError:
        raise
    except FileNotFoundError as exc:
        raise ModelError(f"{path} is missing; {fix}") from exc
    except READ_ERRORS as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ModelError(f"{path} is corrupted or unreadable ({reason}); {fix}") from exc


#: The key of a JSON file's own checksum (:func:`seal` / :func:`unseal`).
SEAL = "sha256"


def seal(meta: Mapping[str, object]) -> dict[str, object]:
    """``meta`` plus the SHA-256 of its canonical JSON under :data:`SEAL`: a JSON header
    that holds the checksums of other files is itself checked that way."""
    body = {k: v for k, v in meta.items() if k != SEAL}
    return {**body, SEAL: _json_sha(body)}


def unseal(meta: object, path: str | Path, fix: str) -> dict:
    """``meta`` read from ``path``, checked against its :data:`SEAL`; a file without one or
    edited since (even to values within range) raises :class:`ModelError`."""
    if not isinstance(meta, dict) or SEAL not in meta:
        raise ModelError(f"{path} carries no checksum (damaged, or written by an older "
                         f"kgrec); {fix}")
    body = {k: v for k, v in meta.items() if k != SEAL}
    if _json_sha(body) != meta[SEAL]:
        raise ModelError(f"{path} is corrupted or was edited (checksum mismatch); {fix}")
    return body


def _json_sha(value: object) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()
