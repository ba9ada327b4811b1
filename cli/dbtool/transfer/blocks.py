"""Whole blocks of a CSV import checked at once, and handed to the database as they are.

Most import files are another system's clean export: every row in the same plain form.
For such a file, `block_form` builds one regular expression per header that a row matches
only if `RowPlan.validate` would take every value of it exactly as written (an email
already lower case and plainly valid, a complete Argon2 or bcrypt hash, a canonical UUID,
`true`, a timestamp with its offset, ...). A block of lines that matches as a whole reaches
the database without being validated row by row: on PostgreSQL as the CSV text itself
(COPY ... FROM STDIN) or as rows converted column by column for a binary COPY, on SQLite
as rows converted column by column into the batch's JSON (`_BlockLoader` in importing.py
chooses); its Argon2 parameter sets are checked once per block. The rule is one-sided: a
row the expression refuses is read and validated as before, line by line, and a block the
database refuses (a date that does not exist, a taken email) is rolled back to its
savepoint and imported the slow way, which reports the exact line.

Not covered, so read the slow way: mapped files (--map, --from), plain passwords, emails
kept as typed, values with capitals, quotes or non-ASCII characters, timestamps without an
offset, and columns of other types (dates, numbers with a fraction, JSON, enums, custom
types); a file missing a column that only Python fills in (a creation time, a derived
username).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Integer, SmallInteger, String, Uuid

from dbtool.models.builtin import USERNAME_MAX_LENGTH
from dbtool.models.user_model import FLAG_WORDS, keeps_time_zone
from dbtool.transfer.readers import Block
from dbtool.users.passwords import argon2_parameters_problem_in, plain_hash_pattern
from dbtool.users.validation import EMAIL_MAX_LENGTH, plain_email_pattern

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Years 1000-2999: no offset can carry them out of range, in Python or in the database.
_DATE_TIME = (
    r"[12]\d{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[T ]"
    r"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
)
_UNQUOTED = r"[ !#-+\--~]"  # printable ASCII but for the quote and the comma
_OFFSET = r"[+-](?:[01]\d|2[0-3]):[0-5]\d"
# The words user_model reads as true and false, as they are written: PostgreSQL reads them
# alike.
_FLAGS = "(?:" + "|".join(map(re.escape, FLAG_WORDS)) + ")"


@dataclass(frozen=True)
class BlockForm:
    """How the blocks of one file are checked and what the database is sent."""

    pattern: re.Pattern[str]
    columns: list[str]  # the COPY column list, in the order `payload` gives them
    suffix: str  # the constants the import fills in, appended to every line
    new_ids: bool  # a new random id appended to every line (the file has none)
    checks_argon2: bool
    # For `records`: how each field of the file becomes the value the driver takes (None:
    # the text as it is), and the constants after them.
    readers: tuple[Callable[[str], Any] | None, ...] = ()
    constants: tuple[Any, ...] = ()

    def accepts(self, text: str) -> bool:
        if self.pattern.fullmatch(text) is None:
            return False
        return not (self.checks_argon2 and argon2_parameters_problem_in(text))

    def payload(self, block: Block) -> Iterator[bytes]:
        """The block as the database's CSV loader reads it, part by part (ASCII: the form
        admits nothing else)."""
        for part in block.parts:
            text = _lf(part)
            if self.suffix:
                text = text.replace("\n", self.suffix + "\n")
            if self.new_ids:
                lines = text.split("\n")[:-1]
                ids = _random_uuids(len(lines))
                text = "".join([f"{line},{new}\n" for line, new in zip(lines, ids, strict=True)])
            yield text.encode("ascii")

    def numbered(self, block: Block) -> Iterator[bytes]:
        """The block's lines for the staging table, part by part: each after its number."""
        number = block.line
        for part in block.parts:
            lines = _lf(part).split("\n")[:-1]
            yield "".join([f"{n},{line}\n" for n, line in enumerate(lines, number)]).encode()
            number += len(lines)

    def parts(self, block: Block) -> Iterator[list[Any]]:
        """For the staging table (`staged`): the block part by part as columns of values,
        in `columns` order (the line numbers first)."""
        number = block.line
        for part in block.parts:
            rows = list(csv.reader(_lf(part).split("\n")[:-1], strict=True))
            columns: list[Any] = [range(number, number + len(rows))]
            columns += zip(*rows, strict=True)
            for at, read in enumerate(self.readers, start=1):
                if read is not None:
                    columns[at] = list(map(read, columns[at]))
            number += len(rows)
            yield columns

    def records(self, block: Block) -> Iterator[tuple[Any, ...]]:
        """The block's rows as values for a binary COPY into `columns`, converted part by
        part as the driver asks for them; ValueError where a value does not convert (a date
        that does not exist), which ends the COPY: the block is then read the slow way."""
        for part in block.parts:
            rows = list(csv.reader(_lf(part).split("\n")[:-1], strict=True))
            columns: list[Any] = list(zip(*rows, strict=True))
            for at, read in enumerate(self.readers):
                if read is not None:
                    columns[at] = list(map(read, columns[at]))
            count = len(rows)
            columns += [(constant,) * count for constant in self.constants]
            if self.new_ids:
                columns.append(_random_uuids(count))
            yield from zip(*columns, strict=True)


