"""Reports: pool-status's (boxes on a terminal, indented plain lines when piped) and the
notes that end an import."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from dbtool.render.console import out_console, printable, stdout_is_terminal, tsv_field
from dbtool.wording import counted

if TYPE_CHECKING:
    from rich.console import RenderableType

    from dbtool.diagnostics.pools import PoolReport
    from dbtool.fixtures.seed import SeedReport
    from dbtool.transfer.importing import ImportReport


def report_import_problems(report: ImportReport) -> None:
    """The first invalid rows and conflicts, one per line on stderr."""
    from dbtool.render import console as output

    for rejection in report.rejections:
        output.note(f"line {rejection.line}: {rejection.reason}")
    if report.rejected > len(report.rejections):
        output.note(f"... and {report.rejected - len(report.rejections):,} more invalid rows")
    for conflict in report.conflicts:
        output.note(f"conflict: {conflict}")


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
    if report.headroom is not None:
        room = report.headroom
        sections.append(_Section("Headroom", [(
            "verdict",
            f"{counted(room['processes'], 'more process', 'more processes')} with this pool "
            f"({room['per_process']} connections each) fit, limited by {room['limited_by']}",
        )]))  # fmt: skip
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
        if report.pgbouncer is not None:  # the two halves are read at different moments
            pairs.append(("read at", server.read_at))
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
                f"{bouncer.servers_used} used, {bouncer.servers_tested} tested, "
                f"{bouncer.servers_login} logging in, of default_pool_size "
                f"{bouncer.default_pool_size}",
            ),
            (
                "headroom",
                f"{bouncer.client_headroom} more clients, {bouncer.server_headroom} more "
                f"server connections; {bouncer.headroom_processes} more processes with this "
                "pool",
            ),
        ]
        stats = bouncer.stats
        if "transactions" in stats:
            pairs.append((
                "since start",
                f"{stats['transactions']:,.0f} transactions, "
                f"{stats.get('queries', 0):,.0f} queries, "
                f"{stats.get('wait_seconds', 0):,.3f}s waited for a server in all",
            ))  # fmt: skip
        pairs.append(("read at", bouncer.read_at))
        if len(bouncer.pools) > 1:
            pairs += [
                (f"user {pool['user']}",
                 f"{pool['cl_active']} clients active, {pool['cl_waiting']} waiting; "
                 f"{pool['sv_active']} servers active, {pool['sv_idle']} idle")
                for pool in bouncer.pools
            ]  # fmt: skip
        sections.append(_Section("PgBouncer", pairs))
    pgpool = report.pgpool
    if pgpool is not None:
        nodes = ", ".join(f"{n['hostname']}:{n['port']} {n['role']} {n['status']}"
                          for n in pgpool.nodes)  # fmt: skip
        pairs = [
            ("pgpool-II", pgpool.version or "found between dbtool and the server"),
            ("children", f"{pgpool.children_with_client} with a client, "
                         f"{pgpool.children_waiting} waiting, of num_init_children "
                         f"{pgpool.num_init_children} (max_pool {pgpool.max_pool})"),
            ("cache", f"{pgpool.cached_connections} backend connections kept by children "
                      "without a client" if pgpool.connection_cache else "off"),
            ("headroom", f"{pgpool.client_headroom} more clients; "
                         f"{pgpool.headroom_processes} more processes with this pool"),
            ("nodes", nodes or "-"),
            ("read at", pgpool.read_at),
        ]  # fmt: skip
        sections.append(_Section("pgpool-II", pairs))
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


def print_pool_metrics(report: PoolReport) -> None:
    """`pool-status --format openmetrics`, for a textfile collector or a scrape wrapper."""
    sys.stdout.write(pool_metrics(report))
    sys.stdout.flush()


def pool_metrics(report: PoolReport) -> str:
    """The report as OpenMetrics text: gauges, and PgBouncer's totals as counters."""
    from dbtool.render.metrics import Family, render

    client = report.client
    families = [
        Family("dbtool_pool_capacity", "Connections one process's pool may open").add(
            client.capacity
        ),
    ]
    server = report.server
    if server is not None:
        families += [
            Family("dbtool_server_max_connections", "The server's max_connections").add(
                server.max_connections
            ),
            Family("dbtool_server_connections_in_use", "Connections open on the server").add(
                server.in_use
            ),
            Family("dbtool_server_connections_free", "Connections still free").add(
                server.available
            ),
        ]
        by_application = Family(
            "dbtool_server_connections", "Connections to the database by application and state"
        )
        for row in server.by_application:
            by_application.add(row["count"], application=row["application_name"] or "",
                               state=row["state"] or "")  # fmt: skip
        families.append(by_application)
    if report.headroom is not None:
        families.append(
            Family("dbtool_pool_headroom_processes",
                   "More processes with this pool that fit, by the tightest limit").add(
                report.headroom["processes"], limited_by=report.headroom["limited_by"])
        )  # fmt: skip
    bouncer = report.pgbouncer
    if bouncer is not None:
        labels = {"database": bouncer.database}
        clients = Family("dbtool_pgbouncer_clients", "PgBouncer's clients of the database")
        clients.add(bouncer.clients_active, state="active", **labels)
        clients.add(bouncer.clients_waiting, state="waiting", **labels)
        servers = Family("dbtool_pgbouncer_servers", "PgBouncer's server connections")
        for state in ("active", "idle", "used", "tested", "login"):
            servers.add(getattr(bouncer, f"servers_{state}"), state=state, **labels)
        families += [
            clients,
            servers,
            Family("dbtool_pgbouncer_max_wait_seconds", "The longest wait of a client",
                   unit="seconds").add(bouncer.max_wait_seconds, **labels),
            Family("dbtool_pgbouncer_pool_size", "default_pool_size").add(
                bouncer.default_pool_size, **labels),
            Family("dbtool_pgbouncer_max_client_conn", "max_client_conn").add(
                bouncer.max_client_conn),
            Family("dbtool_pgbouncer_client_headroom", "More clients PgBouncer accepts").add(
                bouncer.client_headroom),
        ]  # fmt: skip
        for name, value in bouncer.stats.items():
            if name.startswith("average"):
                continue
            unit = "seconds" if name.endswith("_seconds") else "bytes" if name.endswith(
                "_bytes") else ""  # fmt: skip
            metric = f"dbtool_pgbouncer_{name}"
            families.append(Family(metric, f"PgBouncer's SHOW STATS total ({name})",
                                   kind="counter", unit=unit).add(value, **labels))  # fmt: skip
    return render(families)


