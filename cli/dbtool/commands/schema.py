"""`dbtool init`, `drop` and `reset`: the models' schema (or the Alembic project's
migrations), created, dropped and created again. Typer wiring only."""

import contextlib
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbtool.commands.options import JsonOption, WaitOption, YesOption, flag, register
from dbtool.commands.runtime import Command, confirm_typed
from dbtool.errors import RefusedError, UsageError
from dbtool.wording import agreeing, counted

if TYPE_CHECKING:
    from dbtool.db import Database
    from dbtool.schema.tables import DropPlan, SchemaReport

app = typer.Typer()
command = partial(register, app)


AllowProtectedOption = Annotated[
    bool,
    flag("--allow-protected", help="Allow this even when DBTOOL_PROTECTED is true."),
]


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
    seed: Annotated[
        bool,
        flag(
            "--seed",
            help="Then load the project's seed data (DBTOOL_SEED), as `dbtool seed` does.",
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
    from dbtool.fixtures.seed import entries
    from dbtool.fixtures.seed import seed as seed_data
    from dbtool.render import console as output
    from dbtool.render.reports import print_seed
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
            if seed:
                raise UsageError("--seed loads data: it does not go with --sql")
            _print_statements(cmd, _init_sql(cmd, project, migrate=not (stamp or create_all)))
            return
        if seed:
            entries(settings.seed)  # a missing or wrong DBTOOL_SEED stops init before it starts
        database_created = False
        if create_database:
            with waiting(settings.masked_url, wait) as on_retry:
                database_created = cmd.run(
                    schema.create_database(settings, wait=wait, on_retry=on_retry)
                )
        with _dropped_on_failure(cmd, database_created):
            migrated, report, unversioned = _init(
                cmd, project, wait, stamp=stamp, create_all=create_all
            )
            seeded = cmd.attempt(lambda: seed_data(cmd.db, settings.seed)) if seed else None

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
                "alembic_without_revisions": None if unversioned is None else str(unversioned),
                "seed": None if seeded is None else seeded.as_dict(),
            }
        )
        return
    if database_created:
        output.success(f"Created database {schema.database_name(settings)}")
    if migrated is not None:
        state, applied = migrated
        done = f"applied {', '.join(applied)}" if applied else "already at head"
        verb = "Stamped" if stamp or create_all else "Migrated"
        output.success(
            f"{verb} {settings.masked_url} to head {', '.join(state.heads)} ({done}); "
            f"checked: {state.version_table} says head, the models' tables exist"
        )
    if unversioned is not None:
        output.note(
            f"The Alembic project {unversioned} has no revisions yet: the tables were made "
            "from the models, and no revision is recorded (see docs/guides/alembic.md)"
        )
    if report.created:
        output.success(f"Created tables: {', '.join(report.created)} in {settings.masked_url}")
    if report.indexes:
        output.success(f"Created missing indexes: {', '.join(report.indexes)}")
    if not report.created and not report.indexes and migrated is None:
        output.success(
            f"Schema is up to date in {settings.masked_url}: the models' tables and indexes exist"
        )
    if report.existing:
        output.note(f"Already existed: {', '.join(report.existing)}")
    if seeded is not None:
        print_seed(seeded)


def _init(
    cmd: Command, project: "Path | None", wait: float, *, stamp: bool, create_all: bool
) -> "tuple[Any, SchemaReport, Path | None]":
    """init's work once the database exists: (the Alembic state and revisions applied, or
    None; the tables report; the project when it has no revisions yet)."""
    from dbtool.schema import tables as schema

    db = cmd.database(must_exist=False, wait=wait, write=True)
    if project is not None and not (stamp or create_all):
        from dbtool.schema import migrations

        if not migrations.has_revisions(project, cmd.settings):
            # Nothing to migrate to: the tables come from the models, as without Alembic
            # (and as such projects' own apps make them at start-up).
            return None, cmd.attempt(lambda: schema.create_schema(db)), project
        before = cmd.attempt(lambda: schema.present_tables(db))
        migrated = cmd.attempt(lambda: migrations.upgrade(db, project))
        after = cmd.attempt(lambda: schema.present_tables(db))
        report = schema.SchemaReport(
            created=[name for name in after if name not in before], existing=before
        )
        return migrated, report, None
    if create_all and cmd.attempt(lambda: schema.present_tables(db, with_version_table=True)):
        raise RefusedError(
            "--create-all is for an empty database, and this one has tables of the "
            "models (or Alembic's version table): run the migrations (dbtool init)"
        )
    report = cmd.attempt(lambda: schema.create_schema(db))
    if project is None:
        return None, report, None
    from dbtool.schema import migrations

    return (cmd.attempt(lambda: migrations.stamp_head(db, project)), []), report, None


