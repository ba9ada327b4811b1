"""What a SQLite URL names on disk, and sqlite3's errors as SQLAlchemy's: shared by the
backend and its export."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError


def _is_uri(url: URL) -> bool:
    """Whether SQLite reads the database part as a `file:` URI (SQLAlchemy's `?uri=true`)."""
    return str(url.query.get("uri", "")).strip().lower() in ("true", "1", "yes", "on")


def _uri_path(database: str) -> str | None:
    """The path of a `file:` URI as SQLite resolves it (`file:t.db`, `file:/abs/t.db`,
    `file:///abs/t.db`, `file://localhost/abs/t.db`, percent escapes decoded); None for a
    URI naming no file (`file::memory:`) or another host's."""
    if not database.startswith("file:"):
        return database
    rest = database[len("file:") :].split("?", 1)[0].split("#", 1)[0]
    if rest.startswith("//"):
        authority, _, rest = rest[2:].partition("/")
        if authority not in ("", "localhost"):
            return None
        rest = "/" + rest
    path = unquote(rest)
    return None if path in ("", ":memory:") else path


def in_memory(url: URL) -> bool:
    """A database that lives in this process only (no file)."""
    if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
        return True
    if url.query.get("vfs") == "memdb":
        return True
    return _is_uri(url) and _uri_path(url.database or "") is None


def database_file(url: URL) -> Path | None:
    """The file behind the URL, whatever its form (a path, relative or not, or a `file:`
    URI with `?uri=true`), or None for an in-memory database. The one rule for "is this
    path the database?": every file dbtool writes is compared with this one (resolved,
    so a symlink or a relative spelling of it is still it)."""
    if in_memory(url):
        return None
    database = url.database or ""
    path = _uri_path(database) if _is_uri(url) else database
    return None if path is None else Path(path)


def create_private_file(path: Path) -> None:
    """An empty database file (a valid SQLite database) with mode 0600, unless it exists."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def sqlite_error(statement: str, exc: Exception) -> Exception:
    """An error of Python's sqlite3 module, raised where SQLAlchemy is bypassed, as the
    SQLAlchemy error it would have raised (IntegrityError, OperationalError, ...), so that
    it is reported as any other; parameters hidden."""
    return DBAPIError.instance(statement, None, exc, sqlite3.Error, hide_parameters=True)
