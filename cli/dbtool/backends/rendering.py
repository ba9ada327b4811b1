"""SQL that renders values as the text of an export, shared by the backends' fast exports.

The general path (`dbtool.transfer.exporting.ExportWriter` over `UserRecord`s) defines
the output; each backend's query must produce the same bytes, and tests compare the two.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache, reduce
from operator import itemgetter
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import Column, String, literal, type_coerce

from dbtool.formats import Format

if TYPE_CHECKING:
    from dbtool.backends.base import ExportJob


def cat(*parts: Any) -> Any:
    """SQL string concatenation of expressions and Python strings, as the dialect spells it
    (|| on PostgreSQL and SQLite, concat() on MySQL); NULL if any part is NULL."""
    items: list[Any] = [
        literal(part, String) if isinstance(part, str) else type_coerce(part, String)
        for part in parts
    ]
    return reduce(lambda left, right: left + right, items)


# The characters that make csv.writer(lineterminator="\n") quote a field (QUOTE_MINIMAL):
# the delimiter, the quote, and the line terminator's (Python 3.11 leaves "\r" unquoted
# then; asked of the csv module itself, so that a Python that does not stays identical).
@cache
def csv_quoted_characters() -> list[str]:
    import csv
    import io

    probe = io.StringIO()
    csv.writer(probe, lineterminator="\n").writerow(["\r"])
    return [",", '"', "\n", *(["\r"] if probe.getvalue().startswith('"') else [])]


def csv_field(value: Any) -> Any:
    """A text value as csv.writer writes it: quoted (its quotes doubled) where it holds a
    character that needs it."""
    from sqlalchemy import case, func, or_

    needs_quotes = or_(*(func.instr(value, c) > 0 for c in csv_quoted_characters()))
    return case((needs_quotes, cat('"', func.replace(value, '"', '""'), '"')), else_=value)


def json_line(columns: list[Column[Any]], value: Callable[[Column[Any]], Any]) -> Any:
    """One JSON object as text, as json.dumps(row, ensure_ascii=False) writes it, with
    each column's JSON text from `value`."""
    parts: list[Any] = []
    for position, column in enumerate(columns):
        key = json.dumps(column.name, ensure_ascii=False)
        parts += [("{" if position == 0 else ", ") + key + ": ", value(column)]
    return cat(*parts, "}")


class ArrayWriter:
    """Writes JSON Lines text as one JSON array: "[\\n" a ",\\n" b "\\n]\\n"."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream, self.rest, self.count = stream, "", 0

    def write(self, text: str) -> None:
        # Every newline ends a line (JSON escapes those inside values).
        lines = (self.rest + text).split("\n")
        self.rest = lines.pop()
        if lines:
            self.stream.write(("[\n" if self.count == 0 else ",\n") + ",\n".join(lines))
            self.count += len(lines)

    def close(self) -> None:
        self.stream.write("\n]\n" if self.count else "[]\n")


async def write_lines(job: ExportJob, cursor: Any, batch: int) -> int:
    """Write the rows of `cursor`, each one line the server rendered, to the job's stream
    (after the CSV header, or as the items of a JSON array), `batch` rows at a time; how
    many there were."""
    array = ArrayWriter(job.stream) if job.fmt is Format.JSON else None
    write = array.write if array is not None else job.stream.write
    job.write_csv_header()
    line = itemgetter(0)
    count = 0
    while rows := await cursor.fetchmany(batch):
        count += len(rows)
        write("\n".join(map(line, rows)) + "\n")
    if array is not None:
        array.close()
    return count
