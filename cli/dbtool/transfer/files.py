"""The files an import reads and an export writes: inputs read once, as a stream; outputs
private (0600, they can hold password hashes) and replaced only when complete; write
failures reported as file errors, never as a lost connection."""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from dbtool.errors import DbtoolError, FileError
from dbtool.formats import Format


def count_lines(path: str) -> int | None:
    """Rows in a regular file (for the progress bar's total and ETA); None for anything
    that can be read only once (stdin, a pipe, a FIFO, `/dev/stdin`, a process
    substitution): counting would consume what the import is to read."""
    if path == "-":
        return None
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as stream:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))
    except OSError:
        return None  # the import itself says why it cannot read it


@contextmanager
def open_input(path: str) -> Iterator[tuple[IO[str], Callable[[], int]]]:
    """The import's input for the csv and json modules, and how many bytes were read so far.
    A BOM at the start is skipped, and invalid UTF-8 is kept (as surrogates) for the reader
    to report by line."""
    if path == "-":
        binary = getattr(sys.stdin, "buffer", None)
        if binary is None:  # a text-only stdin (some embedders): read as it is
            yield sys.stdin, lambda: 0
            return
    else:
        try:
            binary = open(path, "rb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise FileError(f"cannot read {path}: {exc.strerror or exc}") from None
    counted = _Counted(binary)
    text = io.TextIOWrapper(
        io.BufferedReader(counted), encoding="utf-8-sig", errors="surrogateescape", newline=""
    )
    try:
        yield text, lambda: counted.count
    finally:
        text.close()
        if path != "-":
            binary.close()


class GuardedStream:
    """A text stream whose write failures (disk full, ...) are a FileError naming the file
    (exit 1), not an OSError that could pass for a lost connection."""

    def __init__(self, stream: IO[str], name: str) -> None:
        self.stream, self.name = stream, name
        self.written = 0  # characters or bytes handed on: whether output has begun

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise FileError(f"cannot write {self.name}: {exc.strerror or exc}") from None

    def write(self, text: str) -> int:
        self.written += len(text)
        with self._guarded():
            return self.stream.write(text)

    def write_bytes(self, data: bytes) -> None:
        """UTF-8 text already encoded (COPY's output), written past the text layer where the
        stream has a binary one: decoding it only to encode it again would cost more than
        the rest of an export."""
        binary = getattr(self.stream, "buffer", None)
        if binary is None:
            self.write(data.decode("utf-8"))
            return
        self.flush()  # what was written as text goes first
        self.written += len(data)
        with self._guarded():
            binary.write(data)

    def flush(self) -> None:
        with self._guarded():
            self.stream.flush()

    # Where the stream is a file (`dump > file`): a step run again starts it over.
    def seekable(self) -> bool:
        try:
            return bool(self.stream.seekable())
        except (OSError, ValueError):
            return False

    def tell(self) -> int:
        self.flush()
        return self.stream.tell()

    def seek(self, position: int) -> None:
        self.flush()
        with self._guarded():
            self.stream.seek(position)

    def truncate(self) -> None:
        with self._guarded():
            self.stream.truncate()


class OutputStartedError(DbtoolError):
    """The database went away after part of the output was written where it cannot be
    taken back (standard output, a pipe): the command is not run again by itself."""


def from_the_start(stream: Any) -> Callable[[], None]:
    """A function that puts `stream` back as it is now, for a step run again after a lost
    connection: a file is cut back; output that cannot be taken back (stdout, a pipe), once
    begun, is OutputStartedError."""
    seekable = False
    try:
        seekable = bool(stream.seekable())
        start = stream.tell() if seekable else 0
    except (OSError, ValueError, AttributeError):
        seekable = False
    begun = getattr(stream, "written", 0)

    def rewind() -> None:
        if getattr(stream, "written", 0) == begun:
            return  # nothing written since (a first attempt): nothing to take back
        if seekable:
            stream.seek(start)
            stream.truncate()
        else:
            raise OutputStartedError(
                "the connection to the database was lost after part of the output was "
                "written: run the command again"
            )

    return rewind


def private_file(path: Path) -> IO[str]:
    """`path` opened for writing, readable by its owner only (0600): rejects and exports
    can hold password hashes."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # an existing file keeps its mode otherwise
    except OSError as exc:
        raise FileError(f"cannot write {path}: {exc.strerror or exc}") from None
    return os.fdopen(descriptor, "w", encoding="utf-8", newline="")


@contextmanager
def rejects_writer(
    path: Path | None, fmt: Format, fields: tuple[str, ...], plain: str
) -> Iterator[Callable[[Any], None] | None]:
    """Write rejected rows: line, reason, then the row with the plain password (the field
    named `plain`, whatever its place) and the value that failed redacted; a file with its
    columns in the wrong order puts a password under another header, where it fails. The
    file is opened (and an existing one replaced) only when the first rejected row comes:
    an import that stops before any, at the header say, leaves it as it was."""
    if path is None:
        yield None
        return
    import csv
    import json

    with ExitStack() as stack:
        opened: list[tuple[GuardedStream, Any]] = []

        def target() -> tuple[GuardedStream, Any]:
            if not opened:
                stream = stack.enter_context(written(private_file(path), str(path)))
                writer = csv.writer(stream, lineterminator="\n") if fmt is Format.CSV else None
                if writer is not None:
                    writer.writerow(["line", "reason", *fields])
                opened.append((stream, writer))
            return opened[0]

        def write(rejection: Any) -> None:
            stream, writer = target()
            hidden = {plain, rejection.field}
            row = {
                key: ("(redacted)" if key in hidden and value else value)
                for key, value in rejection.record.items()
                if key in fields
            }
            if writer is not None:
                values = [row.get(name) or "" for name in fields]
                writer.writerow([rejection.line, rejection.reason, *values])
            else:
                record = {"line": rejection.line, "reason": rejection.reason, **row}
                stream.write(json.dumps(record, ensure_ascii=False) + "\n")

        yield write


class _Counted(io.RawIOBase):
    """A binary stream that counts the bytes read through it (for the progress of stdin);
    closing it leaves the stream it reads from open.

    From a pipe or a terminal it returns what has arrived instead of waiting for a full
    buffer, and it waits for input in short slices: the import reads on the event loop's
    thread, where Ctrl-C only cancels the command's task, which a blocked read would never
    notice."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.count = raw, 0
        self.fd = _stream_fd(raw)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.fd is not None:
            _wait_for_input(self.fd)
        read = getattr(self.raw, "read1", self.raw.read)
        data = read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


def _stream_fd(raw: IO[bytes]) -> int | None:
    """The file descriptor of a pipe, terminal or socket; None for a regular file (always
    readable) or a stream without one."""
    import stat

    try:
        fd = raw.fileno()
        return None if stat.S_ISREG(os.fstat(fd).st_mode) else fd
    except (AttributeError, OSError, ValueError):
        return None


def _wait_for_input(fd: int) -> None:
    """Until `fd` has input or its end; CancelledError once the command is interrupted."""
    import asyncio
    import select

    while not select.select([fd], [], [], 0.2)[0]:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no event loop: nothing can cancel the read
            continue
        if task is not None and task.cancelling():
            raise asyncio.CancelledError


@contextmanager
def written(opened: IO[str], name: str) -> Iterator[GuardedStream]:
    """Write through a GuardedStream and close the file; a failure to write, flush or close
    is one FileError (the close after a failed write is not allowed to hide it)."""
    stream = GuardedStream(opened, name)
    try:
        yield stream
        stream.flush()
    except BaseException:
        with suppress(OSError):
            opened.close()
        raise
    try:
        opened.close()
    except OSError as exc:
        raise FileError(f"cannot write {name}: {exc.strerror or exc}") from None


@contextmanager
def replace_when_done(path: Path) -> Iterator[Any]:
    """Write to a temporary file beside `path`, renamed over it only on success: an
    interrupted export never leaves a half-written file in its place. The temporary file
    (mode 0600: it can hold hashes) is named `NAME.partial-XXXX`, visible to `ls`, so that
    one a SIGKILL left behind is seen and can be removed."""
    import tempfile

    if path.is_dir():
        raise FileError(f"cannot write {path}: it is a directory")
    if path.exists() and not path.is_file():
        # A device or a pipe (/dev/stdout, a FIFO): written in place; renaming a file over
        # it would replace the device node itself.
        try:
            opened = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise FileError(f"cannot write {path}: {exc.strerror or exc}") from None
        with written(opened, str(path)) as stream:
            yield stream
        return
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent or ".", prefix=f"{path.name}.partial-")
    except OSError as exc:
        raise FileError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with written(os.fdopen(handle, "w", encoding="utf-8", newline=""), str(path)) as stream:
            yield stream
        try:
            os.replace(temporary, path)
        except OSError as exc:
            raise FileError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
