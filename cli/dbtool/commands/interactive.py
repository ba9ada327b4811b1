"""`dbtool dbshell` and `dbtool shell`: the database's own client, and a Python REPL on
the models. Typer wiring only; the work is `dbtool.interactive`'s."""

import sys
from functools import partial
from typing import Annotated

import typer

from dbtool.commands.options import TEXT, flag, register
from dbtool.commands.runtime import Command

app = typer.Typer()
command = partial(register, app)


@command(
    "dbshell",
    "dbtool dbshell",
    "dbtool dbshell -- -c 'SELECT count(*) FROM \"user\"'",
    'DATABASE_URL="$STAGING_URL" dbtool dbshell',
    "echo 'SELECT 1;' | dbtool dbshell",
)
def dbshell(
    ctx: typer.Context,
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[-- ARGS]...",
            click_type=TEXT,
            help="Passed to the client after dbtool's own (put them after --).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Open the database's own client on the configured URL: psql (PostgreSQL), sqlite3
    (SQLite), mariadb or mysql (MariaDB, MySQL).

    The password reaches the client in a temporary file only you can read (removed when
    it exits), never on its command line. The exit status is the client's.
    """
    from dbtool.interactive.dbshell import run_client

    with Command(ctx) as cmd:
        status = run_client(cmd.settings, args or [])
    raise typer.Exit(status)


@command(
    "shell",
    "dbtool shell",
    "dbtool shell -c 'print(await session.scalar(select(func.count()).select_from(User)))'",
    "dbtool shell < scripts/fix_names.py",
    "dbtool shell --plain",
)
def shell(
    ctx: typer.Context,
    source: Annotated[
        str | None,
        typer.Option(
            "--command",
            "-c",
            metavar="CODE",
            click_type=TEXT,
            help="Run CODE (Python, with top-level await) instead of a REPL, then exit.",
            show_default=False,
        ),
    ] = None,
    plain: Annotated[
        bool, flag("--plain", help="Python's own REPL even when IPython is installed.")
    ] = False,
) -> None:
    """A Python REPL on the database, with `db`, an open `session` (an AsyncSession), the
    models' classes, `select`, `func` and `text` at hand, and `await` at the top level.

    Changes are kept only by `await session.commit()`. With -c CODE, or a script on
    standard input, it runs that and exits (1 if it raises).
    """
    from dbtool.interactive import repl

    with Command(ctx) as cmd:
        db = cmd.database()
        session = db.sessionmaker()
        names = repl.namespace(db, session)
        try:
            if source is not None or not sys.stdin.isatty():
                script = source if source is not None else sys.stdin.read()
                status = repl.run_script(script, "<-c>" if source else "<stdin>", names, cmd.run)
            else:
                status = repl.interact(names, cmd.run, repl.banner(db, names), plain=plain)
        finally:
            cmd.run(session.close())
    raise typer.Exit(status)
