"""Reading raw records from CSV/TSV, JSON lines (optionally gzipped) and Parquet files.

Every reader returns a frame of raw values plus a ``_line`` column: the 1-based line of
the record in the source file (CSV: the header is line 1; a record over several lines
is named by its first line; Parquet: the row number). Records that cannot be parsed at
all (bad JSON, bad quoting, wrong number of fields) go to the rejects.

What a file is: the name gives the format (``.csv``, ``.jsonl`` ...); the content decides
compression and encoding. Gzip data is un-gzipped whatever the name (a download that lost
its ``.gz``); text is UTF-8, with or without a byte-order mark, or UTF-16 with one. A file
that is none of these (Latin-1, UTF-16 without a BOM, binary, Parquet under a text name,
damaged gzip) ends the read with one :class:`InputError` naming the file and the line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow.parquet as pq

from kgrec.errors import InputError
from kgrec.kg.extract.validate import LINE, REJECTED, Rejects

#: The longest CSV field read (characters); a longer one rejects its record.
FIELD_LIMIT = 1 << 30
csv.field_size_limit(FIELD_LIMIT)

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
#: Undecodable bytes, kept by the ``surrogateescape`` handler as U+DC80..U+DCFF.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def open_text(path: str | Path) -> IO[str]:
    """Open a text file for reading: un-gzipped when its content is gzip (any name)."""
    path = Path(path)
    if not path.exists():
        raise InputError("file does not exist", file=str(path))
    raw = path.open("rb")
    try:
        return text_stream(raw, str(path))
    except InputError:
        raw.close()
        raise


def text_stream(raw: IO[bytes], file: str) -> IO[str]:
    """Text of a binary stream (gzip and encoding from its first bytes, see the module
    docstring); iterate it through :func:`checked_lines` to turn bad bytes into errors."""
    if _peek(raw, file).startswith(GZIP_MAGIC):
        raw = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
    head = _peek(raw, file)
    if head.startswith(PARQUET_MAGIC):
        raise InputError("this is a Parquet file: name it .parquet", file=file, row=1)
    encoding = next((enc for bom, enc in _BOMS if head.startswith(bom)), "utf-8")
    # surrogateescape: a bad byte surfaces on its own line (checked_lines), not in a chunk.
    return io.TextIOWrapper(raw, encoding=encoding, errors="surrogateescape", newline="")


def _peek(raw: IO[bytes], file: str) -> bytes:
    try:
        return raw.peek(4)[:4] if hasattr(raw, "peek") else b""
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"damaged gzip data ({exc})", file=file, row=1) from None


def checked_lines(lines: Iterable[str], file: str) -> Iterator[str]:
    """``lines`` as they come; the first undecodable or NUL byte, or damaged gzip data,
    raises one InputError naming its line (the rest of such a file cannot be trusted)."""
    number = 0
    try:
        for number, line in enumerate(lines, start=1):
            if "\x00" in line:
                raise InputError(
                    "NUL byte: a binary file, or UTF-16 text without a byte-order mark "
                    "(save it as UTF-8)", file=file, row=number)
            if not line.isascii() and (bad := _UNDECODABLE.search(line)):
                byte = ord(bad.group()) - 0xDC00
                raise InputError(
                    f"not UTF-8 text (byte 0x{byte:02x}): save the file as UTF-8 (it may be "
                    "Latin-1/Windows-1252) or it is not a text file", file=file, row=number)
            yield line
    except UnicodeDecodeError as exc:  # a strict stream handed in by a caller
        raise InputError(f"not UTF-8 text ({exc.reason})", file=file, row=number + 1) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"damaged gzip data ({exc})", file=file, row=number + 1) from None


def file_format(path: str | Path) -> str:
    """``"csv"``, ``"tsv"``, ``"jsonl"`` or ``"parquet"`` from the file name."""
    name = Path(path).name.lower().removesuffix(".gz")
    for ext, fmt in (
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".txt", "tsv"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "jsonl"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
    ):
        if name.endswith(ext):
            return fmt
    raise InputError(
        "unknown file format (expected .csv, .tsv, .jsonl/.json, .parquet, optionally .gz)",
        file=str(path),
    )


def read_records(path: str | Path, rejects: Rejects) -> tuple[pd.DataFrame, int]:
    """Raw records of ``path`` (format from its name) and the number of records read."""
    fmt = file_format(path)
    if fmt == "parquet":
        return read_parquet(path)
    with open_text(path) as fh:
        if fmt == "jsonl":
            return read_json_lines(fh, str(path), rejects)
        return read_delimited(fh, str(path), rejects, sep="," if fmt == "csv" else "\t")


def read_parquet(path: str | Path) -> tuple[pd.DataFrame, int]:
    if not Path(path).exists():
        raise InputError("file does not exist", file=str(path))
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"not a Parquet file ({exc})", file=str(path)) from None
    return with_lines(frame, range(1, len(frame) + 1), str(path)), len(frame)


def with_lines(frame: pd.DataFrame, numbers: Iterable[int], file: str) -> pd.DataFrame:
    """``frame`` with its ``_line`` column; an input column of that name would be lost."""
    if LINE in frame.columns:
        raise InputError(f"column name {LINE!r} is reserved: rename it", file=file, row=1,
                         field=LINE)
    frame[LINE] = list(numbers)
    return frame


def read_json_lines(lines: Iterable[str], file: str, rejects: Rejects) -> tuple[pd.DataFrame, int]:
    """One JSON object per line; blank lines are skipped, bad ones rejected."""
    return _whole(iter_json_lines(lines, file), rejects)


def read_delimited(
    fh: IO[str], file: str, rejects: Rejects, *, sep: str = ","
) -> tuple[pd.DataFrame, int]:
    """Delimited text with a header line; all values kept as strings ("" = missing).

    Tab-separated files are read without quote handling (RecBole atomic files contain
    bare quotes in titles)."""
    return _whole(iter_delimited(fh, file, sep=sep), rejects)


#: A chunk of records: raw frame (with global ``_line``), records read, its parse rejects.
Chunk = tuple[pd.DataFrame, int, Rejects]


def iter_records(path: str | Path, chunk_rows: int) -> Iterator[Chunk]:
    """Records of ``path`` in chunks of at most ``chunk_rows`` (streaming ingest); line
    numbers are those of the whole file. An empty file yields one empty chunk."""
    fmt = file_format(path)
    if fmt == "parquet":
        yield from iter_parquet(path, chunk_rows)
        return
    with open_text(path) as fh:
        if fmt == "jsonl":
            yield from iter_json_lines(fh, str(path), chunk_rows)
        else:
            yield from iter_delimited(fh, str(path), sep="," if fmt == "csv" else "\t",
                                      chunk_rows=chunk_rows)


def iter_parquet(path: str | Path, chunk_rows: int) -> Iterator[Chunk]:
    if not Path(path).exists():
        raise InputError("file does not exist", file=str(path))
    done = 0
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"not a Parquet file ({exc})", file=str(path)) from None
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        frame = with_lines(batch.to_pandas(), range(done + 1, done + batch.num_rows + 1),
                           str(path))
        done += len(frame)
        yield frame, len(frame), Rejects()
    if not done:
        yield read_parquet(path) + (Rejects(),)


def iter_json_lines(lines: Iterable[str], file: str, chunk_rows: int = 0) -> Iterator[Chunk]:
    """JSON lines in chunks of ``chunk_rows`` records (0: one chunk)."""
    records: list[dict] = []
    numbers: list[int] = []
    read, rejects, first = 0, Rejects(), True
    for number, line in enumerate(checked_lines(lines, file), start=1):
        if not line.strip():
            continue
        read += 1
        record = _json_record(line, number, file, rejects)
        if record is not None:
            records.append(record)
            numbers.append(number)
        if read == chunk_rows:
            yield _json_frame(records, numbers, file), read, rejects
            records, numbers, read, rejects, first = [], [], 0, Rejects(), False
    if first and not records:  # no columns to map: say why instead of "no column for ..."
        if not read:
            raise InputError("empty file (no JSON records)", file=file, row=1)
        bad = rejects.frame().iloc[0]
        raise InputError(f"no line holds a JSON object; the first: {bad['reason']}",
                         file=file, row=int(bad["line"]))
    if read or first:
        yield _json_frame(records, numbers, file), read, rejects


def _json_record(line: str, number: int, file: str, rejects: Rejects) -> dict | None:
    """The object on ``line``; None (and a reject) for bad JSON or a non-object."""
    try:
        record = json.loads(line.rstrip("\r\n"))  # an error at the end: column, not line 2
    except json.JSONDecodeError as exc:
        rejects.add(file, number, "", f"bad JSON: {exc.msg} at column {exc.colno}", REJECTED,
                    line.strip())
        return None
    problem = _json_problem(record, line)
    if problem:
        rejects.add(file, number, "", problem, REJECTED, line.strip())
        return None
    return record


def _json_problem(record: object, line: str) -> str | None:
    if not isinstance(record, dict):
        return "bad JSON: not an object"
    if "\\u" in line and _LONE_SURROGATE.search(line):
        try:  # a \ud800 escape decodes to text that no UTF-8 file or store can hold
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return "bad JSON: \\u escape of a lone surrogate (not Unicode text)"
    return None


_LONE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def _json_frame(records: list[dict], numbers: list[int], file: str) -> pd.DataFrame:
    # dtype=object: ids stay as written (1 and a missing id would become 1.0 and NaN).
    frame = pd.DataFrame(records, dtype=object) if records else pd.DataFrame()
    return with_lines(frame, numbers, file)


def iter_delimited(
    fh: Iterable[str], file: str, *, sep: str = ",", chunk_rows: int = 0
) -> Iterator[Chunk]:
    """Delimited text (see :func:`read_delimited`) in chunks of ``chunk_rows`` records
    (0: one chunk). A record over several lines is named by its first line. CSV quoting
    is strict: a stray quote rejects its record; an unclosed one, which would swallow
    the rest of the file into one field, rejects that rest as one record."""
    lines = checked_lines(fh, file)
    if sep == "\t":
        reader = csv.reader(lines, delimiter=sep, quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(lines, delimiter=sep, quoting=csv.QUOTE_MINIMAL, strict=True)
    header = _header(reader, file)
    rows: list[list[str]] = []
    numbers: list[int] = []
    read, rejects, first = 0, Rejects(), True
    start = reader.line_num + 1
    for record, problem in _records(reader):
        if problem is None and (not record or (len(record) == 1 and not record[0].strip())):
            start = reader.line_num + 1
            continue
        read += 1
        if problem is None and len(record) != len(header):
            problem = f"expected {len(header)} fields, found {len(record)}"
        if problem is None:
            rows.append(record)
            numbers.append(start)
        else:
            if reader.line_num > start:
                problem += f" (record runs over lines {start}-{reader.line_num})"
            rejects.add(file, start, "", problem, REJECTED, sep.join(record))
        start = reader.line_num + 1
        if read == chunk_rows:
            yield _delimited_frame(rows, header, numbers, file), read, rejects
            rows, numbers, read, rejects, first = [], [], 0, Rejects(), False
    if read or first:
        yield _delimited_frame(rows, header, numbers, file), read, rejects


def _header(reader: Iterator[list[str]], file: str) -> list[str]:
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError("empty file (no header line)", file=file, row=1) from None
    except csv.Error as exc:
        raise InputError(f"bad header line ({exc})", file=file, row=1) from None
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:  # two columns of one name: every lookup of it would be ambiguous
        raise InputError("duplicate column name in the header", file=file, row=1,
                         field=twice[0])
    return header


def _records(reader: Iterator[list[str]]) -> Iterator[tuple[list[str], str | None]]:
    """(record, None) per record, or ([], reason) for one its CSV quoting broke."""
    while True:
        try:
            yield next(reader), None
        except StopIteration:
            return
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):  # not a quoting problem
                yield [], (f"field over the size limit ({csv.field_size_limit():,} "
                           "characters)")
                continue
            why = "unclosed quote" if "end of data" in str(exc) else str(exc)
            yield [], f"bad CSV quoting: {why}"


def _delimited_frame(
    rows: list[list[str]], header: list[str], numbers: list[int], file: str
) -> pd.DataFrame:
    return with_lines(pd.DataFrame(rows, columns=header, dtype="object"), numbers, file)


def _whole(chunks: Iterator[Chunk], rejects: Rejects) -> tuple[pd.DataFrame, int]:
    """The single chunk of an unchunked read, its parse rejects moved to ``rejects``."""
    frame, read, mine = next(chunks)
    for row in mine.frame().itertuples(index=False):
        rejects.add(row.file, int(row.line), row.field, row.reason, row.action, row.value)
    return frame, read
