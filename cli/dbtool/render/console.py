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
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from dbtool.formats import csv_value, json_default

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

    from dbtool.diagnostics.pools import PoolReport


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


def stderr_is_terminal() -> bool:
    return _is_terminal(sys.stderr)


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


def _message(prefix: str, style: str, message: str) -> None:
    if not stderr_is_terminal():  # what Rich prints there: the plain line
        line = (prefix + printable(message)).translate(_RICH_STRIPS).expandtabs()
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        return
    from rich.text import Text

    err_console().print(Text.assemble((prefix, style), printable(message)))


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
    _message("error: ", "bold red", message)


def warning(message: str) -> None:
    _message("warning: ", "bold yellow", message)


def note(message: str | Text, *, wrap: bool = False) -> None:
    """A message on stderr; `wrap` folds it to the terminal's width (hints under a table)
    instead of leaving one long line to the terminal."""
    if isinstance(message, str) and (not wrap or _fits_unwrapped(message)):
        _message("", "", message)
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
            value if name in keep else cell(value)[:8]
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
        table.add_row(*(Text(cell(row[position])) for position in positions))
    return table


def _print_blocks(columns: Sequence[str], rows: list[list[Any]]) -> None:
    """One block per row, for terminals too narrow for a table: `name  value` lines, or the
    name on a line of its own with the value below it when side by side would cut values."""
    from rich.table import Table
    from rich.text import Text

    console = out_console()
    name_width = max(map(len, columns), default=0)
    value_width = max((len(cell(value)) for row in rows for value in row), default=0)
    stacked = name_width + 2 + value_width > console.width
    for number, row in enumerate(rows):
        if number:
            console.print()
        if stacked:
            for name, value in zip(columns, row, strict=True):
                console.print(Text(name, style="bold"))
                console.print(Text("  " + cell(value), overflow="fold"))
            continue
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, value in zip(columns, row, strict=True):
            grid.add_row(name, Text(cell(value)))
        console.print(grid)


