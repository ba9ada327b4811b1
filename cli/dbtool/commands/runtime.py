"""How every command runs: settings, event loop, database lifecycle and the error boundary.

Typer has no async commands (an `async def` command exits 0 without running), so each
command is a plain function that hands its coroutines to `Command.run`. A command is
one event loop (`asyncio.Runner`, the machinery behind `asyncio.run`), so a command can
ask the user something between two steps while the loop is idle (Ctrl-C then interrupts
the prompt as usual) and still use one engine, created inside that loop and always
disposed on the way out.

This module is imported at start-up: heavy imports stay inside functions.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import typer

from dbtool.errors import CancelledError, DbtoolError, ExitCode

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from dbtool.config import Settings
    from dbtool.db import Database, RetryCallback
    from dbtool.errors import DatabaseUnavailableError
    from dbtool.models.user_model import Models

T = TypeVar("T")


_gc_paused = False


def pause_gc() -> None:
    """Start a command without the cyclic garbage collector (`resume_gc` ends the pause).

    Start-up (Typer, SQLAlchemy, the driver, the models) makes a few hundred thousand
    long-lived objects and next to no cyclic garbage, yet the collector, which runs every
    700 allocations, went through them again and again: about a tenth of an everyday
    command's instructions (measured with callgrind on `dbtool ping`)."""
    global _gc_paused
    if gc.isenabled():
        gc.disable()
        _gc_paused = True


def resume_gc() -> None:
    """End the start-up pause, if any: the objects made so far are frozen (later collections
    pass them by, as they would have survived anyway) and the collector runs as usual."""
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()


class State(NamedTuple):
    """Root options, stored on the Typer context by the root callback."""

    url: str | None = None
    env_file: Path | None = None
    debug: bool = False
    models: str | None = None


