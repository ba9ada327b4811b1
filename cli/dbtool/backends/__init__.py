"""The backend seam: one module per database, found by its SQLAlchemy dialect name.

    backend = backend_for(settings.url)      # PostgreSQL(), SQLite()
    await backend.server_version(conn)

This module holds only the registry, so that reading settings (which checks the URL's
driver against `DRIVERS`) imports no backend; `backend_for` imports the one in use.
Adding a database: a module beside these with a `Backend` subclass, a line in `_BACKENDS`
and its URL schemes in `DRIVERS` (ARCHITECTURE.md).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from dbtool.backends.base import Backend

# Dialect name -> "module:class" of its backend.
_BACKENDS = {
    "postgresql": "dbtool.backends.postgresql:PostgreSQL",
    "sqlite": "dbtool.backends.sqlite:SQLite",
    "mysql": "dbtool.backends.mysql:MySQL",
    "mariadb": "dbtool.backends.mysql:MariaDB",
}

# The URL schemes dbtool accepts, and the async driver each one is run with.
DRIVERS = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "mysql": "mysql+asyncmy",
    "mysql+asyncmy": "mysql+asyncmy",
    "mysql+aiomysql": "mysql+aiomysql",
    "mysql+pymysql": "mysql+asyncmy",
    "mysql+mysqldb": "mysql+asyncmy",
    "mysql+mysqlconnector": "mysql+asyncmy",
    "mariadb": "mariadb+asyncmy",
    "mariadb+asyncmy": "mariadb+asyncmy",
    "mariadb+aiomysql": "mariadb+aiomysql",
    "mariadb+pymysql": "mariadb+asyncmy",
    "mariadb+mariadbconnector": "mariadb+asyncmy",
}

# For the "unsupported driver" error.
SUPPORTED = (
    "PostgreSQL (postgresql://, via asyncpg), MySQL and MariaDB (mysql://, mariadb://, via "
    "asyncmy or aiomysql) and SQLite (sqlite://, via aiosqlite)"
)


class UnsupportedBackendError(LookupError):
    """A dialect no backend module serves (never treated as another database)."""


@cache
def _backend(name: str) -> Backend:
    target = _BACKENDS.get(name)
    if target is None:
        raise UnsupportedBackendError(
            f"no dbtool backend for the {name!r} dialect; dbtool supports {SUPPORTED}"
        )
    module, _, attribute = target.partition(":")
    backend: Backend = getattr(importlib.import_module(module), attribute)()
    return backend


def backend_for(what: str | URL) -> Backend:
    """The backend for a dialect name ("postgresql") or a URL."""
    name = what if isinstance(what, str) else what.get_backend_name()
    return _backend(name)
