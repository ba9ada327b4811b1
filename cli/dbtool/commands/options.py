"""What every command shares: how its help reads, and the options several commands take,
each declared once."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer._click.types import StringParamType
from typer.core import TyperCommand

from dbtool.errors import UsageError

if TYPE_CHECKING:
    from dbtool.users.service import UserFilter


class HelpCommand(TyperCommand):
    """Every dbtool command: its usage line names arguments plainly (`EMAIL`, not Typer's
    `{EMAIL}`)."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [piece.strip("{}") for piece in super().collect_usage_pieces(ctx)]


class _Text(StringParamType):
    """Text arguments, without Typer's `<str>` in the help."""

    def get_metavar(self, param: Any, ctx: Any) -> str:
        return ""


TEXT = _Text()


def flag(*names: str, help: str) -> Any:
    """A boolean option (its default is not worth showing in the help)."""
    return typer.Option(*names, help=help, show_default=False)


def examples(*lines: str) -> str:
    """An Examples section for a command's help (its epilog)."""
    escaped = (line.replace("[", "\\[") for line in lines)
    return "[bold]Examples[/bold]\n\n" + "\n\n".join(f"  {line}" for line in escaped)


def reflow(doc: str | None) -> str:
    """A docstring as help text: each paragraph one line (Rich wraps it to the terminal),
    where the source's own line breaks would otherwise break sentences in the middle.
    Lines that start a list item or are indented keep their own line."""
    paragraphs = []
    for paragraph in inspect.cleandoc(doc or "").split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not line.startswith((" ", "-", "*")):
                lines[-1] += " " + line.strip()
            else:
                lines.append(line.rstrip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def register(app: typer.Typer, name: str, *example_lines: str) -> Callable[..., Any]:
    """`@app.command(name)` with dbtool's help: plain usage, sentences that wrap at any
    width, an Examples section."""

    def decorate(function: Callable[..., Any]) -> Any:
        return app.command(
            name, cls=HelpCommand, help=reflow(function.__doc__), epilog=examples(*example_lines)
        )(function)

    return decorate


def finite_seconds(value: float) -> float:
    """Option callback: a number of seconds, 0 or more, not NaN or infinite."""
    if not math.isfinite(value) or value < 0:
        raise typer.BadParameter(f"{value!r} is not a number of seconds (0 or more)")
    return value


def whole_number(low: int, high: int) -> Callable[[int], int]:
    """Option callback: a whole number from `low` to `high`."""

    def check(value: int) -> int:
        if not low <= value <= high:
            raise typer.BadParameter(f"{value} is not between {low} and {high:,}")
        return value

    return check


def at_least(low: float) -> Callable[[float], float]:
    """Option callback: a finite number of seconds of at least `low`."""

    def check(value: float) -> float:
        if finite_seconds(value) < low:
            raise typer.BadParameter(f"{value!r} is less than {low:g}")
        return value

    return check


def one_of(*choices: str) -> Callable[[str | None], str | None]:
    """Option callback: one of `choices` (or unset)."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def lag_limit(value: str | None) -> str | None:
    """Option callback: a lag such as 10s, 500ms, 2min, 16MB or 512kB."""
    from dbtool.diagnostics.server import parse_lag

    if value is not None:
        try:
            parse_lag(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


# The largest count an option takes (a PostgreSQL integer).
MAX_COUNT = 2**31 - 1


JsonOption = Annotated[bool, flag("--json", help="Print the result as JSON on stdout.")]
# Where --wait is kept for the command's `Command` (every step on the database waits).
WAIT_KEY = "dbtool.wait"


def _wait_seconds(ctx: typer.Context, value: float) -> float:
    seconds = finite_seconds(value)
    ctx.meta[WAIT_KEY] = seconds
    return seconds


WaitOption = Annotated[
    float,
    typer.Option(
        "--wait",
        metavar="SECONDS",
        callback=_wait_seconds,
        help="Wait up to SECONDS for the database: to accept connections (CI, right after "
        "the server starts), to have a primary again (a failover), and to finish a step a "
        "lost connection cut off (run again where that is safe).",
    ),
]
FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        metavar="FORMAT",
        callback=one_of("table", "json", "openmetrics"),
        help="table, json (as --json), or openmetrics: Prometheus' text format, for a "
        "node_exporter textfile collector or a scrape wrapper.",
    ),
]


def chosen_format(as_json: bool, chosen: str) -> str:
    """--json, or --format: the same choice said twice is fine, two choices are not."""
    if as_json and chosen not in ("table", "json"):
        from dbtool.errors import UsageError

        raise UsageError(f"choose one of --json and --format {chosen}")
    return "json" if as_json else chosen


def listen_address(value: str | None) -> str | None:
    """Option callback: HOST:PORT to serve /metrics on (a port of 1 to 65535)."""
    if value is None:
        return None
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9187)")
    return value


ListenOption = Annotated[
    str | None,
    typer.Option(
        "--listen",
        metavar="HOST:PORT",
        callback=listen_address,
        help="Serve the OpenMetrics text at http://HOST:PORT/metrics, read afresh at each "
        "scrape, until Ctrl-C (503 with the reason while the database does not answer).",
        show_default=False,
    ),
]
IntervalOption = Annotated[
    float,
    typer.Option(
        "--interval",
        metavar="SECONDS",
        callback=at_least(0.1),
        help="Refresh interval for --watch (at least 0.1).",
    ),
]
YesOption = Annotated[bool, flag("--yes", "-y", help="Do not ask for confirmation.")]


# --- users: which users a command selects (users list, users export) ----------------------

ActiveOption = Annotated[bool, flag("--active", help="Only active users.")]


InactiveOption = Annotated[bool, flag("--inactive", help="Only inactive users.")]


SuperuserFilterOption = Annotated[bool, flag("--superuser", help="Only superusers.")]


NoPasswordOption = Annotated[
    bool,
    flag(
        "--no-password",
        help="Only users without a usable password (imported without one: they cannot log "
        "in until set-password).",
    ),
]


def either(yes: bool, no: bool, names: str) -> bool | None:
    """A pair of opposite flags: True, False, or None for neither; both is a usage error
    (rather than the last one silently winning)."""
    if yes and no:
        raise UsageError(f"choose one of {names}")
    return True if yes else False if no else None


SearchOption = Annotated[
    str | None,
    typer.Option(
        "--search",
        metavar="TEXT",
        help="Only users whose email or username contains TEXT (any case).",
        show_default=False,
    ),
]


def user_filter(
    *, active: bool, inactive: bool, superuser: bool, search: str | None, no_password: bool
) -> UserFilter:
    """The UserFilter of the selection options, checked (UsageError for opposites)."""
    from dbtool.users.service import UserFilter

    return UserFilter(
        active=either(active, inactive, "--active and --inactive"),
        superuser=superuser or None,
        search=search,
        usable_password=False if no_password else None,
    )
