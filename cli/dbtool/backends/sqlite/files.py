"""What a SQLite URL names on disk, and sqlite3's errors as SQLAlchemy's: shared by the
backend and its export."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError


def in_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def database_file(url: URL) -> Path | None:
    """The file behind the URL, or None for in-memory and URI-style databases."""
    if in_memory(url) or "uri" in url.query:
        return None
    return Path(url.database or "")


def sqlite_error(statement: str, exc: Exception) -> Exception:
    """An error of Python's sqlite3 module, raised where SQLAlchemy is bypassed, as the
    SQLAlchemy error it would have raised (IntegrityError, OperationalError, ...), so that
    it is reported as any other; parameters hidden."""
    return DBAPIError.instance(statement, None, exc, sqlite3.Error, hide_parameters=True)
