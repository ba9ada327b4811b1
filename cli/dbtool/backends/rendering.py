"""SQL that renders values as the text of an export, shared by the backends' fast exports.

The general path (`dbtool.transfer.exporting.ExportWriter` over `UserRecord`s) defines
the output; each backend's query must produce the same bytes, and tests compare the two.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import reduce
from typing import IO, Any

from sqlalchemy import Column, literal


def cat(*parts: Any) -> Any:
    """SQL string concatenation (||) of expressions and Python strings."""
    items = [literal(part) if isinstance(part, str) else part for part in parts]
    return reduce(lambda left, right: left.op("||")(right), items)


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
