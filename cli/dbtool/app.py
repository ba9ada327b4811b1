"""The `dbtool` command line: Typer wiring only.

Each command parses its arguments, calls the library through `Command`, and renders the
result. Library modules (and SQLAlchemy, drivers, hashing) are imported inside the
commands, so `dbtool --help`, `--version` and shell completion stay fast.
"""

import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

# Typer vendors Click (typer >= 0.26) and re-exports only some of its exceptions.
from typer._click import exceptions as click_exceptions
from typer.core import TyperGroup

from dbtool import __version__
from dbtool.commands.options import (
    flag,
)
from dbtool.commands.runtime import State, pause_gc, resume_gc

if TYPE_CHECKING:
    pass


class RootGroup(TyperGroup):
    """The root command, whose commands come from the registry (`dbtool.commands`): a
    command's module is imported only when it is listed or run, so `dbtool ping` builds
    neither `users` and its nine subcommands nor the schema commands."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        from dbtool.commands import COMMANDS

        return list(COMMANDS)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        if cmd_name not in self.commands:
            from dbtool.commands import load_command

            command = load_command(cmd_name, rich_markup_mode="rich", pretty_exceptions_short=True)
            if command is None:
                return None
            self.commands[cmd_name] = command
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
            _apply_log_format(_option_value(arguments, "--log-format"))
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
GLOBAL_VALUE_OPTIONS = ("--url", "--env-file", "--models", "--log-format")
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
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            metavar="text|json",
            help="How messages on stderr are written: text, or one JSON object per line "
            "(time, level, message) for log collectors (default: DBTOOL_LOG_FORMAT, else text).",
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
    database, 4 conflict, 5 refused, 6 wrong role and 7 lagging (`ping --require`,
    `--max-lag`), 130 cancelled.
    """
    _apply_log_format(log_format)
    if url is not None and _URL_WITH_PASSWORD.match(url):
        from dbtool.render import console as output

        output.warning(
            "the password in --url is visible to other users of this machine (ps, /proc); "
            "put the URL in DATABASE_URL or .env instead"
        )
    ctx.obj = State(url=url, env_file=env_file, debug=debug, models=models)


def _option_value(arguments: list[str], name: str) -> str | None:
    """A root option's value from argv before Click parses it (messages of a usage error
    Click raises are written in the chosen format too)."""
    for index, argument in enumerate(arguments):
        if argument == "--":
            break
        if argument == name and index + 1 < len(arguments):
            return arguments[index + 1]
        if argument.startswith(name + "="):
            return argument.partition("=")[2]
    return None


def _apply_log_format(option: str | None) -> None:
    """--log-format, else DBTOOL_LOG_FORMAT from the environment: set before anything is
    said (a .env file's value applies once the settings are read)."""
    import os

    from dbtool.formats import parse_log_format
    from dbtool.render import console as output

    raw = option if option is not None else os.environ.get("DBTOOL_LOG_FORMAT") or None
    output.set_log_format("text")  # each run starts from text (and says a bad value so)
    if raw is None:
        return
    try:
        output.set_log_format(parse_log_format(raw))
    except ValueError as exc:
        name = "--log-format" if option is not None else "DBTOOL_LOG_FORMAT"
        raise click_exceptions.UsageError(f"{name} {raw!r}: {exc}") from None


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
