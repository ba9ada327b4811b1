"""`dbtool ping`, `pool-status`, `info`, `check` and `config`: what the database, its
connections and dbtool's settings are. Typer wiring only."""

from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbtool.commands.options import (
    FormatOption,
    IntervalOption,
    JsonOption,
    ListenOption,
    WaitOption,
    chosen_format,
    finite_seconds,
    flag,
    lag_limit,
    one_of,
    register,
    whole_number,
)
from dbtool.commands.runtime import Command
from dbtool.errors import DbtoolError
from dbtool.render.live import watch as refresh_until_stopped
from dbtool.wording import counted

if TYPE_CHECKING:
    from collections.abc import Callable

    from dbtool.backends.base import ClusterView
    from dbtool.config import Settings
    from dbtool.diagnostics.pools import PoolReport

app = typer.Typer()
command = partial(register, app)


# Seconds pool-status waits for the server's half behind a pooler (its pool may be full).
POOLER_DEADLINE = 3.0


class CheckFailed(DbtoolError):
    """`dbtool check` found differences (exit 1)."""


@command(
    "ping",
    "dbtool ping",
    "dbtool ping --wait 30 --json",
    "dbtool ping --require primary            # a readiness probe for writers",
    "dbtool ping --require standby --max-lag 10s  # a replica fit to serve reads",
)
def ping(
    ctx: typer.Context,
    require: Annotated[
        str | None,
        typer.Option(
            "--require",
            metavar="ROLE",
            callback=one_of("primary", "standby"),
            help="primary or standby: exit 6 when the server reached has the other role.",
            show_default=False,
        ),
    ] = None,
    max_lag: Annotated[
        str | None,
        typer.Option(
            "--max-lag",
            metavar="LAG",
            callback=lag_limit,
            help="On a standby, exit 7 when it is further behind than LAG: seconds (10s, "
            "500ms, 2min) or WAL (16MB, 512kB), or when that cannot be known (its WAL "
            "receiver stopped). A primary is never behind.",
            show_default=False,
        ),
    ] = None,
    wait: WaitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Check that the database answers; print the server version and round-trip latency.

    Exits 0 when it answers (and is what --require and --max-lag ask for), 3 when it cannot
    be reached, 6 when it has the wrong role, 7 when it lags too far: a health probe for
    Kubernetes, HAProxy or a deploy script. Only the server the URL leads to is asked
    (`dbtool cluster` shows every member).
    """
    from dbtool.diagnostics import server as diagnostics
    from dbtool.render import console as output

    with Command(ctx) as cmd:
        db = cmd.database(wait=wait, models=False)
        result = cmd.attempt(lambda: diagnostics.ping(db))
        problem = diagnostics.health_problem(result, require=require, max_lag=max_lag)
        if as_json:
            verdict = {"ok": problem is None, "problem": problem and problem.message}
            output.print_json({**verdict, **result.as_dict()})
        elif problem is None:
            role = f"; {result.role.describe()}" if result.role is not None else ""
            output.success(
                f"{result.server} {result.version} at {result.database}: "
                f"{result.latency_ms:.2f} ms round trip{role}"
            )
        if problem is not None:
            raise problem


@command(
    "cluster",
    "dbtool cluster",
    "dbtool cluster --patroni http://127.0.0.1:8008",
    "dbtool cluster --watch --interval 1",
    "dbtool cluster --format openmetrics > /var/lib/node_exporter/dbtool.prom",
)
def cluster(
    ctx: typer.Context,
    patroni: Annotated[
        str | None,
        typer.Option(
            "--patroni",
            metavar="URL",
            help="Patroni's REST API (http://host:8008), read only: its members join the "
            "URL's hosts, with Patroni's role and state (default: DBTOOL_PATRONI_URL).",
            show_default=False,
        ),
    ] = None,
    watch: Annotated[
        bool, flag("--watch", help="Refresh until Ctrl-C, marking every change of leader.")
    ] = False,
    interval: IntervalOption = 2.0,
    output_format: FormatOption = "table",
    listen: ListenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show every member of a replicated PostgreSQL cluster: role, state, timeline and lag.

    The members are the hosts of a multi-host URL (host1,host2,host3) and, with --patroni,
    every member Patroni knows; each is asked on a connection of its own. Lag is measured
    against the primary's current WAL position, in bytes not yet received and not yet
    replayed, and in seconds (0 once caught up): a standby whose WAL receiver stopped shows
    how far behind it really is. Warnings: no primary, several, a stopped receiver. SQLite
    and MariaDB show the one server reached.

    Exits 0 when a member answered, 3 when none did.
    """
    from dbtool.backends import backend_for
    from dbtool.diagnostics import server as diagnostics
    from dbtool.errors import DatabaseUnavailableError, UsageError
    from dbtool.render import console as output
    from dbtool.render.cluster import cluster_renderable, print_cluster

    with Command(ctx) as cmd:
        chosen = chosen_format(as_json, output_format)
        settings = cmd.settings
        backend = backend_for(settings.url)
        source = patroni or settings.patroni_url

        def collect() -> "ClusterView":
            view = cmd.run(backend.cluster(settings, source))
            if view is None:  # no cluster to find: the one server reached
                if source:
                    raise UsageError(f"--patroni: {backend.product} has no Patroni cluster")
                db = cmd.database(models=False)
                return cmd.attempt(lambda: diagnostics.single_server_view(db))
            if not any(member.role != "unreachable" for member in view.members):
                reasons = "; ".join(f"{m.host}: {m.state}" for m in view.members)
                raise DatabaseUnavailableError(f"no member of the cluster answered ({reasons})")
            return view

        leaders: list[str | None] = []
        changes: list[str] = []  # "12:00:01 leader m1 -> m2", as they are seen

        def observe() -> "ClusterView":
            view = collect()
            if leaders and view.leader != leaders[-1]:
                changes.append(f"{view.checked_at.astimezone():%H:%M:%S} leader "
                               f"{leaders[-1] or 'none'} -> {view.leader or 'none'}")  # fmt: skip
                if chosen != "table" or not output.out_console().is_terminal:
                    output.warning(changes[-1])
            leaders.append(view.leader)
            return view

        if listen is not None:
            from dbtool.render.cluster import cluster_exposition
            from dbtool.render.metrics import serve

            serve(listen, lambda: _scraped(cmd, lambda: cluster_exposition(observe())))
        elif not watch:
            print_cluster(observe(), chosen)
        else:
            refresh_until_stopped(
                observe, lambda view: print_cluster(view, chosen, stream=True),
                interval, live=chosen == "table",
                view=lambda view, refreshed, every, height: cluster_renderable(
                    view, refreshed=refreshed, interval=every, changes=changes
                ),
            )  # fmt: skip


@command(
    "pool-status",
    "dbtool pool-status",
    "dbtool pool-status --probe 20 --json",
    "dbtool pool-status --watch --interval 5",
    "dbtool pool-status --format openmetrics > /var/lib/node_exporter/dbtool_pool.prom",
)
def pool_status(
    ctx: typer.Context,
    probe: Annotated[
        int,
        typer.Option(
            "--probe",
            metavar="N",
            callback=whole_number(0, 10_000),
            help="Check out N connections at once through the pool, each running a short "
            "query, and report checkout waits, overflow, timeouts and that all came back.",
        ),
    ] = 0,
    probe_hold: Annotated[
        float,
        typer.Option(
            "--probe-hold",
            metavar="SECONDS",
            callback=finite_seconds,
            help="How long each probe keeps its connection.",
        ),
    ] = 0.05,
    idle_warning: Annotated[
        float,
        typer.Option(
            "--idle-warning",
            metavar="SECONDS",
            callback=finite_seconds,
            help="Warn about sessions idle in a transaction for longer than this.",
        ),
    ] = 60.0,
    watch: Annotated[
        bool,
        flag("--watch", help="Refresh the report until Ctrl-C."),
    ] = False,
    interval: IntervalOption = 2.0,
    pgbouncer: Annotated[
        str | None,
        typer.Option(
            "--pgbouncer",
            metavar="URL",
            help="PgBouncer's admin console (postgresql://user@host:6432/pgbouncer), to show "
            "its pools and limits beside the server's (default: DBTOOL_PGBOUNCER_ADMIN_URL).",
            show_default=False,
        ),
    ] = None,
    wait: WaitOption = 0.0,
    output_format: FormatOption = "table",
    listen: ListenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the pool each process gets, who holds connections on the server, and the room left.

    The client side: the pool this configuration gives each process. The server side
    (PostgreSQL): connections by application and state, the oldest and idle-in-transaction
    sessions, free connections, and how many more processes with this pool fit.
    """
    from dbtool.backends import backend_for
    from dbtool.diagnostics import pools
    from dbtool.render import console as output
    from dbtool.render import reports

    def render(report: "PoolReport") -> None:
        if chosen == "json" and watch:
            output.print_json_line(report.as_dict())  # a stream: one object per refresh
        elif chosen == "json":
            output.print_json(report.as_dict())
        elif chosen == "openmetrics":
            reports.print_pool_metrics(report)
        else:
            reports.print_pool_report(report)

    with Command(ctx) as cmd:
        chosen = chosen_format(as_json, output_format)
        admin = pgbouncer or cmd.settings.pgbouncer_admin_url

        def collect(probe_connections: int) -> "PoolReport":
            # PgBouncer's admin console first: dbtool's own connection may queue in it.
            backend = backend_for(cmd.settings.url)
            bouncer = cmd.run(backend.pooler_report(cmd.settings, admin)) if admin else None
            # Behind the pooler, dbtool's own queries may queue in its full pool: the
            # server half gets a deadline rather than blocking the report.
            deadline = min(cmd.settings.connect_timeout, POOLER_DEADLINE) if bouncer else None
            db = cmd.database(wait=wait, models=False, verify=bouncer is None)
            return cmd.attempt(
                lambda: pools.pool_report(
                    db,
                    probe_connections=probe_connections,
                    probe_hold=probe_hold,
                    idle_in_transaction_warning=idle_warning,
                    bouncer=bouncer,
                    server_deadline=deadline,
                )
            )

        if listen is not None:
            from dbtool.render.metrics import serve

            serve(listen, lambda: _scraped(cmd, lambda: reports.pool_metrics(collect(0))))
        elif not watch:
            render(collect(probe))
        else:
            refresh_until_stopped(
                lambda: collect(0), render, interval, live=chosen == "table",
                view=lambda report, refreshed, every, height: reports.pool_report_renderable(
                    report, refreshed=refreshed, interval=every, height=height
                ),
                on_lost=cmd.forget_connections,
            )  # fmt: skip


def _scraped(cmd: Command, exposition: "Callable[[], str]") -> str:
    """One scrape of --listen: the database's failures as dbtool's errors (an unreachable
    one answered 503), its pooled connections let go so that the next scrape reconnects."""
    from dbtool.backends.errors import translate_error
    from dbtool.errors import DatabaseUnavailableError

    try:
        return exposition()
    except Exception as exc:
        error = translate_error(exc, cmd.settings)
        if isinstance(error, DatabaseUnavailableError):
            cmd.forget_connections()
        if error is None or error is exc:
            raise
        raise error from exc


@command(
    "info",
    "dbtool info",
    "dbtool info --json",
    "dbtool info --exact",
)
def info(
    ctx: typer.Context,
    exact: Annotated[
        bool,
        flag("--exact", help="Count the rows of large tables too, instead of estimating."),
    ] = False,
    wait: WaitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Show the server, the database size, the models' tables and whether the schema is
    complete.

    Each table comes with its row count: on PostgreSQL, a table of 100,000 rows or more
    shows the planner's estimate, marked as such, unless --exact (counting reads the whole
    table). Missing tables are named, and so are tables that exist with other columns than
    the models have.
    """
    from dbtool.diagnostics import server as diagnostics
    from dbtool.render import console as output
    from dbtool.schema.migrations import config_path

    with Command(ctx) as cmd:
        db = cmd.database()
        report = cmd.attempt(lambda: diagnostics.info(db, exact=exact))
        project = config_path(cmd.settings)
        if project is not None:
            from dataclasses import replace

            from dbtool.schema import migrations

            alembic = cmd.attempt(lambda: migrations.state(db, project))
            report = replace(report, alembic=alembic.as_dict())
    if as_json:
        output.print_json(report.as_dict())
        return
    problems = [f"missing {', '.join(report.missing_tables)} (run `dbtool init`)"] * bool(
        report.missing_tables
    )
    for table in report.mismatched_tables:
        lacks = f"lacks {', '.join(table['missing_columns'])}" if table["missing_columns"] else ""
        extra = f"has extra {', '.join(table['extra_columns'])}" if table["extra_columns"] else ""
        problems.append(f"{table['name']} exists but {'; '.join(p for p in (lacks, extra) if p)}")
    rows = [
        ("database", report.database),
        ("server", f"{report.server} {report.version}"),
        ("name", report.database_name),
        ("size", f"{report.size_bytes:,} bytes"),
        *([("role", report.role.describe())] if report.role is not None else []),
        ("models", report.models),
        *((f"table {t['name']}", _rows(t)) for t in report.tables),
        ("schema", "complete" if report.schema_complete else "incomplete: " + "; ".join(problems)),
    ]
    if project is not None:
        rows.append(("alembic", alembic.describe()))
    output.print_pairs(rows)


def _rows(table: dict[str, Any]) -> str:
    if table.get("rows_estimated"):
        return f"about {counted(table['rows'], 'row')} (estimated; --exact counts them)"
    return counted(table["rows"], "row")


@command(
    "check",
    "dbtool check",
    "dbtool init --wait 60 --create-database && dbtool check",
    "dbtool check --json | jq '.differences[].detail'",
)
def check(ctx: typer.Context, wait: WaitOption = 0.0, as_json: JsonOption = False) -> None:
    """Compare the database with the models: every missing or extra table, column, index,
    unique constraint or foreign key, and every column whose type, nullability or server
    default differs. On an Alembic project, also whether the database is at head.

    Exits 0 when they agree, 1 when they do not (a CI gate, like Django's `makemigrations
    --check`).
    """
    from dbtool.render import console as output
    from dbtool.schema import drift
    from dbtool.schema.migrations import config_path

    with Command(ctx) as cmd:
        db = cmd.database(wait=wait)
        found = cmd.attempt(lambda: drift.differences(db))
        project = config_path(cmd.settings)
        alembic = None
        if project is not None:
            from dbtool.schema import migrations

            alembic = cmd.attempt(lambda: migrations.state(db, project))
        agree = not found and (alembic is None or alembic.at_head)
        if as_json:
            output.print_json(
                {
                    "database": cmd.settings.masked_url,
                    "models": db.models.source,
                    "ok": agree,
                    "differences": [difference.as_dict() for difference in found],
                    "alembic": None if alembic is None else alembic.as_dict(),
                }
            )
        else:
            for difference in found:
                output.note(f"✗ {difference.detail}")
            if alembic is not None:
                output.note(f"{'✓' if alembic.at_head else '✗'} Alembic: {alembic.describe()}")
        if agree:
            if not as_json:
                output.success(f"The database matches the models ({db.models.source})")
            return
        behind = alembic is not None and not alembic.at_head
        raise CheckFailed(
            f"the database does not match the models: {counted(len(found), 'difference')}"
            + ("; migrations are pending" if behind else "")
            + f" ({drift.remedy(found, migrations_pending=behind)})"
        )


@command(
    "config",
    "dbtool config",
    "dbtool --env-file ci.env config --json",
)
def show_config(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the effective settings and where each one comes from (passwords masked)."""
    import os

    from dbtool.config import describe_settings
    from dbtool.render import console as output

    with Command(ctx) as cmd:
        settings = cmd.settings
        rows = [_found_alembic_config(settings, row) for row in describe_settings(settings)]
    # The users commands' password: whether it is set, never its value.
    password = "DBTOOL_USER_PASSWORD"
    if os.environ.get(password):
        rows.append((password, "(set, hidden)", "environment"))
    elif password in settings.dotenv_names:
        rows.append((password, "(not set)", "in .env, which is not read for it"))
    else:
        rows.append((password, "(not set)", "default"))
    if as_json:
        output.print_json(
            {name: {"value": value, "source": source} for name, value, source in rows}
        )
    else:
        output.print_table(
            ("Setting", "Value", "Source"),
            ((name, _setting_text(value), source) for name, value, source in rows),
            keep=("Setting",),
        )


def _found_alembic_config(settings: "Settings", row: tuple[str, Any, str]) -> tuple[str, Any, str]:
    """DBTOOL_ALEMBIC_CONFIG unset, yet ./alembic.ini in use: shown as the file found."""
    from dbtool.schema.migrations import CONFIG_ENV, config_path

    name, value, _ = row
    if name != CONFIG_ENV or value is not None:
        return row
    found = config_path(settings)
    return (name, str(found), "found in the current directory") if found else row


def _setting_text(value: Any) -> str:
    """As the setting would be written: true/false, 30 rather than 30.0, empty for unset."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)