def _lf(text: str) -> str:
    """Lines ending in \\n alone (what the loader and the csv module are given)."""
    return text.replace("\r\n", "\n") if "\r" in text else text


def csv_constant(value: Any) -> str | None:
    """A constant the import fills in, as the CSV loader reads it (None: it cannot say)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and re.fullmatch(f"{_UNQUOTED}+", value):
        return value
    return None


def block_form(
    plan: Any, header: list[str], fills: dict[str, tuple[bool, Any]], *, staged: bool = False
) -> BlockForm | None:
    """The block form of a file with `header` for the import `plan` (a RowPlan), or None
    where some column the file gives, or one it leaves out, needs Python's work per row.
    `fills`: the columns the import fills in where a row has no value, each with (whether
    it is a constant, the value the driver takes), from `_DirectCopy`. `staged`: for the
    import's staging table, whose move fills in those columns and the ids itself; each
    line then goes with its number (`numbered`)."""
    model = plan.model
    columns = {column.name: column for column in model.table.columns}
    if plan.plain in header or not set(header) <= set(columns):
        return None
    fields = []
    for number, name in enumerate(header, start=1):
        field = _field(columns[name], model, "," if number < len(header) else r"\r\n")
        if field is None:
            return None
        fields.append(field)
    suffix, copied, constants = "", list(header), []
    new_ids = False
    python_made = {model.created, model.updated, model.username, *model.generated}
    python_made |= {column for column in model.table.columns if _python_default(column, model)}
    for name, column in columns.items():
        if name in header:
            continue
        if column is model.id and (model.generate_id or plan.server_ids):
            if staged and not plan.server_ids:
                return None  # ids that Python makes, row by row
            new_ids = not staged
        elif staged and name in fills:
            continue
        elif name in fills:
            is_constant, value = fills[name]
            if not is_constant or (text := csv_constant(value)) is None:
                return None
            suffix += "," + text
            constants.append(value)
            copied.append(name)
        elif column in python_made or column in model.required:
            return None
        elif not column.nullable and column.server_default is None and not _numbered(column):
            return None  # required: the slow path names it row by row
    if new_ids:
        copied.append(model.id.name)
    line = ",".join(fields) + r"\r?\n"  # a separator ends each field: no look-ahead
    return BlockForm(
        re.compile(f"(?:{line})+"),
        [plan.columns[0], *header] if staged else copied,
        suffix,
        new_ids,
        checks_argon2=model.password.name in header,
        readers=tuple(_reader(columns[name]) for name in header),
        constants=tuple(constants),
    )


def _field(column: Column[Any], model: Any, stop: str) -> str | None:
    """The regular expression of a CSV field of `column` that the import stores exactly as
    written, or None. `stop`: the character after the field ("," or, for the last, a new
    line)."""
    column_type = column.type
    kind = type(column_type)
    length = getattr(column_type, "length", None)
    if column is model.email:
        if not model.lowercase_emails:
            return None
        pattern = plain_email_pattern(stop, lower_only=True)
        return _capped(pattern, length, EMAIL_MAX_LENGTH)
    if column is model.password:
        with_commas, without, widest = plain_hash_pattern()
        quoted = _capped(f"(?:{with_commas}|{without})", length, widest, quote='\\"')
        return rf'(?:"{quoted}"|{_capped(without, length, widest)})'
    if column is model.username:
        limit = min(USERNAME_MAX_LENGTH, length or USERNAME_MAX_LENGTH)
        return rf"[A-Za-z0-9_.@+-]{{1,{limit}}}"
    if issubclass(kind, Uuid):
        return _either(_UUID)
    if issubclass(kind, Boolean):
        return _either(_FLAGS)
    if issubclass(kind, DateTime):
        # PostgreSQL ignores the offset of a time for a column without a time zone; the
        # import converts it to UTC: they agree on +00:00 only.
        offset = _OFFSET if keeps_time_zone(column) else r"[+-]00:00"
        return _either(_DATE_TIME + offset)
    if issubclass(kind, Integer):
        digits = 18 if issubclass(kind, BigInteger) else 4 if issubclass(kind, SmallInteger) else 9
        return _either(rf"(?:0|-?[1-9]\d{{0,{digits - 1}}})")
    if issubclass(kind, String) and not getattr(column_type, "enums", None):
        limit = rf"{{1,{length}}}" if length else "+"
        # Never empty: an empty field is NULL to the loader, and "" to the import.
        return rf'(?:{_UNQUOTED}{limit}|"[ !#-~]{limit}")'
    return None


def _reader(column: Column[Any]) -> Callable[[str], Any] | None:
    """How a field `_field` accepted becomes the value the driver takes for `column`."""
    kind = type(column.type)
    if issubclass(kind, Boolean):
        return FLAG_WORDS.__getitem__
    if issubclass(kind, DateTime):
        if keeps_time_zone(column):
            return _aware_utc
        return _naive_utc  # the form takes only +00:00 for these
    if issubclass(kind, Integer):
        return int
    return None  # text, and UUIDs in their canonical text (the driver parses them)


def _aware_utc(value: str) -> datetime:
    """The time in UTC, as the import's converter gives it (SQLite stores it so)."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def _naive_utc(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=None)