@contextlib.contextmanager
def _dropped_on_failure(cmd: Command, created: bool) -> Iterator[None]:
    """When init fails after creating the database, the database goes again (it holds
    nothing but the failed attempt), unless someone else is already using it."""
    try:
        yield
    except BaseException:
        if created:
            from dbtool.render import console as output
            from dbtool.schema import tables as schema

            name = schema.database_name(cmd.settings)
            try:
                cmd.close_database()
                cmd.run(schema.drop_database(cmd.settings))
                output.note(f"Dropped database {name} again: this run had created it")
            except Exception as exc:  # the first error is the one to report
                from dbtool.commands.runtime import describe_unexpected

                output.warning(
                    f"database {name}, created by this run, was left: {describe_unexpected(exc)}"
                )
        raise


def _init_sql(cmd: Command, project: "Path | None", *, migrate: bool) -> list[str]:
    """What `init` would run: the missing tables' DDL, or the pending migrations' SQL. A
    database file that does not exist yet is not created to find out (all of it is)."""
    from dbtool.backends import backend_for
    from dbtool.db import Database
    from dbtool.schema import tables as schema

    path = backend_for(cmd.settings.url).database_file(cmd.settings.url)
    fresh = path is not None and not path.exists()  # nothing to inspect: all of it
    if project is not None and migrate:
        from dbtool.schema import migrations

        if migrations.has_revisions(project, cmd.settings):
            current = [] if fresh else cmd.run(migrations.state(cmd.database(), project)).current
            return [migrations.upgrade_sql(project, cmd.settings, current)]
    db = Database(cmd.settings) if fresh else cmd.database()
    return cmd.run(schema.create_sql(db, assume_empty=fresh))


def _print_statements(cmd: Command, statements: list[str]) -> None:

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

    state = cmd.attempt(lambda: schema.describe_tables(db, dependents=True))
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
            output.note(f"  - table {table.name} ({counted(table.rows or 0, 'row')})")
    if plan.skipped:
        output.note("Kept, as they are not the tables the models describe (--force drops them):")
        for table, reason in plan.skipped:
            output.note(f"  - table {table.name} ({counted(table.rows or 0, 'row')}): {reason}")
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
            f"kept {names}: not the {agreeing(len(plan.skipped), 'table', 'tables')} the models "
            "describe; pass --force to drop them too"
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
    wait: WaitOption = 0.0,
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
            _print_statements(cmd, cmd.attempt(lambda: schema.drop_sql(db, force=force))[1])
            return
        plan = _plan_destruction(cmd, db, force)
        _confirm_destruction(cmd, plan, yes, "drop these tables")
        if plan.drop:
            plan = cmd.attempt(lambda: schema.drop_schema(db, force=force))
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
    wait: WaitOption = 0.0,
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
        db = cmd.database(write=not sql)  # only init creates a database file
        if project is not None:
            from dbtool.schema import migrations

            if not migrations.has_revisions(project, cmd.settings):
                project = None  # nothing to migrate to: the tables come from the models
        if sql:
            statements = cmd.attempt(lambda: schema.drop_sql(db, force=force))[1]
            if project is not None:
                statements.append(migrations.upgrade_sql(project, cmd.settings, []))
            else:
                statements += cmd.run(schema.create_sql(db, assume_empty=True))
            _print_statements(cmd, statements)
            return
        plan = _plan_destruction(cmd, db, force)
        _confirm_destruction(cmd, plan, yes, "drop and re-create these tables")
        if project is None:
            plan, report = cmd.attempt(lambda: schema.reset_schema(db, force=force))
        else:
            plan = cmd.attempt(lambda: schema.drop_schema(db, force=force))
            before = cmd.attempt(lambda: schema.present_tables(db))
            cmd.attempt(lambda: migrations.upgrade(db, project))
            after = cmd.attempt(lambda: schema.present_tables(db))
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
