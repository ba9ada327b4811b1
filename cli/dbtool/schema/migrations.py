"""Alembic projects: finding one, reading its revisions, and running its migrations under
dbtool's schema lock, so that concurrent `dbtool init` runs apply each migration once.

Alembic is imported only here, and this module only by the commands that need it.

The migrations run through the project's own env.py (in a worker thread, where it may start
its own event loop), with `sqlalchemy.url` set to dbtool's URL. While they run, dbtool holds
its lock on another connection: PostgreSQL's transaction-scoped advisory lock, or on SQLite
an exclusive `flock` on the database file (SQLite's own locks are fcntl locks, which this
does not touch, so the migration's connection can still write).

What an env.py does is its own business, so nothing it reports is taken on trust: after
the migrations, the database dbtool was pointed at is read again, and it must be at head
(in the version table the env.py really uses) with the models' tables there. The env.py
files met in real projects, each driven as it is:

- Alembic's async template: reads `sqlalchemy.url`, makes an async engine.
- Alembic's default (synchronous) template: makes a synchronous engine of the same URL;
  dbtool's async driver then runs inside a greenlet of an event loop of its own, which is
  how SQLAlchemy's async engine drives it too (no second driver to install).
- advanced-alchemy's template (litestar-fullstack): reads `config.db_url`, `config.engine`
  and `config.version_table_name` from advanced-alchemy's AlembicCommandConfig.
- An env.py that builds its own URL from the application's settings: detected by the
  connections it makes, and reported, since it may have migrated another database.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from dbtool.config import Settings, mask_url
from dbtool.db import Database
from dbtool.errors import ConfigError, DbtoolError
from dbtool.schema.tables import (
    VERSION_TABLE,
    VersionTable,
    bounded_waits,
    find_version_table,
    present_tables,
)
from dbtool.wording import agreeing

DEFAULT_CONFIG = "alembic.ini"
CONFIG_ENV = "DBTOOL_ALEMBIC_CONFIG"
VERSION_TABLE_ENV = "DBTOOL_ALEMBIC_VERSION_TABLE"
GUIDE = "docs/guides/alembic.md"


class MigrationError(DbtoolError):
    """A migration (or Alembic itself) failed, or did not bring the database to head."""


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


def alembic_config(path: Path, settings: Settings, *, run_env: bool = False) -> Any:
    """Alembic's Config for `path`, pointed at dbtool's database, its paths found from the
    current directory as Alembic finds them, else from the ini file's folder. `run_env`:
    the Config the project's env.py will be run with (for an env.py of advanced-alchemy's,
    its AlembicCommandConfig around an engine of dbtool's)."""
    from alembic.config import Config

    if run_env and _env_kind(path) == _ADVANCED_ALCHEMY:
        config = _advanced_alchemy_config(path, settings)
    else:
        config = Config(str(path))
    url = settings.url.render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ini interpolation
    for option, value in _located_paths(config, path).items():
        config.set_main_option(option, value.replace("%", "%%"))
    return config


def _located_paths(config: Any, ini: Path) -> dict[str, str]:
    """script_location and prepend_sys_path, where they are relative paths that do not
    exist from the current directory (Alembic's base) but do from the ini file's folder, or
    (advanced-alchemy's layout, the ini inside its scripts folder) that folder itself."""
    changed: dict[str, str] = {}
    location = config.get_main_option("script_location")
    relative = location and ":" not in location and not Path(location).is_absolute()
    if relative and not Path(location).is_dir():
        for candidate in (ini.parent / location, ini.parent):
            if (candidate / "env.py").is_file():
                changed["script_location"] = str(candidate.resolve())
                break
    prepend = config.get_main_option("prepend_sys_path")
    if prepend:
        separator = ":" if ":" in prepend else " "
        parts = [part for part in prepend.replace(",", " ").split(separator) if part.strip()]
        located = [
            str((ini.parent / part).resolve())
            if not Path(part).is_absolute()
            and not Path(part).exists()
            and (ini.parent / part).exists()
            else part
            for part in (p.strip() for p in parts)
        ]
        if located != parts:
            changed["prepend_sys_path"] = separator.join(located)
    return changed


_ADVANCED_ALCHEMY = "advanced-alchemy"


def _env_kind(path: Path) -> str:
    """ "advanced-alchemy" for an env.py that reads advanced-alchemy's config attributes,
    else "alembic" (every other env.py takes the plain Config)."""
    from alembic.config import Config

    location = Config(str(path)).get_main_option("script_location") or ""
    for folder in (Path(location), path.parent / location, path.parent):
        env = folder / "env.py"
        if env.is_file():
            try:
                text = env.read_text(encoding="utf-8", errors="replace")
            except OSError:
                return "alembic"
            return _ADVANCED_ALCHEMY if "config.db_url" in text else "alembic"
    return "alembic"


