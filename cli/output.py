"""All terminal output: data on stdout (tables, JSON, CSV), everything else on stderr.

Values that come from users or the database are always rendered literally (Rich `Text`,
`markup=False`), so "[bold]x[/bold]" in a username is shown as typed.
"""

from __future__ import annotations

import csv
import json
import sys
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


@cache
def err_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Console:
    # Not cached: tests and pipes swap sys.stdout, and Console reads it at write time.
    # When stdout is not a terminal, do not wrap (a table piped to a file keeps its rows).
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=1_000)
    return console


def stderr_is_terminal() -> bool:
    return err_console().is_terminal


def stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def error(message: str) -> None:
    err_console().print(Text.assemble(("error: ", "bold red"), message))


def warning(message: str) -> None:
    err_console().print(Text.assemble(("warning: ", "bold yellow"), message))


def note(message: str | Text) -> None:
    err_console().print(message if isinstance(message, Text) else Text(message))


def success(message: str) -> None:
    err_console().print(Text.assemble(("✓ ", "green"), message))


def to_jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=to_jsonable, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def cell(value: Any) -> str:
    """A value as one table/CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> None:
    table = Table(*columns, title=title, title_justify="left", header_style="bold")
    for row in rows:
        table.add_row(*(Text(cell(value)) for value in row))
    out_console().print(table)


def print_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    sys.stdout.flush()


def csv_cell(value: Any) -> str:
    """A value as a CSV field that `users import` reads back unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return cell(value)
