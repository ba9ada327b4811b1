"""Views that change while a command runs: the import's progress bar, pool-status
--watch. Plain lines where the output is not a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from dbtool.formats import Format
from dbtool.transfer.files import count_lines

T = TypeVar("T")


@contextmanager
def import_progress(
    path: str, fmt: Format, bytes_read: Callable[[], int]
) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr when it is a terminal; nothing otherwise. From a file: rows
    of the total, with a bar and ETA; from stdin, whose size nobody knows: rows and bytes."""
    from dbtool.render import console as output

    if not output.stderr_is_terminal():
        yield None
        return
    # A JSON document's lines are not its records: it shows bytes read, as stdin does.
    lines = None if fmt is Format.JSON else count_lines(path)
    total = None if lines is None else max(lines - (1 if fmt is Format.CSV else 0), 0)
    with row_progress(total, lambda: f" · {bytes_read() / 1e6:,.1f} MB read") as update:
        yield update


@contextmanager
def load_progress(files: list[tuple[str, Format]]) -> Iterator[Callable[[int], None] | None]:
    """`dbtool load`'s progress bar over all its files (rows of the total when every file's
    rows can be counted)."""
    from dbtool.render import console as output

    if not output.stderr_is_terminal():
        yield None
        return
    total: int | None = 0
    for path, fmt in files:
        lines = None if fmt is Format.JSON else count_lines(path)
        if lines is None or total is None:
            total = None
            continue
        total += max(lines - (1 if fmt is Format.CSV else 0), 0)
    with row_progress(total, lambda: "") as update:
        yield update


@contextmanager
def row_progress(
    total: int | None, unknown_total: Callable[[], str]
) -> Iterator[Callable[[int], None]]:
    """A transient bar of rows done on stderr: of `total` with an ETA, or rows and
    `unknown_total()`'s words when nobody knows the total."""
    from rich.progress import Progress

    from dbtool.render import console as output

    console = output.err_console()
    wide = console.width >= WIDE_PROGRESS

    def done(rows: int) -> str:
        if total is not None:
            return f"{rows:,} of {total:,} rows" if wide else f"{rows:,}/{total:,} rows"
        return f"{rows:,} rows{unknown_total()}"

    columns = progress_columns(console.width, known_total=total is not None)
    with Progress(*columns, console=console, transient=True) as progress:
        # The total shows from the start: the first batch can take a while (plain passwords
        # are hashed at about ten a second per core).
        task = progress.add_task("rows", total=total, done=done(0), rate="-")
        started = time.perf_counter()

        def update(rows: int) -> None:
            rate = rows / max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=rows, done=done(rows), rate=f"{rate:,.0f}")

        yield update


# From this many columns the progress line has room for the rate and the time so far.
WIDE_PROGRESS = 120


def progress_columns(width: int, *, known_total: bool) -> list[Any]:
    """The progress line's parts for a terminal `width` columns wide: rate and elapsed time
    only where they fit whole, and a bar that gives up its room first, so that no part is
    ever cut to "…" (a million rows of a million, and the ETA, fit in 80 columns)."""
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns: list[Any] = [TextColumn("importing")]
    if known_total:
        bar = None if width >= WIDE_PROGRESS else max(width - 64, 5)
        columns += [BarColumn(bar_width=bar), TextColumn("{task.percentage:>3.0f}%")]
    columns.append(TextColumn("{task.fields[done]}"))
    if width >= WIDE_PROGRESS:
        columns += [TextColumn("· {task.fields[rate]} rows/s · elapsed"), TimeElapsedColumn()]
    elif not known_total:  # no bar, no ETA: the rate says how it goes
        columns.append(TextColumn("· {task.fields[rate]} rows/s"))
    if known_total:
        columns += [TextColumn("· ETA"), TimeRemainingColumn()]
    return columns


def watch(
    collect: Callable[[], T],
    render: Callable[[T], None],
    interval: float,
    *,
    live: bool,
    view: Callable[[T, datetime, float, int], Any] | None = None,
    on_lost: Callable[[], None] | None = None,
) -> None:
    """Refresh until Ctrl-C (which ends the command normally, exit 0): `collect` a report,
    then `view(report, refreshed, interval, height)` it in place on a terminal (`live`),
    else `render` one after another (a pipe, --json).

    The database going away does not end it: the gap is shown (on the screen, or one line
    on stderr) and collecting goes on every `interval` (after `on_lost`, which lets go of
    dead connections) until it answers again; then how long it was gone is said."""
    import time

    from dbtool.errors import DatabaseUnavailableError
    from dbtool.render import console as output

    lost: tuple[float, datetime, str] | None = None  # since (monotonic, wall), why

    def step() -> T | None:
        nonlocal lost
        try:
            report = collect()
        except DatabaseUnavailableError as exc:
            if lost is None:
                lost = (time.monotonic(), datetime.now(), exc.message)
                if not screen_on:
                    output.warning(f"lost the database at {lost[1]:%H:%M:%S} ({exc.message}); "
                                   f"trying again every {interval:g}s")  # fmt: skip
            if on_lost is not None:
                on_lost()
            return None
        if lost is not None:
            gone = time.monotonic() - lost[0]
            output.note(f"the database is back after {gone:.1f}s (lost at {lost[1]:%H:%M:%S})")
            lost = None
        return report

    screen_on = live and view is not None and output.out_console().is_terminal
    try:
        if screen_on:
            from rich.live import Live
            from rich.text import Text

            console = output.out_console()
            with Live(console=console, auto_refresh=False, vertical_overflow="crop") as screen:
                while True:
                    report = step()
                    if report is not None:
                        shown = view(report, datetime.now(), interval, console.height)  # type: ignore[misc]
                    elif lost is not None:
                        gone = time.monotonic() - lost[0]
                        words = (f"lost the database at {lost[1]:%H:%M:%S}, {gone:.0f}s ago "
                                 f"({lost[2]}); trying again every {interval:g}s")  # fmt: skip
                        shown = Text(words, style="yellow")
                    screen.update(shown, refresh=True)
                    time.sleep(interval)
        else:  # a pipe or --json: one report (or JSON line) after another
            while True:
                report = step()
                if report is not None:
                    render(report)
                time.sleep(interval)
    except KeyboardInterrupt:
        output.note("stopped")
