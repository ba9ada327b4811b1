"""Reading import files: CSV with a header row, JSON Lines, or one JSON document holding an
array of objects (Firebase's export, Django's dumpdata), as (line number, record) pairs.

Everything here is streaming and bounded: a line longer than MAX_LINE_BYTES or a CSV field
longer than MAX_FIELD_CHARS becomes a row error with its line number, found while reading
in constant memory. Nothing read from a file is echoed in full: messages quote at most a
short excerpt of a value (a plain password may sit in any field of a broken file).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from dbtool.errors import FileError, UsageError
from dbtool.formats import Format

if TYPE_CHECKING:  # the block forms need SQLAlchemy and the models: not to read a file
    from dbtool.transfer.blocks import BlockForm

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
    """--format wins; then the file extension (.csv, .jsonl, .ndjson, .json); then `default`."""
    if explicit is not None:
        return explicit
    suffix = Path(path or "").suffix.lower()
    if suffix == ".csv":
        return Format.CSV
    if suffix in (".jsonl", ".ndjson"):
        return Format.JSONL
    if suffix == ".json":
        return Format.JSON
    if default is not None:
        return default
    where = "standard input" if path in (None, "-") else repr(path)
    raise UsageError(
        f"cannot tell the format of {where}: use --format csv, --format jsonl or --format json"
    )


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


def describe_names(names: Iterable[str]) -> str:
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
        raise UsageError(f"{where} repeats column(s) {describe_names(duplicates)}")
    unknown = [name for name in names if name not in allowed]
    if is_header and unknown and len(unknown) == len(names):
        raise UsageError(
            f"{where} has no known column name: the file seems to have no header line "
            f"(the first line looks like data); add one, e.g. {', '.join(sorted(allowed)[:4])}"
        )
    if unknown:
        raise UsageError(
            f"unknown column(s) in {where}: {describe_names(unknown)} (allowed: "
            f"{', '.join(sorted(allowed))}; map others with --map SOURCE=COLUMN, or drop them "
            "with --ignore-extra)"
        )


class RecordNames(Protocol):
    """What the readers need of dbtool.transfer.mapping.FieldMap (--map, --ignore-extra,
    --from): how a file's names become the import's columns."""

    def check_names(self, names: list[str], *, where: str, is_header: bool) -> None: ...
    def has_email(self, header: list[str]) -> bool: ...
    def prepare(self, record: dict[str, Any]) -> dict[str, Any]: ...
    def apply(self, record: dict[str, Any]) -> dict[str, Any]: ...


class _Names:
    """The file's names must be the import columns themselves (no --map)."""

    def __init__(self, allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
        self.allowed, self.names, self.required = allowed, set(allowed), required

    def check_names(self, names: list[str], *, where: str, is_header: bool) -> None:
        if not self.names.issuperset(names):
            check_header(names, self.allowed, where=where, is_header=is_header)

    def has_email(self, header: list[str]) -> bool:
        return all(name in header for name in self.required)


@dataclass(frozen=True)
class Block:
    """Lines of an import file that matched the block form, each ending in a newline, in
    the parts they were read in: `line` the number of the first, `header` the file's."""

    parts: tuple[str, ...]
    rows: int
    line: int
    header: list[str]

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @classmethod
    def joined(cls, blocks: list[Block]) -> Block:
        """Consecutive blocks as one. Their parts stay apart: what is sent is made part by
        part as the database takes it (one string for a batch, and its copies, cost 25 MiB
        of memory more for a batch of 20,000 rows)."""
        first = blocks[0]
        parts = tuple(part for block in blocks for part in block.parts)
        return cls(parts, sum(block.rows for block in blocks), first.line, first.header)


class Records(Iterator[tuple[int, Any]]):
    """What read_records returns: (line number, record) pairs, read as they are asked for.
    A reader of CSV without --map can also hand over whole blocks of lines, as
    (first line number, Block), where `offer_blocks` gave it the means to check them before
    the first record was asked for (dbtool.transfer.blocks)."""

    def __init__(self, read: Callable[[Records], Iterator[tuple[int, Any]]]) -> None:
        self._read = read
        self._records: Iterator[tuple[int, Any]] | None = None
        self.block_form: Callable[[list[str]], BlockForm | None] | None = None

    def offer_blocks(self, block_form: Callable[[list[str]], BlockForm | None]) -> None:
        """`block_form(header)`: the BlockForm of a CSV file with that header, or None."""
        self.block_form = block_form

    def __next__(self) -> tuple[int, Any]:
        if self._records is None:
            self._records = self._read(self)
        line, record = next(self._records)
        return line, record


def read_records(
    stream: IO[str],
    fmt: Format,
    allowed: Iterable[str],
    *,
    required: Iterable[str] = ("email",),
    name: str = "the input",
    fields: RecordNames | None = None,
) -> Records:
    """(line number, record) for every row, streaming. A header (CSV) or object (JSON)
    with unknown columns is a UsageError; a row that cannot be read at all becomes a record
    holding only ERROR_KEY with the reason. With `fields`, records are mapped to the import
    columns (dbtool.transfer.mapping). Open files with errors="surrogateescape": invalid
    UTF-8 is then a row error, not the end of the import."""
    allowed = tuple(allowed)
    names: RecordNames | _Names = fields if fields is not None else _Names(allowed, tuple(required))

    def read(records: Records) -> Iterator[tuple[int, Any]]:
        if fmt is Format.CSV:
            blocks = None if fields is not None else records.block_form
            yield from _read_csv(
                _bounded_lines(stream, name), names, tuple(required), blocks, stream, name
            )
        elif fmt is Format.JSONL:
            yield from _read_jsonl(_bounded_lines(stream, name), names)
        else:
            yield from _read_json(stream, name, names)

    return Records(read)


def _mapped(
    names: RecordNames | _Names, record: dict[str, Any], where: str, is_header: bool
) -> dict[str, Any]:
    if isinstance(names, _Names):
        names.check_names(list(record), where=where, is_header=is_header)
        return record
    record = names.prepare(record)
    names.check_names(list(record), where=where, is_header=is_header)
    return names.apply(record)


def _read_csv(
    lines: Iterator[str],
    names: RecordNames | _Names,
    required: tuple[str, ...],
    blocks: Callable[[list[str]], BlockForm | None] | None = None,
    stream: IO[str] | None = None,
    name: str = "the input",
) -> Iterator[tuple[int, Any]]:
    previous_limit = csv.field_size_limit(MAX_FIELD_CHARS)
    mapped = not isinstance(names, _Names)
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
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            raise UsageError(f"the CSV header repeats column(s) {describe_names(duplicates)}")
        names.check_names(header, where="the CSV header", is_header=True)
        if not names.has_email(header):
            raise UsageError(
                f"the CSV header has no {' or '.join(required)} column"
                + (" (or a column mapped to it)" if mapped else "")
            )
        form = blocks(header) if blocks is not None and stream is not None else None
        if form is not None:
            yield from _csv_blocks(stream, name, form, header, names, reader.line_num + 1)  # type: ignore[arg-type]
        else:
            yield from _csv_rows(reader, header, names)
    finally:
        csv.field_size_limit(previous_limit)


def _csv_rows(
    reader: Any,
    header: list[str],
    names: RecordNames | _Names,
    offset: int = 0,
    until: Callable[[], bool] | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The records of a csv.reader past the header; `offset`: lines before the reader's
    first; `until`: stop where it says so, between records."""
    mapped = not isinstance(names, _Names)
    width = len(header)
    while until is None or not until():
        start = offset + reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, {ERROR_KEY: _csv_problem(str(exc), start, offset + reader.line_num)}
            continue
        if not row:
            continue  # a blank line
        joined = "\n".join(row)  # one string to check (the marker has no "\n")
        if _OVERLONG in joined:
            yield start, {ERROR_KEY: TOO_LONG}
        elif not is_text(joined):
            yield start, {ERROR_KEY: NOT_UTF8}
        elif len(row) != width:
            more = "more" if len(row) > width else "fewer"
            yield start, {ERROR_KEY: f"{more} fields ({len(row)}) than the header ({width})"}
        elif mapped:
            yield start, names.apply(dict(zip(header, row, strict=True)))  # type: ignore[union-attr]
        else:
            # strict=False: the lengths were compared just above (strict costs per row).
            yield start, dict(zip(header, row, strict=False))


# About 250 rows of an export with Argon2 hashes: the importer joins blocks into its
# batches, and the event loop turns between two.
BLOCK_CHARS = 1 << 16


def _csv_blocks(
    stream: IO[str],
    name: str,
    form: BlockForm,
    header: list[str],
    names: RecordNames | _Names,
    line: int,
) -> Iterator[tuple[int, Any]]:
    """The rows after the header, `line` the first: a block of whole lines that `form`
    accepts as (its first line, Block), any other as records, read by the csv module (a
    quoted field that goes on past the block's end is followed into the next lines)."""
    pending = ""
    while True:
        try:
            chunk = stream.read(BLOCK_CHARS)
        except OSError as exc:
            raise FileError(f"cannot read {name}: {exc.strerror or exc}") from None
        text = pending + chunk
        if not text:
            return
        cut = text.rfind("\n") + 1 if chunk else len(text)
        if cut == 0 and len(text) <= MAX_LINE_CHARS:
            pending = text  # a line longer than a chunk: read on
            continue
        block, pending = text[: cut or len(text)], text[cut or len(text) :]
        if form.accepts(block):
            rows = block.count("\n")
            yield line, Block((block,), rows, line, header)
            line += rows
            continue
        rest = _Prefixed(pending, stream)
        feed = _Feed(block, _bounded_lines(rest, name))  # type: ignore[arg-type]
        reader = csv.reader(feed, strict=True)
        yield from _csv_rows(reader, header, names, line - 1, feed.block_read)
        line += reader.line_num
        pending = rest.remaining()


def block_records(block: Block) -> Iterator[tuple[int, dict[str, Any]]]:
    """The records of a block, as the csv module reads them (a block the database refused,
    read the slow way to find the line)."""
    reader = csv.reader(_Feed(block.text, iter(())), strict=True)
    names = _Names(tuple(block.header), ())
    yield from _csv_rows(reader, block.header, names, block.line - 1)


class _Feed:
    """The lines of a block, then, for a record that goes on, those that follow it."""

    def __init__(self, block: str, following: Iterator[str]) -> None:
        parts = block.split("\n")  # not splitlines: a field may hold \f or \x1c
        lines = [part + "\n" for part in parts[:-1]]
        if parts[-1]:
            lines.append(parts[-1])
        self.lines = [_OVERLONG + "\n" if len(text) > MAX_LINE_CHARS else text for text in lines]
        self.next, self.following = 0, following

    def block_read(self) -> bool:
        return self.next >= len(self.lines)

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        if self.next < len(self.lines):
            self.next += 1
            return self.lines[self.next - 1]
        return next(self.following)


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


def _parse_object(text: str) -> dict[str, Any] | str:
    """A JSON object, or why the text is not one."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg})"
    except RecursionError:
        return "not valid JSON (nested too deeply)"
    except ValueError:  # an integer of more digits than Python converts (4,300)
        return "not valid JSON here (a number too long)"
    return record if isinstance(record, dict) else "not a JSON object"


def _read_jsonl(
    lines: Iterator[str], names: RecordNames | _Names
) -> Iterator[tuple[int, dict[str, Any]]]:
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
        record = _parse_object(line)
        if isinstance(record, str):
            yield number, {ERROR_KEY: record}
            continue
        yield number, _mapped(names, record, f"line {number}", False)


# A JSON document whose records are an array, at the top or as the first member of an object
# ({"users": [...]}, Firebase's export); any other .json file is read as JSON Lines.
_ARRAY_DOCUMENT = re.compile(r'\s*(?:\[|\{\s*"(?:[^"\\]|\\.){0,256}"\s*:\s*\[)')
_SPACE = re.compile(r"\s*")
_CHUNK = 1 << 16


class _Document:
    """A JSON document read in chunks; positions and line numbers within it."""

    def __init__(self, stream: IO[str], name: str) -> None:
        self.stream, self.name = stream, name
        self.text, self.pos, self.line, self.eof = "", 0, 1, False

    def more(self) -> bool:
        """Read the next chunk (dropping what was consumed); False at the end."""
        if self.eof:
            return False
        try:
            chunk = self.stream.read(_CHUNK)
        except OSError as exc:
            raise FileError(f"cannot read {self.name}: {exc.strerror or exc}") from None
        if not chunk:
            self.eof = True
            return False
        self.text = self.text[self.pos :] + chunk
        self.pos = 0
        return True

    def advance(self, to: int) -> None:
        self.line += self.text.count("\n", self.pos, to)
        self.pos = to

    def peek(self) -> str:
        """The next character that is not white space ("" at the end)."""
        while True:
            self.advance(_SPACE.match(self.text, self.pos).end())  # type: ignore[union-attr]
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def expect(self, characters: str, what: str) -> str:
        found = self.peek()
        if not found or found not in characters:
            shown = "the end of the file" if not found else repr(found)
            raise UsageError(
                f"{self.name} is not valid JSON: expected {what} on line {self.line}, found {shown}"
            )
        self.advance(self.pos + 1)
        return found

    def value(self) -> tuple[Any, str]:
        """The next JSON value and its text, read across chunks, at most MAX_LINE_CHARS."""
        decoder = json.JSONDecoder()
        self.peek()  # raw_decode does not skip white space
        while True:
            try:
                value, end = decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                if len(self.text) - self.pos > MAX_LINE_CHARS:
                    raise UsageError(
                        f"{self.name}: the record starting on line {self.line} is longer than "
                        f"{MAX_LINE_CHARS:,} characters or not valid JSON"
                    ) from None
                if not self.more():
                    line = self.line + self.text.count("\n", self.pos, exc.pos)
                    raise UsageError(
                        f"{self.name} is not valid JSON: {exc.msg} on line {line}"
                    ) from None
                continue
            except RecursionError:
                raise UsageError(
                    f"{self.name}: a record on line {self.line} is nested too deeply"
                ) from None
            except ValueError:  # an integer of more digits than Python converts (4,300)
                raise UsageError(
                    f"{self.name}: a record on line {self.line} holds a number too long to read"
                ) from None
            if end == len(self.text) and self.more():
                continue  # a number may go on in the next chunk
            text = self.text[self.pos : end]
            self.advance(end)
            return value, text


def _read_json(
    stream: IO[str], name: str, names: RecordNames | _Names
) -> Iterator[tuple[int, dict[str, Any]]]:
    document = _Document(stream, name)
    document.more()
    if document.text.startswith(BOM):
        document.pos = len(BOM)
    if not _ARRAY_DOCUMENT.match(document.text, document.pos):
        # Not an array document (an NDJSON export named .json, as Auth0's often are).
        rest = _Prefixed(document.text[document.pos :], stream)
        yield from _read_jsonl(_bounded_lines(rest, name), names)  # type: ignore[arg-type]
        return
    in_object = document.expect("[{", "[ or {") == "{"
    if in_object:
        document.value()  # the member's name (users)
        document.expect(":", ":")
        document.expect("[", "[")
    if document.peek() == "]":
        document.advance(document.pos + 1)
    else:
        while True:
            line = document.line
            record, text = document.value()
            if not is_text(text):
                yield line, {ERROR_KEY: NOT_UTF8}
            elif not isinstance(record, dict):
                yield line, {ERROR_KEY: "not a JSON object"}
            else:
                yield line, _mapped(names, record, f"the record on line {line}", False)
            if document.expect(",]", ", or ]") == "]":
                break
    if in_object:
        document.expect("}", "} after the list of records")
    if document.peek():
        raise UsageError(
            f"{name} is not valid JSON: more text after the document on line {document.line}"
        )


class _Prefixed:
    """Text already read, then the rest of the stream, line by line."""

    def __init__(self, prefix: str, stream: IO[str]) -> None:
        self.prefix, self.stream = io.StringIO(prefix), stream

    def remaining(self) -> str:
        """What is left of the text already read."""
        return self.prefix.read()

    def readline(self, size: int = -1) -> str:
        line = self.prefix.readline(size)
        if line.endswith("\n") or (size >= 0 and len(line) >= size):
            return line
        return line + self.stream.readline(size - len(line) if size >= 0 else -1)
