"""The `dbtool` command line: Typer wiring only.

Each command parses its arguments, calls the library through `Command`, and renders the
result. Library modules (and SQLAlchemy, drivers, hashing) are imported inside the
commands, so `dbtool --help`, `--version` and shell completion stay fast.
"""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from cli import __version__
from cli.command import Command, State, confirm_typed
from cli.errors import RefusedError

if TYPE_CHECKING:
    from cli.diagnostics import PoolReport


class RootGroup(TyperGroup):
    """The root command, with `dbtool users` loaded only when it is used: every other
    command (and --version) then skips importing and building its nine subcommands."""

    lazy = ("users",)

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [*super().list_commands(ctx), *(n for n in self.lazy if n not in self.commands)]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        if cmd_name in self.lazy and cmd_name not in self.commands:
            from cli.users_cmd import users_app

            self.commands[cmd_name] = typer.main.get_command(users_app)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="dbtool",
    cls=RootGroup,
    help="Database admin for async SQLAlchemy applications: schema, users, connections.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout.", show_default=False)
]
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait",
        metavar="SECONDS",
        min=0,
        help="Keep retrying to connect for up to SECONDS (for CI, right after the server starts).",
    ),
]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.", show_default=False)
]
AllowProtectedOption = Annotated[
    bool,
    typer.Option(
        "--allow-protected",
        help="Allow this even when DBTOOL_PROTECTED is true.",
        show_default=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dbtool {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            help="Database URL (default: DATABASE_URL from the environment or .env, "
            "else sqlite:///./dbtool.db).",
            show_default=False,
        ),
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            metavar="PATH",
            help="Read settings from this file instead of ./.env.",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors.", show_default=False)
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Show the version and exit.",
            show_default=False,
        ),
    ] = False,
) -> None:
    """Database admin for async SQLAlchemy applications: schema, users, connections.

    Exit codes: 0 ok, 1 failed, 2 usage or configuration error, 3 cannot reach the
    database, 4 conflict, 5 refused, 130 cancelled.
    """
    ctx.obj = State(url=url, env_file=env_file, debug=debug)