class Command:
    """The context of one command run: `with Command(ctx) as cmd: ...`.

    On the way out it disposes the engine, closes the loop, and turns any exception into
    a one-line message on stderr and the documented exit code (a traceback only with
    --debug).
    """

    def __init__(self, ctx: typer.Context) -> None:
        import asyncio  # not at module level: `dbtool --help` must not pay for it

        obj = ctx.find_root().obj
        self.state = obj if isinstance(obj, State) else State()
        self._runner = asyncio.Runner()
        self._settings: Settings | None = None
        self._db: Database | None = None
        # --wait: how long every step on the database may wait for it (`attempt`).
        from dbtool.commands.options import WAIT_KEY

        self.wait = float(ctx.meta.get(WAIT_KEY, 0.0))
        self._writes = False

    def __enter__(self) -> Command:
        return self

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from dataclasses import replace

            from dbtool.config import DEFAULT_APPLICATION_NAME, load_settings

            settings = load_settings(
                url=self.state.url,
                env_file=self.state.env_file,
                options={"DBTOOL_MODELS": self.state.models},
            )
            if settings.application_name is None:
                settings = replace(settings, application_name=DEFAULT_APPLICATION_NAME)
            self._settings = settings
            if settings.log_format != "text" and settings.sources.get("DBTOOL_LOG_FORMAT"):
                from dbtool.render import console as output

                output.set_log_format(settings.log_format)
            if settings.warnings:
                from dbtool.render import console as output

                for warning in settings.warnings:
                    output.warning(warning)
            if self._settings.echo:
                _log_sql_to_stderr()
        return self._settings

    @property
    def models(self) -> Models:
        """The models the command works on (importing the application's, if configured)."""
        if self._db is not None:
            return self._db.models
        from dbtool.models.user_model import load_models

        settings = self.settings
        return load_models(settings.models, settings.user_model, settings.user_fields)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run one step of the command in the command's event loop. The first step
        (connecting: the driver and dialect are imported by then) ends start-up."""
        try:
            return self._runner.run(coroutine)
        finally:
            resume_gc()

    def database(
        self,
        *,
        must_exist: bool = True,
        wait: float = 0.0,
        write: bool = False,
        models: bool = True,
        verify: bool = True,
    ) -> Database:
        """Connect (retrying for up to `wait` seconds); disposed when the command ends.
        `write`: the command changes the database, so a read-only standby is refused here,
        before anything is done or shown (or, with `wait`, waited on until promoted).
        `models`: the command works on the models, so they are imported first (False for
        commands that only look at the server). `verify`: prove the connection now (False:
        at the first step, which may want a deadline of its own)."""
        from dbtool.db import Database

        self.wait = wait = max(self.wait, wait)
        self._writes = self._writes or write
        if self._db is not None:
            return self._db
        settings = self.settings
        if models:
            # Before connecting and outside the event loop: the application's modules may
            # take a while to import, and in there the first Ctrl-C or SIGTERM must stop
            # the command at once (inside the loop, asyncio only cancels the running step,
            # which happens when the import is over), with no database file created yet.
            self.models  # noqa: B018 (imported and cached for the Database)
        self._db = Database(settings, must_exist=must_exist)
        with waiting(settings.masked_url, wait) as on_retry:
            self.run(self._db.connect(wait=wait, on_retry=on_retry, verify=verify))
            if write:
                self.run(self._db.require_primary(wait=wait, on_retry=on_retry))
        return self._db

    def close_database(self) -> None:
        """Dispose of the command's database (its connections closed); `database()` then
        connects again."""
        if self._db is not None:
            db, self._db = self._db, None
            self._runner.run(db.dispose())

    def forget_connections(self) -> None:
        """Let go of the pooled connections (after the database went away: a refresh of
        --watch then reaches whichever host serves now)."""
        if self._db is not None and self._db.connected:
            self._runner.run(self._db.engine.dispose())

    def note_standby(self) -> None:
        """Say so when reading from a standby: what was just written may not show yet."""
        role = self.run(self.database().server_role())
        if role is not None and role.standby:
            from dbtool.render import console as output

            output.warning(
                f"reading from a {role.describe()}: recent changes may not show yet",
            )

    @property
    def db(self) -> Database:
        """The database `database()` connected."""
        if self._db is None:
            raise RuntimeError("call Command.database() first")
        return self._db

    def in_session(
        self,
        work: Callable[[AsyncSession], Awaitable[T]],
        *,
        readonly: bool = False,
        replayable: bool = True,
    ) -> T:
        """Run `work(session)` in one session of the command's database (commit on success),
        again if the database goes away meanwhile and --wait allows (`attempt`); `readonly`
        for work that only reads (on SQLite it then never waits for a writer)."""
        db = self._db if self._db is not None else self.database()

        async def unit() -> T:
            async with db.session(readonly=readonly) as session:
                return await work(session)

        return self.attempt(unit, replayable=replayable)

    def attempt(self, step: Callable[[], Awaitable[T]], *, replayable: bool = True) -> T:
        """Run `step` (a coroutine function: one unit of work on the command's database)
        and, within --wait, again after reconnecting when the connection is lost or the
        primary moves (`Database.retrying`; `replayable`: running it twice leaves what
        running it once does). Each wait is said on stderr as it happens."""
        db = self._db if self._db is not None else self.database()
        with retry_notices(self.wait) as on_retry:
            return self.run(db.retrying(step, wait=self.wait, on_retry=on_retry,
                                        write=self._writes, replayable=replayable))  # fmt: skip

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._db is not None:
                self._runner.run(self._db.dispose())
        finally:
            self._runner.close()
        if exc is None or isinstance(exc, typer.Exit):
            return
        if self.state.debug:
            # The traceback as well as the line, and the same exit code as without --debug
            # (scripts branch on it). Python's own format never shows local variables.
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        code = report_error(exc, self._settings, whole=self.state.debug)
        raise typer.Exit(code) from None


# An error is one line of at most about this many characters; --debug shows all of it.
ERROR_LENGTH = 300


def one_line(message: str, *, whole: bool = False) -> str:
    """`message` as one line (line breaks from data or the driver folded), cut to about
    ERROR_LENGTH characters unless `whole`, saying how much was left out."""
    line = " ".join(message.split())
    if whole or len(line) <= ERROR_LENGTH:
        return line
    cut = line[:ERROR_LENGTH].rsplit(" ", 1)[0]
    return f"{cut} … ({len(line) - len(cut):,} more characters; --debug shows them)"


def report_error(exc: BaseException, settings: Settings | None, *, whole: bool = False) -> int:
    """Print `exc` as one line on stderr (all of it with `whole`); return the exit code."""
    import asyncio

    from dbtool.render import console as output

    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        exc = CancelledError("cancelled")
    if isinstance(exc, BrokenPipeError):  # `dbtool users export | head`: the reader left
        import os

        # Nothing more can reach stdout; point it at /dev/null so the final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.FAILED)
    if not isinstance(exc, DbtoolError) and settings is not None and "sqlalchemy" in sys.modules:
        from dbtool.backends.errors import translate_error

        exc = translate_error(exc, settings) or exc
    if isinstance(exc, DbtoolError):
        output.error(one_line(exc.message, whole=whole))
        return int(exc.exit_code)
    output.error(
        one_line(f"{describe_unexpected(exc)} (run with --debug for details)", whole=whole)
    )
    return int(ExitCode.FAILED)


def describe_unexpected(exc: BaseException) -> str:
    """One line for an exception dbtool has no specific message for, without SQL or data."""
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import CompileError, DBAPIError, SQLAlchemyError

        if isinstance(exc, DBAPIError):
            from dbtool.backends.errors import first_line

            return f"database error: {first_line(exc)}"
        if isinstance(exc, CompileError):  # what this database cannot do; names, no values
            return f"the models cannot be used on this database: {str(exc).splitlines()[0]}"
        if isinstance(exc, SQLAlchemyError):
            return f"database error: {type(exc).__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"unexpected error: {type(exc).__name__}: {exc}"


@contextmanager
def waiting(target: str, wait: float) -> Iterator[RetryCallback | None]:
    """While connecting with --wait: a spinner on a terminal, an occasional line otherwise.
    The line says why first (the URL is already in it once), and fits the terminal."""
    if wait <= 0:
        yield None
        return
    from dbtool.render import console as output

    console = output.err_console()
    if output.stderr_is_terminal():
        width = console.width - 4  # the spinner and its space
        with console.status(fit(f"connecting to {target} …", width)) as status:

            def update(attempt: int, error: DatabaseUnavailableError, left: float) -> None:
                status.update(
                    fit(f"{why(error)}; retrying, {left:.0f}s left (Ctrl-C to stop)", width)
                )

            yield update
        return

    last_line = 0.0

    def log(attempt: int, error: DatabaseUnavailableError, left: float) -> None:
        nonlocal last_line
        if time.monotonic() - last_line >= 5:
            last_line = time.monotonic()
            output.note(f"{why(error)}; retrying, {left:.0f}s left")

    yield log


@contextmanager
def retry_notices(wait: float) -> Iterator[RetryCallback | None]:
    """While a step of work waits for the database to come back: a spinner on a terminal
    from the first retry on (nothing before: the step may draw its own progress), else a
    line at most every 5 seconds."""
    if wait <= 0:
        yield None
        return
    from dbtool.render import console as output

    console = output.err_console()
    if not output.stderr_is_terminal():
        with waiting("", wait) as log:
            yield log
        return
    width = console.width - 4
    status: Any = None

    def update(attempt: int, error: DatabaseUnavailableError, left: float) -> None:
        nonlocal status
        text = fit(f"{why(error)}; retrying, {left:.0f}s left (Ctrl-C to stop)", width)
        if status is None:
            status = console.status(text)
            status.start()
        status.update(text)

    try:
        yield update
    finally:
        if status is not None:
            status.stop()


def why(error: DbtoolError) -> str:
    """The reason in a connection error, without the `cannot connect to URL: ` before it."""
    prefix, separator, reason = error.message.partition(": ")
    return reason if separator and prefix.startswith("cannot connect to ") else error.message


def fit(text: str, width: int) -> str:
    """`text` cut to `width` characters, with "…" where it was cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _log_sql_to_stderr() -> None:
    import logging

    # SQLAlchemy's echo would add a stdout handler, mixing SQL into data output; a handler
    # already present on its logger stops that.
    logger = logging.getLogger("sqlalchemy.engine.Engine")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


def confirm_typed(expected: str, question: str) -> None:
    """Ask the user to type `expected`; anything else (or Ctrl-C/EOF) cancels (exit 130)."""
    from dbtool.render import console as output

    output.note(question)
    try:
        answer = typer.prompt(
            f"Type {expected!r} to confirm", default="", show_default=False, err=True
        )
    except (typer.Abort, EOFError, KeyboardInterrupt):
        raise CancelledError("cancelled, nothing was changed") from None
    if answer.strip() != expected:
        raise CancelledError("confirmation did not match, nothing was changed")


def confirm_yes(question: str) -> None:
    """A y/N question; "no", Ctrl-C or EOF cancels (exit 130)."""
    try:
        agreed = typer.confirm(question, default=False, err=True)
    except (typer.Abort, EOFError, KeyboardInterrupt):
        agreed = False
    if not agreed:
        raise CancelledError("cancelled, nothing was changed")