def _tsv_field(value: Any) -> str:
    return cell(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _print_tsv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    write = sys.stdout.write
    write("\t".join(columns) + "\n")
    for row in rows:
        write("\t".join(_tsv_field(value) for value in row) + "\n")
    sys.stdout.flush()


def print_pairs(rows: Iterable[tuple[str, Any]]) -> None:
    """Name/value lines without a header (`info`, `users show`): the names whole, the values
    folded to the width; tab-separated when piped."""
    rows = list(rows)
    if not stdout_is_terminal():
        for name, value in rows:
            sys.stdout.write(f"{name}\t{_tsv_field(value)}\n")
        sys.stdout.flush()
        return
    from rich.table import Table
    from rich.text import Text

    console = out_console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in rows:
        grid.add_row(name, Text(cell(value)))
    console.print(grid)


def print_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([csv_value(value) for value in row] for row in rows)
    sys.stdout.flush()


# --- reports ---------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}s" if value >= 0 else "off"


class _Section(NamedTuple):
    """One part of a report: name/value rows, then (optionally) a caption and a table."""

    title: str
    pairs: list[tuple[str, str]]
    caption: str = ""
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()


def _pool_report_sections(report: PoolReport) -> list[_Section]:
    """What `pool-status` shows, part by part (rendered in panels on a terminal, as plain
    indented lines when piped)."""
    sections = []
    client = report.client
    pairs = [("class", client.pool_class)]
    if client.pool_size is not None:
        pairs.append(
            (
                "configured",
                f"size {client.pool_size}, max overflow {client.max_overflow}, timeout "
                f"{_seconds(client.pool_timeout)}, recycle {_seconds(client.pool_recycle)}, "
                f"pre-ping {'on' if client.pool_pre_ping else 'off'}",
            )
        )
        pairs.append(("per process", f"up to {client.capacity} connections"))
    if client.counters:
        pairs.append(
            (
                "this process",
                f"{client.checked_in} idle in pool, {client.checked_out} checked out, "
                f"{client.overflow} overflow",
            )
        )
    if client.note:
        pairs.append(("note", client.note))
    sections.append(_Section("Client pool", pairs))

    server = report.server
    if server is not None:
        pairs = [("server", f"{server.product} {server.version}")]
        if server.role is not None:
            pairs.append(("role", _role_text(server.role)))
        pairs.append(
            (
                "connections",
                f"{server.in_use} in use of {server.max_connections} "
                f"({server.usage_percent:g}%), {server.reserved_connections} reserved, "
                f"{server.available} free",
            )
        )
        pairs.append(
            (
                "headroom",
                f"{server.headroom_processes} more processes with this pool "
                f"({client.capacity} connections each)",
            )
        )
        for label, backend in (
            ("oldest transaction", server.oldest_transaction),
            ("idle in transaction", server.longest_idle_in_transaction),
        ):
            if backend is not None:
                pairs.append(
                    (
                        label,
                        f"{backend.age_seconds:g}s, pid {backend.pid} "
                        f"({backend.application_name or 'no application name'}, "
                        f"{backend.state})",
                    )
                )
        rows = tuple(
            (row["application_name"] or "(none)", row["state"], str(row["count"]))
            for row in server.by_application
        )
        sections.append(
            _Section(
                "Server",
                pairs,
                caption=f"In database {server.database_name}:",
                columns=("application", "state", "connections"),
                rows=rows,
            )
        )
    bouncer = report.pgbouncer
    if bouncer is not None:
        pairs = [
            ("pgbouncer", f"{bouncer.version} at {bouncer.admin}"),
            ("pool mode", bouncer.pool_mode),
            (
                "clients",
                f"{bouncer.clients_active} active, {bouncer.clients_waiting} waiting "
                f"(longest {bouncer.max_wait_seconds:g}s) for {bouncer.database}; "
                f"{bouncer.clients_total} of max_client_conn {bouncer.max_client_conn} in all",
            ),
            (
                "servers",
                f"{bouncer.servers_active} active, {bouncer.servers_idle} idle, "
                f"{bouncer.servers_other} other, of default_pool_size "
                f"{bouncer.default_pool_size}",
            ),
            (
                "headroom",
                f"{bouncer.client_headroom} more clients, {bouncer.server_headroom} more "
                f"server connections; {bouncer.headroom_processes} more processes with this "
                "pool",
            ),
        ]
        sections.append(_Section("PgBouncer", pairs))
    probe = report.probe
    if probe is not None:
        pairs = [
            ("connections", f"{probe.connections} at once, each held {probe.hold_seconds:g}s"),
            (
                "outcome",
                f"{probe.succeeded} ok, {probe.timed_out} timed out, {probe.failed} failed, "
                f"{probe.needed_overflow} needed overflow",
            ),
            (
                "checkout wait",
                f"p50 {probe.wait_p50_ms} ms, p95 {probe.wait_p95_ms} ms, "
                f"max {probe.wait_max_ms} ms",
            ),
        ]
        if probe.first_query_p50_ms is not None:
            pairs.append(
                (
                    "first answer",
                    f"p50 {probe.first_query_p50_ms} ms, p95 {probe.first_query_p95_ms} ms, "
                    f"max {probe.first_query_max_ms} ms (checkout plus the first query)",
                )
            )
        returned = (
            "all connections returned"
            if probe.checked_out_after == 0
            else f"{probe.checked_out_after} still checked out"
        )
        pairs.append(("afterwards", returned if probe.checked_out_after is not None else "-"))
        sections.append(_Section("Probe", pairs))
    return sections


def print_pool_report(report: PoolReport) -> None:
    """`dbtool pool-status` for people: panels on a terminal; piped, the same lines without
    the boxes (and without loading Rich)."""
    if stdout_is_terminal():
        out_console().print(pool_report_renderable(report))
        return
    lines = [f"Database {report.database}"]
    for section in _pool_report_sections(report):
        lines += ["", section.title, *_aligned(section.pairs, "  ")]
        if section.caption:
            lines += [f"  {section.caption}", *_aligned([section.columns, *section.rows], "    ")]
    lines += [f"note: {note}" for note in report.notes]
    lines += [f"warning: {warning}" for warning in report.warnings]
    sys.stdout.write("".join(printable(line) + "\n" for line in lines))
    sys.stdout.flush()


def _aligned(rows: Sequence[Sequence[str]], indent: str) -> list[str]:
    """Rows of cells as lines, each column as wide as its widest cell, two spaces apart."""
    cells = [[_tsv_field(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))] if cells else []
    lines = []
    for row in cells:
        padded = (value.ljust(width) for value, width in zip(row, widths, strict=True))
        lines.append(indent + "  ".join(padded).rstrip())
    return lines


def pool_report_renderable(
    report: PoolReport, *, refreshed: datetime | None = None, interval: float | None = None
) -> RenderableType:
    """`dbtool pool-status` in panels, for a terminal. Under --watch (`refreshed` given):
    when it was taken, how to stop, and panels as wide as the terminal, so they do not jump
    as their contents change."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = []
    if refreshed is not None:
        every = f", every {interval:g}s" if interval is not None else ""
        parts.append(
            Text(f"updated {refreshed.strftime('%H:%M:%S')}{every} · Ctrl-C to quit", style="dim")
        )
    parts.append(Text.assemble(("Database ", "bold"), report.database))
    for section in _pool_report_sections(report):
        grid = Table.grid(padding=(0, 2))
        for name, value in section.pairs:
            grid.add_row(name, Text(value))
        body: RenderableType = grid
        if section.caption:
            table = Table(*section.columns, header_style="bold")
            for row in section.rows:
                table.add_row(*(Text(value) for value in row))
            body = Group(grid, Text(f"\n{section.caption}"), table)
        parts.append(
            Panel(body, title=section.title, title_align="left", expand=refreshed is not None)
        )
    parts.extend(Text.assemble(("note: ", "dim"), note) for note in report.notes)
    parts.extend(Text.assemble(("warning: ", "bold yellow"), w) for w in report.warnings)
    return Group(*parts)


def _role_text(role: dict[str, Any]) -> str:
    where = f" at {role['host']}" if role.get("host") else ""
    if role["role"] != "standby":
        return f"primary{where}"
    lag = []
    if role.get("replay_lag_bytes") is not None:
        lag.append(f"{role['replay_lag_bytes']:,} bytes of WAL to replay")
    if role.get("last_replay_seconds") is not None:
        lag.append(f"last transaction replayed {role['last_replay_seconds']:g}s ago")
    return f"read-only standby{where}" + (f" ({', '.join(lag)})" if lag else "")