def _aligned(rows: Sequence[Sequence[str]], indent: str) -> list[str]:
    """Rows of cells as lines, each column as wide as its widest cell, two spaces apart."""
    cells = [[tsv_field(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))] if cells else []
    lines = []
    for row in cells:
        padded = (value.ljust(width) for value, width in zip(row, widths, strict=True))
        lines.append(indent + "  ".join(padded).rstrip())
    return lines


def pool_report_renderable(
    report: PoolReport,
    *,
    refreshed: datetime | None = None,
    interval: float | None = None,
    height: int | None = None,
) -> RenderableType:
    """`dbtool pool-status` in panels, for a terminal. Under --watch (`refreshed` given):
    when it was taken, how to stop, the warnings first, and panels as wide as the terminal,
    so they do not jump as their contents change; with `height`, the per-application table
    shortened so that the whole view fits the terminal (the rest is cropped last)."""
    view = _pool_view(report, refreshed, interval)
    if height is None:
        return view
    console = out_console()
    excess = len(console.render_lines(view, console.options, pad=False)) - height
    rows = sum(len(section.rows) for section in _pool_report_sections(report))
    if excess > 0 and rows:
        view = _pool_view(report, refreshed, interval, max_rows=max(rows - excess - 1, 1))
    return view


def _pool_view(
    report: PoolReport,
    refreshed: datetime | None,
    interval: float | None,
    *,
    max_rows: int | None = None,
) -> RenderableType:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = []
    messages = [Text.assemble(("warning: ", "bold yellow"), w) for w in report.warnings]
    messages += [Text.assemble(("note: ", "dim"), note) for note in report.notes]
    if refreshed is not None:
        every = f", every {interval:g}s" if interval is not None else ""
        parts.append(
            Text(f"updated {refreshed.strftime('%H:%M:%S')}{every} · Ctrl-C to quit", style="dim")
        )
        parts.extend(messages)  # what needs attention first: the bottom may not fit
    parts.append(Text.assemble(("Database ", "bold"), report.database))
    for section in _pool_report_sections(report):
        grid = Table.grid(padding=(0, 2))
        for name, value in section.pairs:
            grid.add_row(name, Text(value))
        body: RenderableType = grid
        if section.caption:
            table = Table(*section.columns, header_style="bold")
            rows = section.rows if max_rows is None else section.rows[:max_rows]
            for row in rows:
                table.add_row(*(Text(value) for value in row))
            if len(rows) < len(section.rows):
                more = len(section.rows) - len(rows)
                table.add_row(Text(f"… {more} more (--json shows all)", style="dim"))
            body = Group(grid, Text(f"\n{section.caption}"), table)
        parts.append(
            Panel(body, title=section.title, title_align="left", expand=refreshed is not None)
        )
    if refreshed is None:
        parts.extend(messages)
    return Group(*parts)


def _role_text(role: dict[str, Any]) -> str:
    from dbtool.backends.base import ServerRole

    return ServerRole.from_dict(role).describe()


def print_seed(report: SeedReport) -> None:
    """What `dbtool seed` (and `init --seed`) did."""
    from dbtool.render import console as output
    from dbtool.wording import counted

    if report.fixtures:
        rows = report.loaded.get("rows", 0)
        output.success(f"Seeded {counted(rows, 'row')} from {', '.join(report.fixtures)}")
    for name in report.functions:
        output.success(f"Ran the seed function {name}")
