"""`dbtool shell`: a Python REPL on the configured database, as `flask shell` and Django's
`shell`: `db`, an open `session`, the models' classes and SQLAlchemy's `select` at hand,
and `await` at the top level (as `python -m asyncio` allows).

Everything runs in the command's one event loop (`run`), where the engine was made: a
statement with `await` in it is run to completion there before the next prompt. IPython,
when installed, is given the same loop as its `loop_runner`.
"""

from __future__ import annotations

import ast
import code
import inspect
import sys
import traceback
import types
from collections.abc import Callable, Coroutine
from typing import Any

import sqlalchemy
from sqlalchemy.ext.asyncio import AsyncSession

from dbtool.db import Database

Runner = Callable[[Coroutine[Any, Any, Any]], Any]
TOP_LEVEL_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def namespace(db: Database, session: AsyncSession) -> dict[str, Any]:
    """What the shell starts with."""
    classes = {cls.__name__: cls for cls in db.models.classes}
    return {
        **classes,
        "db": db,
        "engine": db.engine,
        "session": session,
        "models": db.models,
        "tables": {table.name: table for table in db.models.tables},
        "select": sqlalchemy.select,
        "insert": sqlalchemy.insert,
        "update": sqlalchemy.update,
        "delete": sqlalchemy.delete,
        "func": sqlalchemy.func,
        "text": sqlalchemy.text,
    }


def banner(db: Database, names: dict[str, Any]) -> str:
    classes = sorted(cls.__name__ for cls in db.models.classes)
    return (
        f"dbtool shell on {db.settings.masked_url}\n"
        "  db, engine, session (an AsyncSession: `await session.commit()` keeps changes; "
        "left uncommitted, they are rolled back on exit)\n"
        f"  models: {', '.join(classes) or '(no mapped classes)'}; tables: "
        f"{', '.join(names['tables']) or '(none)'}\n"
        "  select, insert, update, delete, func, text; await works at the top level, e.g.\n"
        "  (await session.execute(select(...))).scalars().all()"
    )


def run_script(source: str, filename: str, names: dict[str, Any], run: Runner) -> int:
    """Run a script (`-c`, or stdin) with top-level await, in `names`; its exit status as
    Python's would be (1 and the traceback, the script's own, when it raises)."""
    try:
        compiled = compile(source, filename, "exec", flags=TOP_LEVEL_AWAIT, dont_inherit=True)
        outcome = types.FunctionType(compiled, names)()
        if inspect.iscoroutine(outcome):
            run(outcome)
    except SystemExit as exc:
        return exit_status(exc)
    except Exception:
        traceback.print_exc()
        return 1
    return 0


def exit_status(exc: SystemExit) -> int:
    """sys.exit()'s status, as Python exits with it: a number, or its message and 1."""
    if isinstance(exc.code, int) or exc.code is None:
        return exc.code or 0
    sys.stderr.write(f"{exc.code}\n")
    return 1


class AsyncConsole(code.InteractiveConsole):
    """Python's own console, with `await` at the top level run in the command's loop."""

    def __init__(self, names: dict[str, Any], run: Runner) -> None:
        super().__init__(names, filename="<dbtool shell>")
        self.compile.compiler.flags |= TOP_LEVEL_AWAIT
        self.run = run

    def runcode(self, code: types.CodeType) -> None:
        try:
            outcome = types.FunctionType(code, self.locals)()
            if inspect.iscoroutine(outcome):
                self.run(outcome)
        except SystemExit:
            raise
        except BaseException:  # as Python's console: shown, and the session goes on
            self.showtraceback()


def interact(names: dict[str, Any], run: Runner, greeting: str, *, plain: bool) -> int:
    """A REPL until end of input or exit(): IPython if installed (unless `plain`), else
    Python's; the exit status."""
    try:
        _interact(names, run, greeting, plain=plain)
    except SystemExit as exc:
        return exit_status(exc)
    return 0


def _interact(names: dict[str, Any], run: Runner, greeting: str, *, plain: bool) -> None:
    if not plain:
        try:
            from IPython.terminal.ipapp import TerminalIPythonApp
            from traitlets.config import Config
        except ImportError:
            pass
        else:
            config = Config()
            config.TerminalInteractiveShell.banner2 = greeting + "\n"
            config.TerminalIPythonApp.display_banner = True
            app: Any = TerminalIPythonApp.instance(config=config, user_ns=names)
            app.initialize(argv=[])
            # `await` runs in the command's loop, where the engine lives (IPython would
            # otherwise run it in a loop of its own).
            app.shell.autoawait = True
            app.shell.loop_runner = run
            app.start()
            return
    AsyncConsole(names, run).interact(banner=greeting, exitmsg="")