@app.command()
def init(
    ctx: typer.Context,
    wait: WaitOption = 0.0,
    create_database: Annotated[
        bool,
        typer.Option(
            "--create-database",
            help="Create the database itself if it does not exist (PostgreSQL), or the "
            "SQLite file's directory.",
            show_default=False,
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create the tool's tables that are missing. Safe to re-run and to run concurrently."""
    from cli import output, schema
    from cli.command import waiting

    with Command(ctx) as cmd:
        settings = cmd.settings
        database_created = False
        if create_database:
            with waiting(settings.masked_url, wait) as on_retry:
                database_created = cmd.run(
                    schema.create_database(settings, wait=wait, on_retry=on_retry)
                )
        db = cmd.database(must_exist=False, wait=wait)
        report = cmd.run(schema.create_schema(db))

    if as_json:
        output.print_json(
            {
                "database": settings.masked_url,
                "database_created": database_created,
                "created": report.created,
                "existing": report.existing,
            }
        )
        return
    if database_created:
        output.success(f"Created database {schema.database_name(settings)}")
    if report.created:
        output.success(f"Created tables: {', '.join(report.created)} in {settings.masked_url}")
    else:
        output.success(f"Schema is up to date in {settings.masked_url}")
    if report.existing:
        output.note(f"Already existed: {', '.join(report.existing)}")


def _refuse_if_protected(cmd: Command, allow_protected: bool, action: str) -> None:
    settings = cmd.settings
    if settings.protected and not allow_protected:
        source = settings.sources.get("DBTOOL_PROTECTED", "default")
        raise RefusedError(
            f"refusing to {action} {settings.masked_url}: it is protected "
            f"(DBTOOL_PROTECTED=true from {source}); add --allow-protected to override"
        )


def _confirm_destruction(cmd: Command, tables: list[Any], yes: bool, action: str) -> None:
    """Show what will be destroyed; then --yes, a typed confirmation, or refusal."""
    from cli import output, schema

    settings = cmd.settings
    output.note(f"This will {action} in {settings.masked_url}:")
    for table in tables:
        output.note(f"  - table {table.name} ({table.rows} rows)")
    if yes:
        return
    if not output.stdin_is_terminal():
        raise RefusedError(f"not confirmed: pass --yes to {action} without a terminal")
    name = schema.database_name(settings)
    confirm_typed(name, "This cannot be undone.")


@app.command()
def drop(
    ctx: typer.Context,
    yes: YesOption = False,
    allow_protected: AllowProtectedOption = False,
    as_json: JsonOption = False,
) -> None:
    """Drop the tool's tables (after showing them with their row counts and confirming)."""
    from cli import output, schema

    with Command(ctx) as cmd:
        _refuse_if_protected(cmd, allow_protected, "drop tables in")
        db = cmd.database()
        tables = cmd.run(schema.describe_tables(db))
        if tables:
            _confirm_destruction(cmd, tables, yes, "drop these tables")
            dropped = cmd.run(schema.drop_schema(db))
        else:
            dropped = []

    rows = {table.name: table.rows for table in tables}
    if as_json:
        output.print_json(
            {
                "database": cmd.settings.masked_url,
                "dropped": [{"table": name, "rows": rows.get(name, 0)} for name in dropped],
            }
        )
    elif dropped:
        output.success(f"Dropped tables: {', '.join(dropped)}")
    else:
        output.note(
            f"Nothing to drop: none of the tool's tables exist in {cmd.settings.masked_url}"
        )


@app.command()
def reset(
    ctx: typer.Context,
    yes: YesOption = False,
    allow_protected: AllowProtectedOption = False,
    as_json: JsonOption = False,
) -> None:
    """Drop the tool's tables and create them again, empty (same confirmation as drop)."""
    from cli import output, schema

    with Command(ctx) as cmd:
        _refuse_if_protected(cmd, allow_protected, "reset")
        db = cmd.database(must_exist=False)
        tables = cmd.run(schema.describe_tables(db))
        if tables:
            _confirm_destruction(cmd, tables, yes, "drop and re-create these tables")
        dropped = cmd.run(schema.drop_schema(db))
        report = cmd.run(schema.create_schema(db))

    if as_json:
        output.print_json(
            {"database": cmd.settings.masked_url, "dropped": dropped, "created": report.created}
        )
        return
    if dropped:
        output.success(f"Dropped tables: {', '.join(dropped)}")
    output.success(f"Created tables: {', '.join(report.created)} in {cmd.settings.masked_url}")


@app.command()
def ping(ctx: typer.Context, wait: WaitOption = 0.0, as_json: JsonOption = False) -> None:
    """Check that the database answers; print the server version and round-trip latency.

    Exits 0 when it answers, 3 when it cannot be reached.
    """
    from cli import diagnostics, output

    with Command(ctx) as cmd:
        db = cmd.database(wait=wait)
        result = cmd.run(diagnostics.ping(db))

    if as_json:
        output.print_json({"ok": True, **vars(result)})
    else:
        output.success(
            f"{result.server} {result.version} at {result.database}: "
            f"{result.latency_ms:.2f} ms round trip"
        )


@app.command("pool-status")
def pool_status(
    ctx: typer.Context,
    probe: Annotated[
        int,
        typer.Option(
            "--probe",
            metavar="N",
            min=0,
            help="Check out N connections at once through the pool, each running a short "
            "query, and report checkout waits, overflow, timeouts and that all came back.",
        ),
    ] = 0,
    probe_hold: Annotated[
        float,
        typer.Option(
            "--probe-hold",
            metavar="SECONDS",
            min=0,
            help="How long each probe keeps its connection.",
        ),
    ] = 0.05,
    idle_warning: Annotated[
        float,
        typer.Option(
            "--idle-warning",
            metavar="SECONDS",
            min=0,
            help="Warn about sessions idle in a transaction for longer than this.",
        ),
    ] = 60.0,
    watch: Annotated[
        bool,
        typer.Option("--watch", help="Refresh the report until Ctrl-C.", show_default=False),
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", metavar="SECONDS", min=0.1, help="Refresh interval for --watch."
        ),
    ] = 2.0,
    wait: WaitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Show the pool each process gets, who holds connections on the server, and the room left.

    The client side: the pool this configuration gives each process. The server side
    (PostgreSQL): connections by application and state, the oldest and idle-in-transaction
    sessions, free connections, and how many more processes with this pool fit.
    """
    from cli import diagnostics, output

    def render(report: "PoolReport") -> None:
        if as_json and watch:
            output.print_json_line(report.as_dict())  # a stream: one object per refresh
        elif as_json:
            output.print_json(report.as_dict())
        else:
            output.print_renderable(output.pool_report_renderable(report))

    with Command(ctx) as cmd:
        db = cmd.database(wait=wait)

        def collect(probe_connections: int) -> "PoolReport":
            return cmd.run(
                diagnostics.pool_report(
                    db,
                    probe_connections=probe_connections,
                    probe_hold=probe_hold,
                    idle_in_transaction_warning=idle_warning,
                )
            )

        if not watch:
            render(collect(probe))
        else:
            _watch(lambda: collect(0), render, interval, live=not as_json)


def _watch(
    collect: Callable[[], "PoolReport"],
    render: Callable[["PoolReport"], None],
    interval: float,
    *,
    live: bool,
) -> None:
    """Refresh until Ctrl-C (which ends the command normally, exit 0)."""
    import time

    from cli import output

    try:
        if live and output.out_console().is_terminal:
            from rich.live import Live

            with Live(console=output.out_console(), auto_refresh=False) as screen:
                while True:
                    screen.update(output.pool_report_renderable(collect()), refresh=True)
                    time.sleep(interval)
        else:  # a pipe or --json: one report (or JSON line) after another
            while True:
                render(collect())
                time.sleep(interval)
    except KeyboardInterrupt:
        output.note("stopped")


@app.command()
def info(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the server, the database size, the tool's tables and whether the schema is complete.

    Each table comes with its row count; missing tables are named.
    """
    from cli import diagnostics, output

    with Command(ctx) as cmd:
        db = cmd.database()
        report = cmd.run(diagnostics.info(db))
    if as_json:
        output.print_json(report.as_dict())
        return
    rows = [
        ("database", report.database),
        ("server", f"{report.server} {report.version}"),
        ("name", report.database_name),
        ("size", f"{report.size_bytes:,} bytes"),
        *((f"table {t['name']}", f"{t['rows']:,} rows") for t in report.tables),
        ("schema", "complete" if report.schema_complete else
         f"incomplete: missing {', '.join(report.missing_tables)} (run `dbtool init`)"),
    ]  # fmt: skip
    output.print_table(("", ""), rows)


@app.command("config")
def show_config(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the effective settings and where each one comes from (passwords masked)."""
    from cli import output
    from cli.config import describe_settings
    from cli.formats import csv_value

    with Command(ctx) as cmd:
        rows = describe_settings(cmd.settings)
    if as_json:
        output.print_json(
            {name: {"value": value, "source": source} for name, value, source in rows}
        )
    else:
        output.print_table(
            ("Setting", "Value", "Source"),
            ((name, csv_value(value), source) for name, value, source in rows),
        )


def main() -> None:
    """Console-script entry point."""
    app()
