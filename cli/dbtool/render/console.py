"""All terminal output: data on stdout (tables, JSON, CSV), everything else on stderr.

Values that come from users or the database are always rendered literally (Rich `Text`,
`markup=False`), so "[bold]x[/bold]" in a username is shown as typed. Rich is loaded only
for a terminal: piped or redirected, messages are the same plain lines Rich would print, and
tables are tab-separated, so scripts do not pay for its import.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, TextIO

from dbtool.formats import csv_value, json_default

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Console:
    from rich.console import Console

    # Not cached: tests and pipes swap sys.stdout, and Console reads it at write time.
    # When stdout is not a terminal, do not wrap (a report piped to a file keeps its lines).
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=1_000)
    return console


def _is_terminal(stream: TextIO) -> bool:
    """What Rich's Console.is_terminal says for `stream` (TTY_COMPATIBLE and FORCE_COLOR
    first, then isatty), without loading Rich."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# "json": every message on stderr is one JSON object per line (--log-format json), for log
# collectors; spinners and progress bars are then off.
_log_format = "text"


def set_log_format(name: str) -> None:
    global _log_format
    _log_format = name


def stderr_is_terminal() -> bool:
    return _log_format == "text" and _is_terminal(sys.stderr)


def stdout_is_terminal() -> bool:
    return _is_terminal(sys.stdout)


def stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def printable(message: str) -> str:
    """`message` safe to write anywhere: invalid UTF-8 that came in (kept by Python as
    surrogates) is shown escaped instead of failing the write."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


# Control characters Rich's Text leaves out (BEL, BS, VT, FF, CR).
_RICH_STRIPS = dict.fromkeys((7, 8, 11, 12, 13))

# C0 and C1 control characters and DEL, as a terminal is shown them: escaped, so that data
# (a user's name holding a window-title or clear-screen sequence) is seen, never obeyed.
_ESCAPES = {
    code: {9: "\\t", 10: "\\n", 13: "\\r"}.get(code, f"\\x{code:02x}")
    for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))
}


_ESCAPES_BUT_LINES = {code: escape for code, escape in _ESCAPES.items() if code != 10}


def visible(text: str, *, lines: bool = False) -> str:
    """`text` for a terminal: every control character escaped (line breaks kept with
    `lines`). Piped output is written as it is."""
    return text.translate(_ESCAPES_BUT_LINES if lines else _ESCAPES)


def _message(prefix: str, style: str, message: str, *, one_line: bool = False) -> None:
    """`message` on stderr. On a terminal, wrapped at spaces to its width (its own wrapping
    cuts words), unless `one_line`: errors and warnings stay one logical line, to be copied
    or searched for whole."""
    if _log_format == "json":
        _json_message(prefix, message)
        return
    if not stderr_is_terminal():  # what Rich prints there: the plain line
        line = (prefix + printable(message)).translate(_RICH_STRIPS).expandtabs()
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        return
    from rich.text import Text

    text = Text.assemble((prefix, style), visible(printable(message), lines=True))
    err_console().print(text, soft_wrap=one_line)


_LEVELS = {"error: ": "error", "warning: ": "warning", "✓ ": "success"}


def _json_message(prefix: str, message: str) -> None:
    from datetime import UTC

    record = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": _LEVELS.get(prefix, "info"),
        "message": message,
    }
    sys.stderr.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stderr.flush()


def _fits_unwrapped(message: str) -> bool:
    """Whether Rich, printing `message` to a stderr that is not a terminal, would leave it
    on one line: plain ASCII no wider than the width Rich gives that console (COLUMNS, else
    the first standard stream that is a terminal, else 80). Such a line is then written
    without loading Rich."""
    if stderr_is_terminal() or not message.isascii() or "\n" in message:
        return False
    columns = os.environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        width = int(columns)
    else:
        width = 80
        for descriptor in (0, 1, 2):
            try:
                width = os.get_terminal_size(descriptor).columns or 80
                break
            except (AttributeError, ValueError, OSError):
                continue
    line = printable(message).translate(_RICH_STRIPS).expandtabs()
    return 0 < len(line) <= width


def error(message: str) -> None:
    _message("error: ", "bold red", message, one_line=True)


def warning(message: str) -> None:
    _message("warning: ", "bold yellow", message, one_line=True)


def note(message: str | Text, *, wrap: bool = False) -> None:
    """A message on stderr; `wrap` folds it to the terminal's width (hints under a table)
    instead of leaving one long line to the terminal."""
    if isinstance(message, str) and (not wrap or _fits_unwrapped(message)):
        _message("", "", message)
        return
    if _log_format == "json":
        _json_message("", message if isinstance(message, str) else message.plain)
        return
    from rich.text import Text

    text = message if isinstance(message, Text) else Text(printable(message))
    err_console().print(text, soft_wrap=not wrap)


def success(message: str) -> None:
    _message("✓ ", "green", message)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=json_default, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def print_json_line(data: Any) -> None:
    """One compact JSON object per line (a stream, e.g. `pool-status --watch --json`)."""
    sys.stdout.write(json.dumps(data, default=json_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def cell(value: Any) -> str:
    """A value as one table cell: yes/no, timestamps to the second, numbers as given (30,
    not 30.0)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def terminal_cell(value: Any) -> str:
    """A cell as a terminal shows it: control characters in the data escaped."""
    return visible(cell(value))


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    keep: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> list[str]:
    """Rows as a table that fits the terminal, or tab-separated when stdout is not one.

    On a terminal, `keep` columns are never cut (ids, emails, setting names), `optional`
    columns are added in their order while the table still fits and left out after that,
    and the others fold rather than being cut with "…". When even the `keep` columns do not
    fit, each row becomes a block of `column  value` lines. Returns the columns left out.
    Piped, every column is printed, tab-separated, with a header line (like `gh`).
    """
    table_rows = [list(row) for row in rows]
    if not stdout_is_terminal():
        _print_tsv(columns, table_rows)
        return []
    console = out_console()
    shown = [name for name in columns if name not in optional]
    # The narrowest the table can be: the kept columns whole, the others folded to 8.
    folded = [
        [
            value if name in keep else terminal_cell(value)[:8]
            for name, value in zip(columns, row, strict=True)
        ]
        for row in table_rows
    ]
    narrowest = _table(columns, shown, folded, keep).__rich_measure__(console, console.options)
    if narrowest.maximum > console.width:
        _print_blocks(columns, table_rows)
        return []
    for name in optional:
        candidate = [c for c in columns if c in shown or c == name]
        table = _table(columns, candidate, table_rows, keep)
        if table.__rich_measure__(console, console.options).maximum <= console.width:
            shown = candidate
    console.print(_table(columns, shown, table_rows, keep))
    return [name for name in columns if name not in shown]


