"""A SQLite export rendered by two readers, a chunk each in turn.

SQLite renders the lines of a fast export (`dbtool.transfer.exporting`), which takes one core
for about 2.5 seconds per million rows. Two threads of one process do not share that work: SQLite's
allocator takes one global lock for every allocation, and two threads were slower than one.
Two processes do share it, so `users export` reads every other chunk of rows through this
module run as a script (`python -I cli/sqlite_chunks.py`, standard library only), and the
rest itself. Both render chunks with one `group_concat` each: SQLite builds a whole chunk in
one step, without the GIL, and hands it over as one bytes object.

The protocol: the plan arrives on stdin as one JSON line, then the rowids this reader checks
(JSON: [low, high], or null for none); frames go to stdout, each a header
`struct.pack("!qQ", count, length)` and `length` bytes. A count of READY says the reader has
its snapshot, CHECKED (payload b"0" or b"1") whether its half of the rows holds irregular
values; a count >= 0 is a rendered chunk of that many rows. On an error the reader writes one
line to stderr and exits 1.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

HEADER = struct.Struct("!qQ")
READY, CHECKED = -1, -2


@dataclass(frozen=True)
class Statement:
    """SQL with positional arguments; the values given on each use go to `positions`."""

    sql: str
    arguments: list[Any]
    positions: list[int]

    def run(self, db: sqlite3.Connection, values: tuple[Any, ...] = ()) -> Any:
        arguments = list(self.arguments)
        for position, value in zip(self.positions, values, strict=True):
            arguments[position] = value
        return db.execute(self.sql, arguments).fetchone()


@dataclass(frozen=True)
class Plan:
    """What both readers run. `render_*` give (count, bytes) of the next `chunk` lines
    from the start or after a key (the list-order values of a row); `seek_*` give the key of
    the chunk's last row, or no row when the chunk is the last (fewer rows); `check` finds a
    row with a value the rendering would get wrong, among rowids low..high."""

    database: str
    chunk: int
    snapshot: Statement
    render_first: Statement
    render_next: Statement
    seek_first: Statement
    seek_next: Statement
    check: Statement
    check_whole: Statement

    def to_json(self) -> str:
        def plain(value: Any) -> Any:
            return value.__dict__ if isinstance(value, Statement) else value

        return json.dumps({name: plain(value) for name, value in self.__dict__.items()})

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw: dict[str, Any] = json.loads(text)
        fields: dict[str, Any] = {
            name: Statement(**value) if isinstance(value, dict) else value
            for name, value in raw.items()
        }
        return cls(**fields)


def file_uri(path: str, mode: str) -> str:
    """The SQLite URI of the file at `path`, opened in `mode` ("ro", "rw": never created)."""
    from pathlib import Path

    return f"{Path(path).absolute().as_uri()}?mode={mode}"


def connect(path: str) -> sqlite3.Connection:
    """A read-only connection in a read transaction (its snapshot: at its first read)."""
    db = sqlite3.connect(file_uri(path, "ro"), uri=True, isolation_level=None,
                         check_same_thread=False)  # fmt: skip
    db.execute("BEGIN")
    return db


class Reader:
    """Renders every other chunk, those whose number has its `parity`, and seeks past the
    rest, reading only the index that orders them."""

    def __init__(self, db: sqlite3.Connection, plan: Plan, parity: int) -> None:
        self.db, self.plan, self.parity = db, plan, parity

    def take_snapshot(self) -> None:
        self.plan.snapshot.run(self.db)

    def irregular(self, rowids: tuple[int, int] | None) -> bool:
        """Whether rowids low..high (None: the whole table) hold a value the rendering
        would get wrong."""
        if rowids is None:
            return self.plan.check_whole.run(self.db) is not None
        return self.plan.check.run(self.db, rowids) is not None

    def chunks(self) -> Iterator[tuple[int, bytes]]:
        """(rows, rendered bytes) of each of this reader's chunks, in order; the last one
        holds fewer than `chunk` rows (possibly none)."""
        plan, key, number = self.plan, None, 0
        while True:
            if number % 2 == self.parity:
                render = plan.render_first if key is None else plan.render_next
                count, rendered = render.run(self.db, key or ())
                yield count, rendered or b""
                if count < plan.chunk:
                    return
            seek = plan.seek_first if key is None else plan.seek_next
            key = seek.run(self.db, key or ())
            if key is None:  # that chunk was the last
                return
            number += 1


def write_frame(out: BinaryIO, count: int, payload: bytes) -> None:
    out.write(HEADER.pack(count, len(payload)))
    out.write(payload)
    out.flush()


def main() -> None:
    """The second reader, run as a script by `users export`."""
    out = sys.stdout.buffer
    try:
        plan = Plan.from_json(sys.stdin.readline())
        reader = Reader(connect(plan.database), plan, parity=1)
        reader.take_snapshot()
        write_frame(out, READY, b"ready")
        rowids = json.loads(sys.stdin.readline())  # the rows to check, or null: none
        irregular = rowids is not None and reader.irregular(tuple(rowids))
        write_frame(out, CHECKED, b"1" if irregular else b"0")
        for count, rendered in reader.chunks():
            write_frame(out, count, rendered)
    except BrokenPipeError:  # the export stopped reading: it has what it needs, or failed
        sys.exit(0)
    except (sqlite3.Error, OSError, ValueError) as exc:
        sys.stderr.write(f"{exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