def _advanced_alchemy_config(path: Path, settings: Settings) -> Any:
    """advanced-alchemy's AlembicCommandConfig: its env.py takes the engine, the URL and
    the version table's name from it. The name lives in the application's settings, which
    dbtool cannot read, so it must be known: DBTOOL_ALEMBIC_VERSION_TABLE."""
    try:
        from advanced_alchemy.alembic.commands import AlembicCommandConfig
    except ImportError:
        raise ConfigError(
            f"{path}'s env.py is advanced-alchemy's (it reads config.db_url): install "
            "advanced-alchemy in this environment, as the application has it"
        ) from None
    if not settings.alembic_version_table:
        raise ConfigError(
            f"{path}'s env.py is advanced-alchemy's, which takes the version table's name "
            f"from the application's settings: set {VERSION_TABLE_ENV} to it (advanced-alchemy's "
            "default is alembic_versions; litestar-fullstack's is ddl_version)"
        )
    from sqlalchemy.pool import NullPool

    from dbtool.db import create_engine

    schema, _, name = settings.alembic_version_table.rpartition(".")
    # Made in the worker thread and used in the env.py's own event loop: no pool, so no
    # connection outlives that loop (the env.py disposes of it when done).
    engine = create_engine(settings, poolclass=NullPool)
    return AlembicCommandConfig(
        engine=engine,
        version_table_name=name,
        version_table_schema=schema or None,
        file_=str(path),
    )


@dataclass(frozen=True)
class AlembicState:
    config: str
    current: list[str]
    heads: list[str]
    pending: list[str] = field(default_factory=list)  # oldest first
    version_table: str = VERSION_TABLE

    @property
    def at_head(self) -> bool:
        return not self.pending and sorted(self.current) == sorted(self.heads)

    @property
    def has_revisions(self) -> bool:
        return bool(self.heads)

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "current": self.current,
            "heads": self.heads,
            "pending": self.pending,
            "at_head": self.at_head,
            "version_table": self.version_table,
        }

    def brief(self) -> str:
        """`at no revision (head 0003)`."""
        return f"at {', '.join(self.current) or 'no revision'} (head {', '.join(self.heads)})"

    def describe(self) -> str:
        if not self.heads:
            return "the project has no revisions yet"
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
        config = alembic_config(path, settings)
        return ScriptDirectory.from_config(config)
    except DbtoolError:
        raise
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


def has_revisions(path: Path, settings: Settings) -> bool:
    """Whether the project has any revision to migrate to."""
    return bool(_script(path, settings).get_heads())


async def state(db: Database, path: Path) -> AlembicState:
    """Where the database is in the project's history, read from the version table its
    env.py uses (DBTOOL_ALEMBIC_VERSION_TABLE, or the one found in the database)."""
    from alembic.migration import MigrationContext

    script = _script(path, db.settings)
    heads = list(script.get_heads())

    def read(sync: Any) -> tuple[VersionTable, list[str]]:
        version = find_version_table(sync, db.models, db.settings.alembic_version_table)
        context = MigrationContext.configure(sync, opts=version.alembic_opts())
        return version, list(context.get_current_heads())

    async with db.reading() as conn:
        version, current = await conn.run_sync(read)
    pending = [
        revision.revision
        for revision in script.iterate_revisions(heads, current or "base")
        if revision.revision not in current
    ]
    return AlembicState(str(path), current, heads, pending[::-1], version.fullname)


async def _alembic(db: Database, path: Path, command: str, *args: Any) -> list[URL]:
    """Run an Alembic command (upgrade, stamp) in a worker thread; the URLs of the
    databases the env.py connected to."""
    settings = db.settings

    def run() -> list[URL]:
        with _connections_made() as urls:
            _run_env(alembic_config(path, settings, run_env=True), command, *args)
        return urls

    try:
        return await asyncio.to_thread(run)
    except DbtoolError:
        raise
    except Exception as exc:
        from dbtool.backends.errors import first_line

        raise MigrationError(
            f"alembic {command} failed: {type(exc).__name__}: {first_line(exc)}"
        ) from exc


def _run_env(config: Any, command: str, *args: Any) -> None:
    """`alembic <command>` through the project's env.py. A synchronous env.py fails at its
    first connection with MissingGreenlet (it made a plain engine of dbtool's async URL),
    before anything ran: it then runs again inside a greenlet of an event loop of its own,
    where the async driver works synchronously."""
    from alembic import command as commands
    from sqlalchemy.exc import MissingGreenlet
    from sqlalchemy.util import greenlet_spawn

    function = getattr(commands, command)
    try:
        function(config, *args)
    except MissingGreenlet:
        asyncio.run(greenlet_spawn(function, config, *args))


