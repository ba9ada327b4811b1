"""Database exceptions turned into dbtool's one-line errors.

The driver's own exception is what carries the facts (SQLSTATE, constraint, detail), and
SQLAlchemy reaches it differently by version: 2.1 has `DBAPIError.driver_exception`, 2.0
only `orig` (asyncpg's exception is then its `__cause__`). `driver_error` hides that, so
nothing here depends on attributes only one version has.
"""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError

from dbtool.backends import backend_for
from dbtool.backends.base import ssl_reason
from dbtool.config import mask_url
from dbtool.errors import DatabaseUnavailableError, DbtoolError, SchemaMissingError

URL_LABEL = "DATABASE_URL"

if TYPE_CHECKING:
    from dbtool.backends.base import Backend
    from dbtool.config import Settings


class UnavailableError(DatabaseUnavailableError):
    """A connection failure, with whether waiting and retrying can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class LockNotGrantedError(DbtoolError):
    """A lock dbtool asked for by name (MySQL's GET_LOCK) was not granted within
    DBTOOL_LOCK_TIMEOUT: schema changes report it as the lock timeout it is."""


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


def unique_violation_columns(exc: BaseException, backend: Backend) -> list[str] | None:
    """The columns of the unique constraint `exc` violated (an empty list when the
    database does not say), or None if it is not one. Read from the error's text, as
    applications' models rarely name their constraints."""
    if not isinstance(exc, DBAPIError):
        return None
    return backend.unique_violation_columns(driver_error(exc))


def connection_error(exc: BaseException, settings: Settings) -> UnavailableError | None:
    """Translate a failure to connect into a one-line, password-free error; None if `exc`
    is not a connection failure."""
    if isinstance(exc, UnavailableError):
        return exc
    backend = backend_for(settings.url)
    cause = driver_error(exc)
    url = settings.url
    target = f"cannot connect to {mask_url(url)}"
    own = backend.connection_error(exc, cause, target, settings)
    if own is not None:
        return own
    if isinstance(cause, socket.gaierror):
        return UnavailableError(f"{target}: unknown host {url.host!r}", retryable=True)
    if isinstance(cause, ConnectionRefusedError):
        hosts = backend.hosts(url)
        where = f"on {hosts[0]}" if len(hosts) == 1 else f"on any of {', '.join(hosts)}"
        return UnavailableError(
            f"{target}: connection refused (is the server running {where}?)", retryable=True
        )
    if isinstance(cause, TimeoutError):
        return UnavailableError(
            f"{target}: timed out after {settings.connect_timeout:g}s", retryable=True
        )
    if isinstance(cause, ssl.SSLError):
        return UnavailableError(f"{target}: SSL error: {ssl_reason(cause)}", retryable=False)
    if isinstance(cause, (ConnectionError, OSError)) and not isinstance(exc, DBAPIError):
        return UnavailableError(f"{target}: {cause}", retryable=True)
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return UnavailableError(f"{target}: the connection was lost", retryable=True)
    return None


def translate_error(exc: BaseException, settings: Settings) -> DbtoolError | None:
    """The domain error for a database exception dbtool understands, else None."""
    if isinstance(exc, DbtoolError):
        return exc
    lost = connection_error(exc, settings)
    if lost is not None:
        return lost
    backend = backend_for(settings.url)
    own = backend.translate_error(exc, settings)
    if own is not None:
        return own  # type: ignore[no-any-return]
    if isinstance(exc, DBAPIError):
        cause = driver_error(exc)
        if backend.is_missing_table(cause):
            return SchemaMissingError(
                "the tables do not exist in this database; run `dbtool init` first"
            )
        if backend.is_missing_column(cause):
            return SchemaMissingError(
                f"the table does not have the columns the models describe ({first_line(exc)}); "
                "`dbtool info` lists the differences"
            )
    return None


def first_line(exc: BaseException) -> str:
    """The driver's message, first line only: no SQL, no parameters."""
    lines = str(driver_error(exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
