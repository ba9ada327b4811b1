"""The `dbtool` command line: Typer wiring only.

Each command parses its arguments, calls the library through `Command`, and renders the
result. Library modules (and SQLAlchemy, drivers, hashing) are imported inside the
commands, so `dbtool --help`, `--version` and shell completion stay fast.
"""

import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

# Typer vendors Click (typer >= 0.26) and re-exports only some of its exceptions.
from typer._click import exceptions as click_exceptions
from typer.core import TyperGroup

from dbtool import __version__
from dbtool.commands.options import (
    JsonOption,
    WaitOption,
    YesOption,
    at_least,
    finite_seconds,
    flag,
    register,
    whole_number,
)
from dbtool.commands.runtime import Command, State, confirm_typed, pause_gc, resume_gc
from dbtool.errors import DbtoolError, RefusedError, UsageError


class CheckFailed(DbtoolError):
    """`dbtool check` found differences (exit 1)."""


if TYPE_CHECKING:
    from dbtool.db import Database
    from dbtool.diagnostics.pools import PoolReport
    from dbtool.schema.tables import DropPlan


class RootGroup(TyperGroup):
    """The root command, with `dbtool users` loaded only when it is used: every other
    command (and --version) then skips importing and building its nine subcommands."""

    lazy = ("users",)

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [*super().list_commands(ctx), *(n for n in self.lazy if n not in self.commands)]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        if cmd_name in self.lazy and cmd_name not in self.commands:
            from dbtool.commands.users import users_app

            self.commands[cmd_name] = typer.main.get_command(users_app)
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:  # type: ignore[override]
        try:
            return super().resolve_command(ctx, args)
        except click_exceptions.UsageError as exc:
            # Typer suggests only among commands already built; the lazy ones count too.
            if "Did you mean" not in exc.message and args:
                from difflib import get_close_matches

                close = get_close_matches(args[0], self.list_commands(ctx))
                if close:
                    exc.message = f"{exc.message.rstrip('.')}. Did you mean {close[0]!r}?"
            raise

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's main, with every usage error as one `error:` line plus a hint (instead of
        a boxed panel), plain `dbtool` as help with exit 0, and argv checked for text that
        is not valid UTF-8 before anything reads it."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        arguments = hoist_global_options(list(sys.argv[1:] if args is None else args))
        try:
            for number, argument in enumerate(arguments, start=1):
                _check_argument(number, argument)
            result = super().main(arguments, prog_name, complete_var, False, **extra)
        except click_exceptions.NoArgsIsHelpError:
            sys.exit(0)  # Typer has printed the help
        except click_exceptions.UsageError as exc:
            _usage_error(exc.format_message(), exc.ctx)
        except click_exceptions.ClickException as exc:
            from dbtool.render import console as output

            output.error(exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort:
            from dbtool.render import console as output

            output.error("cancelled, nothing was changed")
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


# The root options, which may also come after the command name (`dbtool ping --url ...`).
GLOBAL_VALUE_OPTIONS = ("--url", "--env-file", "--models")
GLOBAL_FLAGS = ("--debug",)


def hoist_global_options(args: list[str]) -> list[str]:
    """`args` with the global options found after the command name moved before it, where
    the root command parses them: one definition serves every position. A `--` ends the
    search (what follows it is data)."""
    position = 0
    while position < len(args):  # skip the options given before the command
        argument = args[position]
        if argument == "--" or not argument.startswith("-"):
            break
        position += 2 if argument in GLOBAL_VALUE_OPTIONS else 1
    head, tail = args[:position], args[position:]
    hoisted: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(tail):
        argument = tail[index]
        if argument == "--":
            rest.extend(tail[index:])
            break
        if argument in GLOBAL_VALUE_OPTIONS and index + 1 < len(tail):
            hoisted.extend(tail[index : index + 2])
            index += 2
            continue
        if argument in GLOBAL_FLAGS or argument.partition("=")[0] in GLOBAL_VALUE_OPTIONS:
            hoisted.append(argument)
        else:
            rest.append(argument)
        index += 1
    return [*head, *hoisted, *rest]


# scheme://user:password@...: a URL carrying a password (checked without parsing it fully,
# which would load SQLAlchemy for every command).
_URL_WITH_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:[^/?#@]+@")


def _check_argument(number: int, argument: str) -> None:
    try:
        argument.encode("utf-8")
    except UnicodeEncodeError:
        raise click_exceptions.UsageError(f"argument {number} is not valid UTF-8 text") from None
    if "\x00" in argument:
        raise click_exceptions.UsageError(f"argument {number} contains a NUL character")


def _usage_error(message: str, ctx: Any) -> NoReturn:
    from dbtool.render import console as output

    output.error(message)
    command = ctx.command_path if ctx is not None else "dbtool"
    output.note(f"Try '{command} --help' for help.")
    sys.exit(2)


app = typer.Typer(
    name="dbtool",
    cls=RootGroup,
    help="Database admin for async SQLAlchemy applications: schema, users, connections.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def command(name: str, *example_lines: str) -> Callable[[Callable[..., Any]], Any]:
    return register(app, name, *example_lines)


AllowProtectedOption = Annotated[
    bool,
    flag("--allow-protected", help="Allow this even when DBTOOL_PROTECTED is true."),
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
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            metavar="MODULE:ATTR",
            help="The application's models: a declarative base, MetaData or SQLModel, e.g. "
            "app.models:Base (default: DBTOOL_MODELS, else dbtool's built-in users table).",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[bool, flag("--debug", help="Show tracebacks for errors.")] = False,
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

    The options below work before or after the command name (`dbtool ping --url URL`).
    Exit codes: 0 ok, 1 failed, 2 usage or configuration error, 3 cannot reach the
    database, 4 conflict, 5 refused, 130 cancelled.
    """
    if url is not None and _URL_WITH_PASSWORD.match(url):
        from dbtool.render import console as output

        output.warning(
            "the password in --url is visible to other users of this machine (ps, /proc); "
            "put the URL in DATABASE_URL or .env instead"
        )
    ctx.obj = State(url=url, env_file=env_file, debug=debug, models=models)


SqlOption = Annotated[
    bool,
    flag(
        "--sql",
        help="Print the SQL this would run (for this database's dialect) and change nothing.",
    ),
]


@command(
    "init",
    "dbtool init",
    "dbtool init --wait 60 --create-database",
    "DBTOOL_MODELS=app.models:Base dbtool init --json",
    "dbtool init --sql > schema.sql",
)
def init(
    ctx: typer.Context,
    wait: WaitOption = 0.0,
    create_database: Annotated[
        bool,
        flag(
            "--create-database",
            help="Create the database itself if it does not exist (PostgreSQL), or the "
            "SQLite file's directory.",
        ),
    ] = False,
    create_all: Annotated[
        bool,
        flag(
            "--create-all",
            help="On an Alembic project: create the tables from the models instead of running "
            "the migrations (an empty database only), then stamp head.",
        ),
    ] = False,
    stamp: Annotated[
        bool,
        flag(
            "--stamp",
            help="On an Alembic project: create the missing tables from the models, then "
            "record head as applied (Alembic's cookbook for a schema made by create_all).",
        ),
    ] = False,
    sql: SqlOption = False,
    as_json: JsonOption = False,
) -> None:
    """Create the models' tables that are missing; on an Alembic project, run the migrations
    to head. Safe to re-run and to run concurrently.

    Exits 1 without creating anything when a table of the models' name exists with other
    columns (it is not the table the models describe). An Alembic project is an alembic.ini
    in the current directory, or DBTOOL_ALEMBIC_CONFIG.
    """
    from dbtool.commands.runtime import waiting
    from dbtool.render import console as output
    from dbtool.schema import tables as schema
    from dbtool.schema.migrations import config_path

    with Command(ctx) as cmd:
        settings = cmd.settings
        project = config_path(settings)
        if (stamp or create_all) and project is None:
            option = "--stamp" if stamp else "--create-all"
            raise UsageError(
                f"{option} is for Alembic projects (an alembic.ini here, or "
                "DBTOOL_ALEMBIC_CONFIG); without one, init creates the tables anyway"
            )
        if sql:
            _print_statements(cmd, _init_sql(cmd, project, migrate=not (stamp or create_all)))
            return
        database_created = False
        if create_database:
            with waiting(settings.masked_url, wait) as on_retry:
                database_created = cmd.run(
                    schema.create_database(settings, wait=wait, on_retry=on_retry)
                )
        db = cmd.database(must_exist=False, wait=wait, write=True)
        migrated = None
        if project is not None and not (stamp or create_all):
            from dbtool.schema import migrations

            before = cmd.run(schema.present_tables(db))
            migrated = cmd.run(migrations.upgrade(db, project))
            after = cmd.run(schema.present_tables(db))
            report = schema.SchemaReport(
                created=[name for name in after if name not in before], existing=before
            )
        else:
            if create_all and cmd.run(schema.present_tables(db, with_version_table=True)):
                raise RefusedError(
                    "--create-all is for an empty database, and this one has tables of the "
                    "models (or Alembic's alembic_version): run the migrations (dbtool init)"
                )
            report = cmd.run(schema.create_schema(db))
            if project is not None:
                from dbtool.schema import migrations

                migrated = (cmd.run(migrations.stamp_head(db, project)), [])

    if as_json:
        output.print_json(
            {
                "database": settings.masked_url,
                "database_created": database_created,
                "created": report.created,
                "existing": report.existing,
                "indexes_created": report.indexes,
                "alembic": None
                if migrated is None
                else {**migrated[0].as_dict(), "applied": migrated[1]},
            }
        )
        return
    if database_created:
        output.success(f"Created database {schema.database_name(settings)}")
    if migrated is not None:
        state, applied = migrated
        done = f"applied {', '.join(applied)}" if applied else "nothing to apply"
        verb = "Stamped" if stamp or create_all else "Migrated"
        output.success(f"{verb} to head {', '.join(state.heads)} ({done})")
    if report.created:
        output.success(f"Created tables: {', '.join(report.created)} in {settings.masked_url}")
    if report.indexes:
        output.success(f"Created missing indexes: {', '.join(report.indexes)}")
    if not report.created and not report.indexes and migrated is None:
        output.success(f"Schema is up to date in {settings.masked_url}")
    if report.existing:
        output.note(f"Already existed: {', '.join(report.existing)}")


def _init_sql(cmd: Command, project: "Path | None", *, migrate: bool) -> list[str]:
    """What `init` would run: the missing tables' DDL, or the pending migrations' SQL."""
    from dbtool.backends import backend_for
    from dbtool.schema import tables as schema

    path = backend_for(cmd.settings.url).database_file(cmd.settings.url)
    fresh = path is not None and not path.exists()  # nothing to inspect: all of it
    if project is not None and migrate:
        from dbtool.schema import migrations

        current = [] if fresh else cmd.run(migrations.state(cmd.database(), project)).current
        return [migrations.upgrade_sql(project, cmd.settings, current)]
    db = cmd.database(must_exist=not fresh) if not fresh else cmd.database(must_exist=False)
    return cmd.run(schema.create_sql(db, assume_empty=fresh))


def _print_statements(cmd: Command, statements: list[str]) -> None:
    import sys

    from dbtool.render import console as output

    for statement in statements:
        sys.stdout.write(statement.rstrip() + "\n\n")
    sys.stdout.flush()
    if not statements:
        output.note(f"nothing to do in {cmd.settings.masked_url}")


def _refuse_if_protected(cmd: Command, allow_protected: bool, action: str) -> None:
    settings = cmd.settings
    if settings.protected and not allow_protected:
        source = settings.sources.get("DBTOOL_PROTECTED", "default")
        raise RefusedError(
            f"refusing to {action} {settings.masked_url}: it is protected "
            f"(DBTOOL_PROTECTED=true from {source}); add --allow-protected to override"
        )


ForceOption = Annotated[
    bool,
    flag(
        "--force",
        help="Also drop tables whose columns do not match the models, and (PostgreSQL, with "
        "CASCADE) the foreign keys of tables outside the models that reference them.",
    ),
]


def _plan_destruction(cmd: Command, db: "Database", force: bool) -> "DropPlan":
    """What drop/reset would drop and keep; refuses (exit 5) when tables outside the models
    depend on a table to drop."""
    from dbtool.schema import tables as schema

    state = cmd.run(schema.describe_tables(db, dependents=True))
    plan = schema.plan_drop(state, db.models, force=force)
    if plan.blocked:
        raise RefusedError(
            f"cannot drop: {'; '.join(plan.blocked)}; drop or change those first, or use --force"
        )
    return plan


def _confirm_destruction(cmd: Command, plan: "DropPlan", yes: bool, action: str) -> None:
    """Show what will be destroyed and kept; then --yes, a typed confirmation, or refusal."""
    from dbtool.render import console as output
    from dbtool.schema import tables as schema

    settings = cmd.settings
    if plan.drop:
        output.note(f"This will {action} in {settings.masked_url}:")
        for table in plan.drop:
            output.note(f"  - table {table.name} ({table.rows} rows)")
    if plan.skipped:
        output.note("Kept, as they are not the tables the models describe (--force drops them):")
        for table, reason in plan.skipped:
            output.note(f"  - table {table.name} ({table.rows} rows): {reason}")
    if not plan.drop or yes:
        return
    if not output.stdin_is_terminal():
        raise RefusedError(f"not confirmed: pass --yes to {action} without a terminal")
    name = schema.database_name(settings)
    confirm_typed(name, "This cannot be undone.")


def _drop_summary(plan: "DropPlan") -> dict[str, Any]:
    return {
        "dropped": [{"table": table.name, "rows": table.rows} for table in plan.drop],
        "skipped": [
            {"table": table.name, "rows": table.rows, "reason": reason}
            for table, reason in plan.skipped
        ],
    }


def _refuse_skipped(plan: "DropPlan") -> None:
    if plan.skipped:
        names = ", ".join(table.name for table, _ in plan.skipped)
        raise RefusedError(
            f"kept {names}: not the table(s) the models describe; pass --force to drop them too"
        )


@command(
    "drop",
    "dbtool drop",
    "dbtool drop --yes --json",
    "dbtool drop --yes --force",
)
def drop(
    ctx: typer.Context,
    yes: YesOption = False,
    force: ForceOption = False,
    allow_protected: AllowProtectedOption = False,
    sql: SqlOption = False,
    as_json: JsonOption = False,
) -> None:
    """Drop the models' tables (after showing them with their row counts and confirming),
    and Alembic's alembic_version with them.

    A table whose columns do not match the models is kept (exit 5) unless --force is given.
    """
    from dbtool.render import console as output
    from dbtool.schema import tables as schema

    with Command(ctx) as cmd:
        _refuse_if_protected(cmd, allow_protected, "drop tables in")
        db = cmd.database(write=not sql)
        if sql:
            _print_statements(cmd, cmd.run(schema.drop_sql(db, force=force))[1])
            return
        plan = _plan_destruction(cmd, db, force)
        _confirm_destruction(cmd, plan, yes, "drop these tables")
        if plan.drop:
            plan = cmd.run(schema.drop_schema(db, force=force))
        if as_json:
            output.print_json({"database": cmd.settings.masked_url, **_drop_summary(plan)})
        elif plan.drop:
            output.success(f"Dropped tables: {', '.join(t.name for t in plan.drop)}")
        elif not plan.skipped:
            output.note(
                f"Nothing to drop: none of the models' tables exist in {cmd.settings.masked_url}"
            )
        _refuse_skipped(plan)


@command(
    "reset",
    "dbtool reset",
    "dbtool reset --yes",
)
def reset(
    ctx: typer.Context,
    yes: YesOption = False,
    force: ForceOption = False,
    allow_protected: AllowProtectedOption = False,
    sql: SqlOption = False,
    as_json: JsonOption = False,
) -> None:
    """Drop the models' tables and create them again, empty, in one transaction (same
    confirmation and rules as drop). On an Alembic project the drop is one transaction and
    the migrations then run to head."""
    from dbtool.render import console as output
    from dbtool.schema import tables as schema
    from dbtool.schema.migrations import config_path

    with Command(ctx) as cmd:
        _refuse_if_protected(cmd, allow_protected, "reset")
        project = config_path(cmd.settings)
        db = cmd.database(must_exist=False, write=not sql)
        if sql:
            statements = cmd.run(schema.drop_sql(db, force=force))[1]
            if project is not None:
                from dbtool.schema import migrations

                statements.append(migrations.upgrade_sql(project, cmd.settings, []))
            else:
                statements += cmd.run(schema.create_sql(db, assume_empty=True))
            _print_statements(cmd, statements)
            return
        plan = _plan_destruction(cmd, db, force)
        _confirm_destruction(cmd, plan, yes, "drop and re-create these tables")
        if project is None:
            plan, report = cmd.run(schema.reset_schema(db, force=force))
        else:
            from dbtool.schema import migrations

            plan = cmd.run(schema.drop_schema(db, force=force))
            before = cmd.run(schema.present_tables(db))
            cmd.run(migrations.upgrade(db, project))
            after = cmd.run(schema.present_tables(db))
            report = schema.SchemaReport([t for t in after if t not in before], before)
        if as_json:
            output.print_json(
                {
                    "database": cmd.settings.masked_url,
                    **_drop_summary(plan),
                    "created": report.created,
                }
            )
        else:
            if plan.drop:
                output.success(f"Dropped tables: {', '.join(t.name for t in plan.drop)}")
            output.success(
                f"Created tables: {', '.join(report.created) or 'none'} in "
                f"{cmd.settings.masked_url}"
            )
        _refuse_skipped(plan)


@command(
    "ping",
    "dbtool ping",
    "dbtool ping --wait 30 --json",
)
def ping(ctx: typer.Context, wait: WaitOption = 0.0, as_json: JsonOption = False) -> None:
    """Check that the database answers; print the server version and round-trip latency.

    Exits 0 when it answers, 3 when it cannot be reached.
    """
    from dbtool.diagnostics import server as diagnostics
    from dbtool.render import console as output

    with Command(ctx) as cmd:
        db = cmd.database(wait=wait)
        result = cmd.run(diagnostics.ping(db))

    if as_json:
        output.print_json({"ok": True, **result.as_dict()})
    else:
        role = f"; {result.role.describe()}" if result.role is not None else ""
        output.success(
            f"{result.server} {result.version} at {result.database}: "
            f"{result.latency_ms:.2f} ms round trip{role}"
        )


@command(
    "pool-status",
    "dbtool pool-status",
    "dbtool pool-status --probe 20 --json",
    "dbtool pool-status --watch --interval 5",
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
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            metavar="SECONDS",
            callback=at_least(0.1),
            help="Refresh interval for --watch (at least 0.1).",
        ),
    ] = 2.0,
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

    def render(report: "PoolReport") -> None:
        if as_json and watch:
            output.print_json_line(report.as_dict())  # a stream: one object per refresh
        elif as_json:
            output.print_json(report.as_dict())
        else:
            output.print_pool_report(report)

    with Command(ctx) as cmd:
        admin = pgbouncer or cmd.settings.pgbouncer_admin_url

        def collect(probe_connections: int) -> "PoolReport":
            # PgBouncer's admin console first: dbtool's own connection may queue in it.
            backend = backend_for(cmd.settings.url)
            bouncer = cmd.run(backend.pooler_report(cmd.settings, admin)) if admin else None
            db = cmd.database(wait=wait)
            return cmd.run(
                pools.pool_report(
                    db,
                    probe_connections=probe_connections,
                    probe_hold=probe_hold,
                    idle_in_transaction_warning=idle_warning,
                    bouncer=bouncer,
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

    from dbtool.render import console as output

    try:
        if live and output.out_console().is_terminal:
            from datetime import datetime

            from rich.live import Live

            with Live(console=output.out_console(), auto_refresh=False) as screen:
                while True:
                    report = collect()
                    view = output.pool_report_renderable(
                        report, refreshed=datetime.now(), interval=interval
                    )
                    screen.update(view, refresh=True)
                    time.sleep(interval)
        else:  # a pipe or --json: one report (or JSON line) after another
            while True:
                render(collect())
                time.sleep(interval)
    except KeyboardInterrupt:
        output.note("stopped")


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
        report = cmd.run(diagnostics.info(db, exact=exact))
        project = config_path(cmd.settings)
        if project is not None:
            from dataclasses import replace

            from dbtool.schema import migrations

            alembic = cmd.run(migrations.state(db, project))
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
        return f"about {table['rows']:,} rows (estimated; --exact counts them)"
    return f"{table['rows']:,} rows"


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
        found = cmd.run(drift.differences(db))
        project = config_path(cmd.settings)
        alembic = None
        if project is not None:
            from dbtool.schema import migrations

            alembic = cmd.run(migrations.state(db, project))
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
            f"the database does not match the models: {len(found)} difference(s)"
            + ("; migrations are pending" if behind else "")
            + " (create a migration, or run `dbtool init`)"
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
        rows = describe_settings(settings)
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


def _setting_text(value: Any) -> str:
    """As the setting would be written: true/false, 30 rather than 30.0, empty for unset."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def _terminated(signum: int, frame: Any) -> None:
    # SIGTERM (a CI runner or supervisor stopping the job) takes the way Ctrl-C takes:
    # transactions roll back, partial files are removed, exit 130. That way is whatever
    # SIGINT's handler is now: while a step runs in the event loop, asyncio's runner
    # cancels it (KeyboardInterrupt raised at an arbitrary point inside the driver or the
    # loop crashed or hung one export in about a hundred); otherwise KeyboardInterrupt.
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _terminated)
    pause_gc()
    try:
        app()
    finally:
        resume_gc()  # for callers in the same process