@contextlib.contextmanager
def _connections_made() -> Iterator[list[URL]]:
    """The URLs of the engines that connect in this thread while the block runs: which
    database the project's env.py really used."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    thread = threading.get_ident()
    urls: list[URL] = []

    def record(connection: Any) -> None:
        if threading.get_ident() == thread and connection.engine.url not in urls:
            urls.append(connection.engine.url)

    event.listen(Engine, "engine_connect", record)
    try:
        yield urls
    finally:
        event.remove(Engine, "engine_connect", record)


async def upgrade(db: Database, path: Path) -> tuple[AlembicState, list[str]]:
    """Bring the database to head under dbtool's lock; (state after, revisions applied).
    MigrationError unless the database dbtool was pointed at is then at head with the
    models' tables there, whatever Alembic said."""
    async with bounded_waits(db), db.backend.schema_lock(db):
        before = await state(db, path)
        connected: list[URL] = []
        if not before.at_head:
            connected = await _alembic(db, path, "upgrade", "head")
        after = await state(db, path)
    if not after.at_head:
        raise _not_at_head(db, after, connected)
    await verify_tables(db, "the migrations ran to head")
    return after, [revision for revision in before.pending if revision not in after.pending]


def _not_at_head(db: Database, after: AlembicState, connected: list[URL]) -> MigrationError:
    """Why `alembic upgrade head` left dbtool's database behind head, in one line (its
    cause first: a long URL may cut the rest)."""
    target = mask_url(db.settings.url)
    where = f"{target} is still {after.brief()}"
    elsewhere = [url for url in connected if not _same_database(url, db.settings.url)]
    if elsewhere:
        return MigrationError(
            f"env.py ignores the URL dbtool passes (sqlalchemy.url) and builds its own: it "
            f"migrated {mask_url(elsewhere[0])}, and {where}; see {GUIDE}"
        )
    if not connected:
        return MigrationError(
            f"env.py ran no migration (it connected to no database), and {where}; see {GUIDE}"
        )
    return MigrationError(
        f"env.py records its revisions in another version table than {after.version_table} "
        f"(set {VERSION_TABLE_ENV} to it): after alembic upgrade head, {where}; see {GUIDE}"
    )


def _same_database(a: URL, b: URL) -> bool:
    """Whether two URLs name the same database (the same server and database name, or the
    same file), whatever their drivers."""
    from dbtool.backends import UnsupportedBackendError, backend_for

    try:
        backend = backend_for(a)
        if backend is not backend_for(b):
            return False
    except UnsupportedBackendError:
        return False
    if backend.embedded:
        files = backend.database_file(a), backend.database_file(b)
        return None not in files and files[0].resolve() == files[1].resolve()  # type: ignore[union-attr]
    return (a.database or "") == (b.database or "") and _hosts(backend, a) == _hosts(backend, b)


def _hosts(backend: Any, url: URL) -> set[str]:
    local = {"localhost", "127.0.0.1", "::1", "[::1]"}
    return {
        "localhost" + host[host.rfind(":") :] if host.rsplit(":", 1)[0] in local else host
        for host in backend.hosts(url)
    }


async def verify_tables(db: Database, after: str) -> None:
    """MigrationError when a table of the models is missing from the database (the
    migrations do not create it, or made another database)."""
    present = set(await present_tables(db))
    missing = [table.fullname for table in db.models.tables if table.fullname not in present]
    if missing:
        raise MigrationError(
            f"{after}, but the models' {agreeing(len(missing), 'table', 'tables')} "
            f"{', '.join(missing)} {agreeing(len(missing), 'does', 'do')} not exist in "
            f"{db.settings.masked_url}: the migrations do not create them (add a migration: "
            "alembic revision --autogenerate), or DBTOOL_MODELS names other models than "
            "env.py's target_metadata"
        )


async def stamp_head(db: Database, path: Path) -> AlembicState:
    """Record head as applied (after creating the tables from the models)."""
    async with bounded_waits(db), db.backend.schema_lock(db):
        connected = await _alembic(db, path, "stamp", "head")
        after = await state(db, path)
    if not after.at_head:
        raise _not_at_head(db, after, connected)
    return after


def upgrade_sql(path: Path, settings: Settings, current: list[str]) -> str:
    """The SQL `alembic upgrade head --sql` prints from the current revision (offline mode)."""
    import io

    from alembic import command as commands

    config = alembic_config(path, settings, run_env=True)
    config.output_buffer = io.StringIO()
    start = current[0] if len(current) == 1 else None
    try:
        commands.upgrade(config, f"{start}:head" if start else "head", sql=True)
    except Exception as exc:
        raise MigrationError(f"alembic upgrade --sql failed: {type(exc).__name__}: {exc}") from exc
    return str(config.output_buffer.getvalue())
