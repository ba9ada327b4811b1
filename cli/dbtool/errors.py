"""The errors dbtool's library raises, each carrying the exit code the CLI turns it into.

This module is imported on every command path (even `--help`), so it must stay free of
heavy imports.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes documented in the README; CI scripts rely on them."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNAVAILABLE = 3
    CONFLICT = 4
    REFUSED = 5
    WRONG_ROLE = 6
    LAGGING = 7
    CANCELLED = 130


class DbtoolError(Exception):
    """Base class: an expected failure with a one-line, secret-free message.

    `exit_code` is what the CLI exits with; `http_status` is what an application's error
    handler can answer with (README, "Use from your application").
    """

    exit_code: ExitCode = ExitCode.FAILED
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(DbtoolError):
    """A setting is missing, malformed or contradictory."""

    exit_code = ExitCode.USAGE


class UsageError(DbtoolError):
    """The command line or its input cannot be acted upon as given."""

    exit_code = ExitCode.USAGE
    http_status = 422


class FileError(DbtoolError):
    """A file dbtool reads or writes failed (not found, a directory, disk full)."""


class DatabaseUnavailableError(DbtoolError):
    """The database cannot be reached: refused, unknown host, bad credentials, missing, timeout."""

    exit_code = ExitCode.UNAVAILABLE
    http_status = 503


class CommitUncertainError(DatabaseUnavailableError):
    """The connection was lost while committing: the work may or may not have been saved,
    and running it again is not known to be safe (exit 3)."""


class WrongRoleError(DbtoolError):
    """`ping --require` reached a server of the other role (a standby, or a primary)."""

    exit_code = ExitCode.WRONG_ROLE
    http_status = 503


class LaggingError(DbtoolError):
    """`ping --max-lag`: the standby is further behind than allowed, or how far cannot be
    known (its WAL receiver is stopped)."""

    exit_code = ExitCode.LAGGING
    http_status = 503


class ConflictError(DbtoolError):
    """Something that must be unique already exists."""

    exit_code = ExitCode.CONFLICT
    http_status = 409


class RefusedError(DbtoolError):
    """A destructive action was not confirmed, or its target is protected."""

    exit_code = ExitCode.REFUSED
    http_status = 403


class CancelledError(DbtoolError):
    """The user said no, or pressed Ctrl-C."""

    exit_code = ExitCode.CANCELLED


class NotFoundError(DbtoolError):
    """The thing asked for does not exist."""

    http_status = 404


class SchemaMissingError(DbtoolError):
    """The tool's tables have not been created yet."""


class InvalidInputError(DbtoolError):
    """A value given on the command line (email, username, password) breaks the rules.

    `without_value` is the same message with the value left out: what an import's row
    error says, since a file's columns can be in the wrong order and put a password
    under any header."""

    exit_code = ExitCode.USAGE
    http_status = 422

    def __init__(self, message: str, *, without_value: str | None = None) -> None:
        super().__init__(message)
        self.without_value = message if without_value is None else without_value
