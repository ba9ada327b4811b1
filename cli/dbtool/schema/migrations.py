"""Alembic projects: finding one, reading its revisions, and running its migrations under
dbtool's schema lock, so that concurrent `dbtool init` runs apply each migration once.

Alembic is imported only here, and this module only by the commands that need it.

The migrations run through the project's own env.py (in a worker thread, where it may start
its own event loop), with `sqlalchemy.url` set to dbtool's URL. While they run, dbtool holds
its lock on another connection: PostgreSQL's transaction-scoped advisory lock, or on SQLite
an exclusive `flock` on the database file (SQLite's own locks are fcntl locks, which this
does not touch, so the migration's connection can still write).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbtool.config import Settings
from dbtool.db import Database
from dbtool.errors import ConfigError, DbtoolError
from dbtool.schema.tables import bounded_waits

DEFAULT_CONFIG = "alembic.ini"
CONFIG_ENV = "DBTOOL_ALEMBIC_CONFIG"


class MigrationError(DbtoolError):
    """A migration (or Alembic itself) failed."""


def config_path(settings: Settings) -> Path | None:
    """The Alembic project's ini file: DBTOOL_ALEMBIC_CONFIG, else ./alembic.ini, else None."""
    if settings.alembic_config:
        path = Path(settings.alembic_config).expanduser()
        if not path.is_file():
            source = settings.sources.get(CONFIG_ENV, "setting")
            raise ConfigError(f"{CONFIG_ENV}={path} (from {source}): no such file")
        return path.resolve()
    found = Path.cwd() / DEFAULT_CONFIG
    return found if found.is_file() else None


def alembic_config(path: Path, settings: Settings) -> Any:
    """Alembic's Config for `path`, pointed at dbtool's database."""
    from alembic.config import Config

    config = Config(str(path))
    url = settings.url.render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ini interpolation
    return config


@dataclass(frozen=True)
class AlembicState:
    config: str
    current: list[str]
    heads: list[str]
    pending: list[str] = field(default_factory=list)  # oldest first

    @property
    def at_head(self) -> bool:
        return not self.pending and sorted(self.current) == sorted(self.heads)

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "current": self.current,
            "heads": self.heads,
            "pending": self.pending,
            "at_head": self.at_head,
        }

    def describe(self) -> str:
        current = ", ".join(self.current) or "no revision (empty)"
        if self.at_head:
            return f"at head ({current})"
        return (
            f"at {current}, behind head {', '.join(self.heads)}: {len(self.pending)} pending "
            f"({', '.join(self.pending)})"
        )


def _script(path: Path, settings: Settings) -> Any:
    from alembic.script import ScriptDirectory

    try:
        return ScriptDirectory.from_config(alembic_config(path, settings))
    except Exception as exc:  # a broken project: missing script_location, bad revision file
        raise ConfigError(
            f"the Alembic project {path} cannot be read: {_without_content(exc)}"
        ) from None


def _without_content(exc: Exception) -> str:
    """Why an Alembic project cannot be read, naming lines but quoting none of the file:
    the file may be anything (a .env with passwords, given by mistake)."""
    import configparser

    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"not an ini file (line {exc.lineno} comes before any [section] header)"
    if isinstance(exc, configparser.ParsingError):
        lines = ", ".join(str(number) for number, _ in exc.errors[:5])
        return f"not an ini file (line {lines} cannot be parsed)"
    if isinstance(exc, configparser.Error):
        section = getattr(exc, "section", None)
        where = f" in section [{section}]" if section else ""
        return f"{type(exc).__name__}{where} of the ini file"
    message = str(exc).strip().splitlines()
    return message[0] if message else type(exc).__name__


async def state(db: Database, path: Path) -> AlembicState:
    """Where the database is in the project's history."""
    from alembic.migration import MigrationContext

    script = _script(path, db.settings)
    heads = list(script.get_heads())
    async with db.reading() as conn:
        current = list(
            await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_heads())
        )
    pending = [
        revision.revision
        for revision in script.iterate_revisions(heads, current or "base")
        if revision.revision not in current
    ]
    return AlembicState(str(path), current, heads, pending[::-1])


async def _alembic(path: Path, settings: Settings, command: str, *args: Any) -> None:
    """Run an Alembic command (upgrade, stamp) in a worker thread."""
    from alembic import command as commands

    config = alembic_config(path, settings)
    try:
        await asyncio.to_thread(getattr(commands, command), config, *args)
    except DbtoolError:
        raise
    except Exception as exc:
        from dbtool.backends.errors import first_line

        raise MigrationError(
            f"alembic {command} failed: {type(exc).__name__}: {first_line(exc)}"
        ) from exc


async def upgrade(db: Database, path: Path) -> tuple[AlembicState, list[str]]:
    """Bring the database to head under dbtool's lock; (state after, revisions applied)."""
    async with bounded_waits(db), db.backend.schema_lock(db):
        before = await state(db, path)
        if not before.at_head:
            await _alembic(path, db.settings, "upgrade", "head")
        after = await state(db, path)
    return after, [revision for revision in before.pending if revision not in after.pending]


async def stamp_head(db: Database, path: Path) -> AlembicState:
    """Record head as applied (after creating the tables from the models)."""
    async with bounded_waits(db), db.backend.schema_lock(db):
        await _alembic(path, db.settings, "stamp", "head")
        return await state(db, path)


def upgrade_sql(path: Path, settings: Settings, current: list[str]) -> str:
    """The SQL `alembic upgrade head --sql` prints from the current revision (offline mode)."""
    import io

    from alembic import command as commands

    config = alembic_config(path, settings)
    config.output_buffer = io.StringIO()
    start = current[0] if len(current) == 1 else None
    try:
        commands.upgrade(config, f"{start}:head" if start else "head", sql=True)
    except Exception as exc:
        raise MigrationError(f"alembic upgrade --sql failed: {type(exc).__name__}: {exc}") from exc
    return str(config.output_buffer.getvalue())
