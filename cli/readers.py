"""Reading import files: CSV with a header row, or JSON Lines, as (line number, record) pairs.

Everything here is streaming and bounded: a line longer than MAX_LINE_BYTES or a CSV field
longer than MAX_FIELD_CHARS becomes a row error with its line number, found while reading
in constant memory. Nothing read from a file is echoed in full: messages quote at most a
short excerpt of a value (a plain password may sit in any field of a broken file).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from cli.errors import FileError, UsageError
from cli.formats import Format

MAX_LINE_CHARS = 1 << 20  # 1 MiB of text per physical line
MAX_FIELD_CHARS = 1 << 16  # 64 KiB per CSV field
BOM = "\ufeff"

# A line too long to keep is replaced by this marker, which the readers turn into a row
# error (the CSV reader may see it inside a quoted field that spans lines).
_OVERLONG = "\x00dbtool:line-too-long\x00"
ERROR_KEY = "__error__"


def detect_format(
    path: str | None, explicit: Format | None, *, default: Format | None = None
) -> Format:
    """--format wins; then the file extension (.csv, .jsonl, .ndjson); then `default`."""
    if explicit is not None:
        return explicit
    suffix = Path(path or "").suffix.lower()
    if suffix == ".csv":
        return Format.CSV
    if suffix in (".jsonl", ".ndjson"):
        return Format.JSONL
    if default is not None:
        return default
    where = "standard input" if path in (None, "-") else repr(path)
    raise UsageError(f"cannot tell the format of {where}: use --format csv or --format jsonl")


def _bounded_lines(stream: IO[str], name: str) -> Iterator[str]:
    """The stream's lines, each at most MAX_LINE_CHARS; a longer one is skipped in chunks
    (never held whole) and replaced by the overlong marker."""
    try:
        while True:
            line = stream.readline(MAX_LINE_CHARS + 1)
            if not line:
                return
            if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
                while True:
                    rest = stream.readline(1 << 16)
                    if not rest or rest.endswith("\n"):
                        break
                yield _OVERLONG + "\n"
                continue
            yield line
    except OSError as exc:
        raise FileError(f"cannot read {name}: {exc.strerror or exc}") from None


def is_text(value: str) -> bool:
    """False for text that came from invalid UTF-8 (decoded with surrogateescape)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


NOT_UTF8 = "the line is not valid UTF-8 text"
TOO_LONG = f"the line is longer than {MAX_LINE_CHARS:,} characters"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.$ -]{0,63}")


def _describe_names(names: Iterable[str]) -> str:
    """Column names for a message; anything that does not look like a name is not shown."""
    shown = [name for name in names if _IDENTIFIER.fullmatch(name)]
    hidden = sum(1 for name in names if not _IDENTIFIER.fullmatch(name))
    parts = [", ".join(sorted(shown))] if shown else []
    if hidden:
        parts.append(f"{hidden} value(s) that do not look like column names (not shown)")
    return "; ".join(parts)


def check_header(
    names: list[str], allowed: Iterable[str], *, where: str, is_header: bool = True
) -> None:
    """Duplicate or unknown columns are a UsageError (exit 2), before any row."""
    allowed = set(allowed)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UsageError(f"{where} repeats column(s) {_describe_names(duplicates)}")
    unknown = [name for name in names if name not in allowed]
    if is_header and unknown and len(unknown) == len(names):
        raise UsageError(
            f"{where} has no known column name: the file seems to have no header line "
            f"(the first line looks like data); add one, e.g. {', '.join(sorted(allowed)[:4])}"
        )
    if unknown:
        raise UsageError(
            f"unknown column(s) in {where}: {_describe_names(unknown)} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )


def read_records(
    stream: IO[str],
    fmt: Format,
    allowed: Iterable[str],
    *,
    required: Iterable[str] = ("email",),
    name: str = "the input",
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every row, streaming. A header (CSV) or object (JSON
    Lines) with unknown columns is a UsageError; a row that cannot be read at all becomes
    a record holding only ERROR_KEY with the reason. Open files with
    errors="surrogateescape": invalid UTF-8 is then a row error, not the end of the import."""
    allowed = tuple(allowed)
    lines = _bounded_lines(stream, name)
    if fmt is Format.CSV:
        yield from _read_csv(lines, allowed, tuple(required))
    else:
        yield from _read_jsonl(lines, allowed)


def _read_csv(
    lines: Iterator[str], allowed: tuple[str, ...], required: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, Any]]]:
    previous_limit = csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        reader = csv.reader(lines, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise UsageError("the CSV file is empty: it needs a header line") from None
        except csv.Error:
            raise UsageError("the CSV header line cannot be read (broken quoting)") from None
        if header and header[0].startswith(BOM):  # a BOM the decoder did not remove (stdin)
            header[0] = header[0][len(BOM) :]
        header = [name.strip() for name in header]
        if any(_OVERLONG in name for name in header):
            raise UsageError(f"the CSV header line is longer than {MAX_LINE_CHARS:,} characters")
        if not is_text("".join(header)):
            raise UsageError("the CSV header line is not valid UTF-8 text")
        check_header(header, allowed, where="the CSV header")
        for name in required:
            if name not in header:
                raise UsageError(f"the CSV header has no {name} column")
        width = len(header)
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, {ERROR_KEY: _csv_problem(str(exc), start, reader.line_num)}
                continue
            if not row:
                continue  # a blank line
            if any(_OVERLONG in field for field in row):
                yield start, {ERROR_KEY: TOO_LONG}
            elif not is_text("".join(row)):
                yield start, {ERROR_KEY: NOT_UTF8}
            elif len(row) != width:
                more = "more" if len(row) > width else "fewer"
                yield start, {ERROR_KEY: f"{more} fields ({len(row)}) than the header ({width})"}
            else:
                yield start, dict(zip(header, row, strict=True))
    finally:
        csv.field_size_limit(previous_limit)


def _csv_problem(message: str, start: int, end: int) -> str:
    if "field larger than field limit" in message:
        return (
            f"a field is longer than {MAX_FIELD_CHARS:,} characters (an unclosed quote "
            "makes a field run on into the following lines)"
        )
    if "unexpected end of data" in message:
        return (
            f"a quoted field is never closed: it runs from line {start} to the end of the "
            f"file (line {end}), so those lines cannot be read"
        )
    return "broken CSV quoting (a quote inside an unquoted field, or text after a closing quote)"


def _read_jsonl(
    lines: Iterator[str], allowed: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, Any]]]:
    names = set(allowed)
    for number, line in enumerate(lines, start=1):
        if number == 1 and line.startswith(BOM):
            line = line[len(BOM) :]
        if line.startswith(_OVERLONG):
            yield number, {ERROR_KEY: TOO_LONG}
            continue
        if not line.strip():
            continue
        if not is_text(line):
            yield number, {ERROR_KEY: NOT_UTF8}
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, {ERROR_KEY: f"not valid JSON ({exc.msg})"}
            continue
        except RecursionError:
            yield number, {ERROR_KEY: "not valid JSON (nested too deeply)"}
            continue
        if not isinstance(record, dict):
            yield number, {ERROR_KEY: "not a JSON object"}
            continue
        if not names.issuperset(record):
            check_header(list(record), allowed, where=f"line {number}", is_header=False)
        yield number, record