def _table(
    columns: Sequence[str], shown: Sequence[str], rows: list[list[Any]], keep: Sequence[str]
) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    positions = [columns.index(name) for name in shown]
    for name in shown:
        table.add_column(name, no_wrap=name in keep, overflow="fold")
    for row in rows:
        table.add_row(*(Text(terminal_cell(row[position])) for position in positions))
    return table


def _print_blocks(columns: Sequence[str], rows: list[list[Any]]) -> None:
    """One block per row, for terminals too narrow for a table: `name  value` lines, or the
    name on a line of its own with the value below it when side by side would cut values."""
    from rich.table import Table
    from rich.text import Text

    console = out_console()
    name_width = max(map(len, columns), default=0)
    value_width = max((len(terminal_cell(value)) for row in rows for value in row), default=0)
    stacked = name_width + 2 + value_width > console.width
    for number, row in enumerate(rows):
        if number:
            console.print()
        if stacked:
            for name, value in zip(columns, row, strict=True):
                console.print(Text(name, style="bold"))
                console.print(Text("  " + terminal_cell(value), overflow="fold"))
            continue
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, value in zip(columns, row, strict=True):
            grid.add_row(name, Text(terminal_cell(value)))
        console.print(grid)


def tsv_field(value: Any) -> str:
    return cell(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _print_tsv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    write = sys.stdout.write
    write("\t".join(columns) + "\n")
    for row in rows:
        write("\t".join(tsv_field(value) for value in row) + "\n")
    sys.stdout.flush()


def print_pairs(rows: Iterable[tuple[str, Any]]) -> None:
    """Name/value lines without a header (`info`, `users show`): the names whole, the values
    folded to the width; tab-separated when piped."""
    rows = list(rows)
    if not stdout_is_terminal():
        for name, value in rows:
            sys.stdout.write(f"{name}\t{tsv_field(value)}\n")
        sys.stdout.flush()
        return
    from rich.table import Table
    from rich.text import Text

    console = out_console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in rows:
        grid.add_row(name, Text(terminal_cell(value)))
    console.print(grid)


def print_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([csv_value(value) for value in row] for row in rows)
    sys.stdout.flush()


# --- reports ---------------------------------------------------------------------------------
