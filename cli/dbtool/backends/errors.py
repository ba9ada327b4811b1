"""Database exceptions turned into dbtool's one-line errors.

The driver's own exception is what carries the facts (SQLSTATE, constraint, detail), and
SQLAlchemy reaches it differently by version: 2.1 has `DBAPIError.driver_exception`, 2.0
only `orig` (asyncpg's exception is then its `__cause__`). `driver_error` hides that, so
nothing here depends on attributes only one version has.
"""

from __future__ import annotations

import re
import socket
import ssl
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError

from dbtool.config import mask_url, url_hosts
from dbtool.errors import (
    ConfigError,
    DatabaseUnavailableError,
    DbtoolError,
    RefusedError,
    SchemaMissingError,
)

URL_LABEL = "DATABASE_URL"

if TYPE_CHECKING:
    from dbtool.config import Settings


class UnavailableError(DatabaseUnavailableError):
    """A connection failure, with whether waiting and retrying can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def driver_error(exc: BaseException) -> BaseException:
    """The driver's exception behind `exc` (asyncpg's or sqlite3's), or `exc` itself."""
    if not isinstance(exc, DBAPIError):
        return exc
    orig: Any = exc.orig
    cause = getattr(orig, "__cause__", None)
    if cause is not None and type(cause).__module__.startswith("asyncpg"):
        return cause  # type: ignore[no-any-return]
    return orig if isinstance(orig, BaseException) else exc


def sqlstate(exc: BaseException) -> str | None:
    code = getattr(driver_error(exc), "sqlstate", None)
    return code if isinstance(code, str) else None


_PG_KEY = re.compile(r"Key \((?P<columns>.+?)\)=")


def unique_violation_columns(exc: BaseException) -> list[str] | None:
    """The columns of the unique constraint `exc` violated, or None if it is not one.

    PostgreSQL says `Key (email)=(...) already exists.` in the error's detail; SQLite says
    `UNIQUE constraint failed: users.email, users.x`. Neither needs the constraint's name,
    which applications' models rarely set.
    """
    cause = driver_error(exc)
    if sqlstate(exc) == "23505":
        found = _PG_KEY.search(str(getattr(cause, "detail", "") or ""))
        return [name.strip().strip('"') for name in found["columns"].split(",")] if found else []
    if getattr(cause, "sqlite_errorname", "") in (
        "SQLITE_CONSTRAINT_UNIQUE",
        "SQLITE_CONSTRAINT_PRIMARYKEY",
    ):
        listed = str(cause).partition(":")[2]
        return [part.strip().rpartition(".")[2] for part in listed.split(",") if part.strip()]
    return None


_AUTH_FAILED = ("28P01", "28000")
# duplicate_prepared_statement, invalid_sql_statement_name: prepared statements that meet
# another client's, or are gone, as they do through PgBouncer in transaction mode.
_PREPARED_STATEMENT_SQLSTATES = ("42P05", "26000")
# connection_exception (08xxx) and the server ending the session (admin_shutdown, crash).
_LOST_SQLSTATES = ("08000", "08003", "08006", "57P01", "57P02")
_RETRYABLE_SQLSTATES = {
    "57P03": "the server is starting up",
    "53300": "the server has too many connections",
}


def connection_error(exc: BaseException, settings: Settings) -> UnavailableError | None:
    """Translate a failure to connect into a one-line, password-free error; None if `exc`
    is not a connection failure."""
    if isinstance(exc, UnavailableError):
        return exc
    cause = driver_error(exc)
    url = settings.url
    target = f"cannot connect to {mask_url(url)}"
    code = getattr(cause, "sqlstate", None)
    if code in _AUTH_FAILED:
        return UnavailableError(
            f"{target}: authentication failed for user {url.username!r}", retryable=False
        )
    if code == "3D000":
        return UnavailableError(
            f"{target}: database {url.database!r} does not exist "
            "(`dbtool init --create-database` creates it)",
            retryable=False,
        )
    if code in _RETRYABLE_SQLSTATES:
        return UnavailableError(f"{target}: {_RETRYABLE_SQLSTATES[code]}", retryable=True)
    if isinstance(cause, socket.gaierror):
        return UnavailableError(f"{target}: unknown host {url.host!r}", retryable=True)
    hosts = url_hosts(url)
    if isinstance(cause, ConnectionRefusedError):
        where = f"on {hosts[0]}" if len(hosts) == 1 else f"on any of {', '.join(hosts)}"
        return UnavailableError(
            f"{target}: connection refused (is the server running {where}?)", retryable=True
        )
    if type(cause).__name__ == "TargetServerAttributeNotMatched":
        wanted = url.query.get("target_session_attrs", "any")
        return UnavailableError(
            f"{target}: none of {', '.join(hosts)} is {wanted} (a failover in progress?)",
            retryable=True,
        )
    if isinstance(cause, TimeoutError):
        return UnavailableError(
            f"{target}: timed out after {settings.connect_timeout:g}s", retryable=True
        )
    if isinstance(cause, ssl.SSLError):
        return UnavailableError(f"{target}: SSL error: {cause.reason}", retryable=False)

    if isinstance(cause, (ConnectionError, OSError)) and not isinstance(exc, DBAPIError):
        return UnavailableError(f"{target}: {cause}", retryable=True)
    if settings.backend == "sqlite" and "unable to open database file" in str(cause):
        return UnavailableError(f"{target}: unable to open the database file", retryable=False)
    if (
        code in _LOST_SQLSTATES
        or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
        # asyncpg used directly (COPY) raises its own InterfaceError for a dead connection.
        or (type(cause).__module__.startswith("asyncpg") and "connection is closed" in str(cause))
    ):
        return UnavailableError(f"{target}: the connection was lost", retryable=True)
    return None


def translate_error(exc: BaseException, settings: Settings) -> DbtoolError | None:
    """The domain error for a database exception dbtool understands, else None."""
    if isinstance(exc, DbtoolError):
        return exc
    lost = connection_error(exc, settings)
    if lost is not None:
        return lost
    code = sqlstate(exc)
    if code in _PREPARED_STATEMENT_SQLSTATES:
        return ConfigError(
            f"{first_line(exc)}: this looks like PgBouncer in transaction mode; set "
            "DBTOOL_PGBOUNCER=true (or add ?prepared_statement_cache_size=0 to the URL)"
        )
    if code == "25006":  # read_only_sql_transaction: a write reached a standby
        return RefusedError(
            f"{mask_url(settings.url)} is a read-only standby: {first_line(exc)}; point "
            "DATABASE_URL at the primary, or use target_session_attrs=read-write"
        )
    if "root certificate file" in str(driver_error(exc)):
        # asyncpg wants the server's CA certificate for sslmode=verify-ca/verify-full.
        return ConfigError(
            f"{URL_LABEL} asks to verify the server's certificate (sslmode=verify-ca or "
            f"verify-full), but {first_line(exc)}; give the CA certificate with "
            "sslrootcert=PATH in the URL, or use sslmode=require"
        )
    if isinstance(exc, DBAPIError):
        cause = driver_error(exc)
        if sqlstate(exc) == "42P01" or str(cause).startswith("no such table"):
            return SchemaMissingError(
                "the tables do not exist in this database; run `dbtool init` first"
            )
        if sqlstate(exc) == "42703" or str(cause).startswith("no such column"):
            return SchemaMissingError(
                f"the table does not have the columns the models describe ({first_line(exc)}); "
                "`dbtool info` lists the differences"
            )
    return None


def first_line(exc: BaseException) -> str:
    """The driver's message, first line only: no SQL, no parameters."""
    lines = str(driver_error(exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