def _either(value: str) -> str:
    """`value` (which has no comma) unquoted or in quotes."""
    return rf'(?:{value}|"{value}")'


def _capped(value: str, length: int | None, widest: int, *, quote: str = ",") -> str:
    """`value` (at most `widest` characters), at most `length` characters long: checked by a
    look-ahead to the end of the field, `quote` or a separator, where it can be longer."""
    if length is None or widest <= length:
        return value
    return rf"(?=[^{quote}\r\n]{{1,{length}}}[{quote}\r\n]){value}"


def _python_default(column: Column[Any], model: Any) -> bool:
    """Whether the import fills `column` in Python (a callable default) when a row has none."""
    default = column.default
    return (
        default is not None
        and default.is_callable
        and column is not model.id
        and column not in {model.created, model.updated}
    )


def _numbered(column: Column[Any]) -> bool:
    return column.table.autoincrement_column is column


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _random_uuids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs as text, made together: a third of uuid4's time."""
    digits = os.urandom(16 * count).hex()
    variant = _VARIANT
    return [
        f"{digits[at : at + 8]}-{digits[at + 8 : at + 12]}-4{digits[at + 13 : at + 16]}-"
        f"{variant[digits[at + 16]]}{digits[at + 17 : at + 20]}-{digits[at + 20 : at + 32]}"
        for at in range(0, 32 * count, 32)
    ]
