"""What a backend implements: every way one database differs from another.

Feature code (schema, users, import/export, diagnostics) builds portable SQLAlchemy
statements and asks `db.backend` for anything that depends on the database: how to
connect, what the server is, how to lock, how to create a database, how to load and dump
rows fast, and what its errors mean. A method whose default here returns None (or False)
is an optional capability: feature code then takes its general path.

ARCHITECTURE.md lists what a new backend module must provide and how it is tested.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Protocol

from dbtool.errors import DbtoolError
from dbtool.formats import Format

# Execution option marking a transaction that only reads (SQLite: BEGIN DEFERRED).
READONLY = "dbtool_readonly"

if TYPE_CHECKING:
    from sqlalchemy import Column, Table
    from sqlalchemy.engine import URL, Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from dbtool.backends.errors import UnavailableError
    from dbtool.config import Settings
    from dbtool.db import Database, RetryCallback
    from dbtool.models.user_model import UserModel


@dataclass(frozen=True)
class ServerRole:
    """Which server a connection reached, whether it takes writes, and how far a standby
    is behind: WAL it knows of (received, or reported by its upstream) not yet replayed,
    and how long ago the first of it was written (0 when caught up, however idle)."""

    standby: bool  # in recovery: a hot standby, read-only
    host: str | None  # host:port actually reached (a multi-host URL names several)
    replay_lag_bytes: int | None = None
    replay_lag_seconds: float | None = None
    receiver: str | None = None  # a standby's WAL receiver: "streaming", "stopped", ...

    @property
    def name(self) -> str:
        return "standby" if self.standby else "primary"

    def describe(self) -> str:
        where = f" at {self.host}" if self.host else ""
        if not self.standby:
            return f"primary{where}"
        facts = []
        if self.receiver is not None:
            facts.append(f"WAL receiver {self.receiver}")
        if self.replay_lag_bytes is not None:
            facts.append(f"{self.replay_lag_bytes:,} bytes behind")
        if self.replay_lag_seconds is not None:
            facts.append(f"{self.replay_lag_seconds:g}s behind")
        if self.receiver == "stopped":
            facts.append("the primary's position is unknown from here: `dbtool cluster`")
        return f"read-only standby{where}" + (f" ({'; '.join(facts)})" if facts else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.name,
            "host": self.host,
            "receiver": self.receiver,
            "replay_lag_bytes": self.replay_lag_bytes,
            "replay_lag_seconds": self.replay_lag_seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerRole:
        return cls(
            standby=data.get("role") == "standby",
            host=data.get("host"),
            replay_lag_bytes=data.get("replay_lag_bytes"),
            replay_lag_seconds=data.get("replay_lag_seconds"),
            receiver=data.get("receiver"),
        )


@dataclass(frozen=True)
class ClusterMember:
    """One server of a replicated cluster as `dbtool cluster` shows it. `role`: primary,
    standby or unreachable (then `state` says why); lag in bytes behind the primary's
    current WAL position (`receive`: not yet received, `replay`: not yet replayed) and in
    seconds (0 once caught up)."""

    name: str  # Patroni's member name, else host:port
    host: str
    role: str
    state: str | None = None  # running, streaming, stopped (a standby's WAL receiver), ...
    timeline: int | None = None
    wal_position: int | None = None  # bytes: a primary's current, a standby's replayed
    receive_lag_bytes: int | None = None
    replay_lag_bytes: int | None = None
    replay_lag_seconds: float | None = None
    measured_against: str | None = None  # "primary", or "upstream" (none answered)
    upstream: str | None = None  # the host a standby streams from
    patroni_role: str | None = None
    patroni_state: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class ClusterView:
    """Every member `dbtool cluster` could find, read at `checked_at`."""

    members: list[ClusterMember]
    leader: str | None  # the one member that takes writes (None: none, or several)
    checked_at: datetime
    patroni: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked_at": self.checked_at.isoformat(),
            "leader": self.leader,
            "patroni": self.patroni,
            "members": [member.as_dict() for member in self.members],
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class ServerProcess:
    """One of the server's client connections (a PostgreSQL backend process)."""

    pid: int
    application_name: str
    state: str
    age_seconds: float


@dataclass(frozen=True)
class ServerConnections:
    """What the server sees of all its clients (pool-status's server side)."""

    database_name: str
    max_connections: int
    reserved_connections: int
    in_use: int
    by_application: list[dict[str, Any]]
    oldest_transaction: ServerProcess | None
    longest_idle_in_transaction: ServerProcess | None


@dataclass(frozen=True)
class ClientCommand:
    """How to open the database's own command-line client (`dbtool dbshell`): the first of
    `programs` installed, with `args` and `env`; secrets only in `env` or in files of the
    private folder the backend was given, never in `args`. `package`: what to install when
    none of the programs is."""

    programs: tuple[str, ...]
    package: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CsvSource:
    """A CSV file with a header line, for `copy_csv`: `columns` its header, `keep_empty` the
    columns where an empty field is the empty string (NOT NULL text), not NULL;
    `on_progress` is told the lines read so far."""

    path: Path
    columns: list[str]
    keep_empty: list[str]
    on_progress: Callable[[int], None] | None = None


class RowRejected(Exception):
    """A row the database's own parser refused (`copy_csv`): its line in the file, the
    column, and why (the value itself left out: it may be a secret)."""

    def __init__(self, line: int, column: str | None, reason: str) -> None:
        super().__init__(f"line {line}: {column or ''} {reason}")
        self.line, self.column, self.reason = line, column, reason


class IndexConflictError(DbtoolError):
    """A unique index could not be built again after the load (`drop_indexes_for_load`):
    the data repeats a value. The transaction is rolled back."""


class IndexRebuildError(DbtoolError):
    """An index came back different from what it was before the load: rolled back."""


class DroppedIndexes(Protocol):
    """The indexes `drop_indexes_for_load` dropped: how many, and how to build them again."""

    @property
    def count(self) -> int: ...

    async def rebuild(self) -> None: ...


@dataclass(frozen=True)
class ExportJob:
    """One export a backend may render itself: the rows `query` selects (already filtered
    by the feature), their `columns`, written to `stream` in `fmt`. `keys` selects the
    same rows' ordering key (`order`), for backends that read in chunks."""

    conn: AsyncConnection
    model: UserModel
    columns: list[Column[Any]]
    fmt: Format
    stream: IO[str]
    query: Callable[[list[Any]], Any]  # the SELECT of these values, filtered
    keys: Any  # SELECT of the ordering key of the selected rows
    order: list[Column[Any]]

    def write_csv_header(self) -> None:
        if self.fmt is Format.CSV:
            import csv

            names = [column.name for column in self.columns]
            csv.writer(self.stream, lineterminator="\n").writerow(names)


class Backend:
    """The interface, with the behaviour shared by most databases as defaults."""

    name: ClassVar[str]  # SQLAlchemy's dialect name: "postgresql"
    product: ClassVar[str]  # as shown to people: "PostgreSQL"
    embedded: ClassVar[bool] = False  # a file in this process, no server (SQLite)
    # DEFERRABLE foreign keys wait for the commit (defer_constraints): a load of tables
    # that reference each other can then insert them one after the other.
    defers_constraints: ClassVar[bool] = False
    # Rows a batch of an import is validated in between turns of the event loop (None:
    # the whole batch): a driver that needs the loop to send and receive gets turns.
    validation_slice: ClassVar[int | None] = None

    # --- URLs and connecting -----------------------------------------------------------

    def normalize_url(self, url: URL, where: str) -> tuple[URL, dict[str, Any]]:
        """`url` (already on this backend's async driver) checked and normalised, and the
        settings its query carries that the driver must not see. ConfigError, without the
        URL itself, for what cannot work."""
        return url, {}

    def hosts(self, url: URL) -> list[str]:
        """Every `host:port` the URL names, for messages."""
        return [f"{url.host or 'localhost'}:{url.port}" if url.port else url.host or "localhost"]

    def database_file(self, url: URL) -> Path | None:
        """The file holding the database, for an embedded one (None: a server's)."""
        return None

    def database_files(self, url: URL) -> dict[str, Path]:
        """The files that hold the database, by what they are ("the SQLite database in
        use"): no command may write its output over one of them."""
        return {}

    def database_label(self, url: URL) -> str:
        """What the user types to confirm a destructive action: the database's name."""
        return url.database or ""

    def check_target(self, url: URL, *, must_exist: bool) -> None:
        """Refuse, before connecting, a target that cannot work (UnavailableError)."""

    def client_command(self, settings: Settings, private: Path) -> ClientCommand:
        """The database's own client on `settings.url`; a password goes in a file written
        into `private` (a folder only this user can read, removed when the client exits)."""
        raise NotImplementedError

    def engine_options(self, settings: Settings) -> tuple[URL, dict[str, Any]]:
        """The URL and create_async_engine() keywords (connect_args, pool sizes) for
        `settings`."""
        raise NotImplementedError

    def prepare_engine(self, engine: AsyncEngine) -> None:
        """Hooks on a new engine (transaction semantics)."""

    async def create_database(
        self,
        settings: Settings,
        *,
        wait: float,
        on_retry: RetryCallback | None,
        engine: Callable[..., AsyncEngine],
    ) -> bool:
        """Make sure the target database exists; True if this call created it. `engine`
        builds an engine as dbtool's one builder does (settings, then overrides)."""
        raise NotImplementedError

    async def drop_database(
        self, settings: Settings, *, engine: Callable[..., AsyncEngine]
    ) -> None:
        """Drop the target database that `create_database` made in this run (init failed
        after it); refuses (raises) while anyone else is connected to it. Only called where
        `create_database` can return True."""
        raise NotImplementedError

    # --- what the server is ------------------------------------------------------------

    async def server_version(self, conn: AsyncConnection) -> str:
        raise NotImplementedError

    async def server_product(self, conn: AsyncConnection) -> str:
        """The server's product as shown to people, where one backend serves several
        (MySQL or MariaDB)."""
        return self.product

    async def server_role(self, conn: AsyncConnection) -> ServerRole | None:
        """Primary or standby, where, and how far behind (None: no replication)."""
        return None

    async def explain_hosts(self, settings: Settings) -> str | None:
        """Why none of a multi-host URL's hosts would do, host by host, asked afresh (None:
        the backend cannot say, or one would do now)."""
        return None

    async def cluster(self, settings: Settings, patroni: str | None) -> ClusterView | None:
        """Every member of the replicated cluster the URL leads to (and, with `patroni`,
        that HA manager's REST API, read only); None where there is no such thing."""
        return None

    async def database_size(self, conn: AsyncConnection, url: URL) -> tuple[str, int]:
        """The database's name (or file) and its size in bytes."""
        raise NotImplementedError

    async def estimated_rows(self, conn: AsyncConnection, quoted_table: str) -> int | None:
        """The planner's estimate of a table's rows, or None (then it is counted)."""
        return None

    def table_columns(
        self, sync: Connection, tables: list[Table]
    ) -> dict[tuple[str | None, str], list[str]] | None:
        """The column names of those of `tables` that exist, by (schema, name), in one
        catalogue query; None where SQLAlchemy's inspector is the way."""
        return None

    async def server_connections(self, conn: AsyncConnection) -> ServerConnections | None:
        """What the server sees of its connections (pool-status); None for an embedded
        database, which has no server side."""
        return None

    async def pooler_report(self, settings: Settings, admin_url: str) -> Any | None:
        """What a connection pooler in front of the server says (DBTOOL_PGBOUNCER_ADMIN_URL
        on PostgreSQL), read before connecting through it; None where there is none."""
        return None

    async def pooler_in_between(self, db: Database) -> Any | None:
        """A pooler that stands between dbtool and the server and answers on the
        database's own connection (pgpool-II's SHOW commands): its report, or None."""
        return None

    # --- locks and schema changes ------------------------------------------------------

    async def bound_lock_waits(self, conn: AsyncConnection, settings: Settings) -> None:
        """In this transaction, no statement waits for a lock longer than
        DBTOOL_LOCK_TIMEOUT (then `is_lock_timeout`); SQLite's busy timeout bounds its own."""

    @contextlib.asynccontextmanager
    async def schema_change(self, conn: AsyncConnection, settings: Settings) -> AsyncIterator[None]:
        """Around the work of a transaction that changes the schema: the lock timeout, then
        dbtool's schema lock (concurrent runs wait their turn, within it), released at the
        end whatever happens. LockNotGrantedError (or a lock timeout the database raises)
        when the wait runs out."""
        await self.bound_lock_waits(conn, settings)
        yield

    def is_lock_timeout(self, exc: BaseException) -> bool:
        """Whether `exc` is a lock that was not granted within the lock timeout."""
        return False

    async def lock_holders(self, db: Database, tables: list[str]) -> str:
        """Who holds locks on `tables` (`: held by pid 1234 (...)`), or ""."""
        return ""

    @contextlib.asynccontextmanager
    async def schema_lock(self, db: Database) -> AsyncIterator[None]:
        """dbtool's schema lock held apart from the work (Alembic migrates on a connection
        of its own); waits for a concurrent run to finish, within the lock timeout."""
        yield

    @contextlib.asynccontextmanager
    async def taking_turns(self, db: Database, name: str) -> AsyncIterator[None]:
        """Held by one dbtool at a time on this database, for work named `name` (`seed`),
        on a connection of its own; waits as long as the holder takes."""
        yield

    async def after_schema_created(self, db: Database) -> None:
        """What a database wants once its schema exists (SQLite: write-ahead logging)."""

    async def drop_cascade(
        self, conn: AsyncConnection, quoted_tables: list[str]
    ) -> list[str] | None:
        """The statements that drop these tables (children first) with the foreign keys of
        other tables that reference them, or None where the database cannot."""
        return None

    @contextlib.asynccontextmanager
    async def import_lock(self, conn: AsyncConnection, table: Table) -> AsyncIterator[None]:
        """One import at a time per table, held on the import's connection while the block
        runs (within its transaction)."""
        yield

    # --- statements that differ ----------------------------------------------------------

    def insert(self, table: Table) -> Any:
        """An INSERT for `table` with `.on_conflict_do_nothing()`."""
        raise NotImplementedError

    def next_id(self, column: Column[Any]) -> Any | None:
        """What the database puts in an auto-numbered id column left out of an INSERT, as
        an expression for INSERT ... SELECT; None where it numbers NULL ids itself."""
        return None

    def random_uuid(self, conn_dialect: Any) -> Any | None:
        """A server-side expression for a random UUID, or None (made in Python)."""
        return None

    def advance_ids(self, table: Table, column: Column[Any]) -> Any | None:
        """A statement moving the id counter past the ids now in `table`, or None."""
        return None

    async def create_temporary(self, conn: AsyncConnection, table: Table) -> None:
        """Create a temporary table (an import's staging table) in this transaction."""
        await conn.run_sync(lambda sync: table.create(sync))

    def empty_table(self, table: Table) -> Any:
        """The statement that empties a (temporary) table fastest."""
        return table.delete()

    def integer_range(self, column: Column[Any]) -> tuple[int, int]:
        """The whole numbers an integer `column` holds here (64-bit by default)."""
        return -(2**63), 2**63 - 1

    def bind_processor(self, column: Column[Any], dialect: Any) -> Callable[[Any], Any] | None:
        """The column type's bind processor, as fast as this backend can have it."""
        return column.type._cached_bind_processor(dialect)

    async def broken_references(self, conn: AsyncConnection, table: Table) -> set[Any] | None:
        """Rows of `table` whose foreign keys reference no row (as ids the backend chooses),
        where the database does not refuse them itself; None where it does."""
        return None

    async def defer_constraints(self, conn: AsyncConnection) -> None:
        """In this transaction, DEFERRABLE constraints are checked at the commit (a load of
        tables that reference each other); where the database has no such thing, nothing."""

    async def snapshot(self, conn: AsyncConnection) -> None:
        """At the start of a read-only transaction: every later read sees the database as it
        was then (a dump's tables agree with each other). SQLite's transactions already do."""

    def upsert(self, table: Table, keys: list[Column[Any]], updates: list[Column[Any]]) -> Any:
        """An INSERT for `table` that, where a row with the same `keys` exists, sets its
        `updates` columns to the new row's values instead (with no `updates`: keeps it).
        PostgreSQL's and SQLite's INSERT ... ON CONFLICT (keys) by default."""
        statement = self.insert(table)
        if not updates:
            return statement.on_conflict_do_nothing(index_elements=keys)
        return statement.on_conflict_do_update(
            index_elements=keys,
            set_={column.name: statement.excluded[column.name] for column in updates},
        )

    # --- bulk paths ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def bulk_session(self, conn: AsyncConnection) -> AsyncIterator[None]:
        """Connection settings for a bulk load, given back afterwards whatever happens."""
        yield

    async def rows_as_json(self, conn: AsyncConnection) -> bool:
        """Whether a batch can travel as one JSON text unpacked by the database."""
        return False

    def json_rows(self, table: Table) -> Any:
        """The rows of a batch sent as one JSON array (parameter `payload`), as a SELECT
        with `table`'s column names."""
        raise NotImplementedError

    @property
    def copies_rows(self) -> bool:
        """Whether `copy_rows` exists (COPY straight into a table)."""
        return False

    async def copy_rows(
        self, conn: AsyncConnection, table: Table, columns: list[str], records: list[list[Any]]
    ) -> None:
        """COPY `records` into `table`; a unique violation as SQLAlchemy's IntegrityError."""
        raise NotImplementedError

    async def drop_indexes_for_load(
        self, conn: AsyncConnection, table: Table
    ) -> DroppedIndexes | None:
        """Within an import's transaction into `table`: where the table is empty and no other
        session can see it until the commit, its indexes dropped, to be built again after
        the load exactly as they were by `rebuild()` (else IndexConflictError,
        IndexRebuildError); None elsewhere."""
        return None

    @property
    def loads_blocks(self) -> bool:
        """Whether `load_block` exists."""
        return False

    async def load_block(
        self,
        conn: AsyncConnection,
        table: Table,
        columns: list[str],
        rows: Iterable[Any],
        *,
        csv_lines: bool = False,
    ) -> int | None:
        """Load `rows` into `columns` of `table` in a savepoint: pieces of CSV text without
        a header (`csv_lines`: the database's own loader parses them), or rows of values (a
        binary COPY). The rows loaded, or None where the database refused a value or a
        constraint, or reading `rows` raised ValueError (the savepoint then rolled back, the
        transaction usable)."""
        raise NotImplementedError

    async def copy_csv(self, conn: AsyncConnection, table: Table, source: CsvSource) -> int | None:
        """Stream a CSV file into `table` as it is, the database's own parser checking each
        value (RowRejected names the line); the rows loaded, or None where the database
        has no such path (the feature then checks and sends the rows itself)."""
        return None

    async def load_rows(
        self, conn: AsyncConnection, table: Table, columns: list[str], payload: Any
    ) -> None:
        """Load a prepared batch (rows, or a JSON text where `rows_as_json`) into `table`,
        a temporary table of this transaction."""
        raise NotImplementedError

    async def run_at_once(self, conn: AsyncConnection, statement: Any, parameters: Any) -> int:
        """Run one statement in as few driver requests as the backend can; rows changed."""
        return int((await conn.execute(statement, parameters)).rowcount)

    async def fast_export(self, job: ExportJob) -> int | None:
        """Render the export in the database and write it; None where it cannot (the
        general path then writes it), else the number of rows."""
        return None

    # --- errors --------------------------------------------------------------------------

    def connection_error(
        self, exc: BaseException, cause: BaseException, target: str, settings: Settings
    ) -> UnavailableError | None:
        """This database's own ways of failing to connect (`target`: "cannot connect to
        URL"), checked before the ones every driver shares; None: not one of them."""
        return None

    def unique_violation_columns(self, cause: BaseException) -> list[str] | None:
        """The columns of the unique constraint the driver's `cause` violated (an empty
        list when they cannot be told), or None if it is no unique violation."""
        return None

    def translate_error(self, exc: BaseException, settings: Settings) -> Any | None:
        """A domain error (DbtoolError) for this database's own error conditions."""
        return None

    def is_missing_table(self, cause: BaseException) -> bool:
        return False

    def is_read_only(self, exc: BaseException) -> bool:
        """Whether `exc` is a write refused because the server only reads (a standby)."""
        return False

    def is_missing_column(self, cause: BaseException) -> bool:
        return False


def driver_sql(
    dialect: Any, statement: Any, parameters: Mapping[str, Any] | None = None
) -> tuple[str, list[Any]]:
    """A Core statement as its driver takes it: the SQL, and the positional arguments after
    each type's bind processor, as SQLAlchemy would send them. For the few hot paths that
    talk to the driver directly (COPY, aiosqlite in one request)."""
    compiled = statement.compile(dialect=dialect)
    values = compiled.construct_params(parameters)
    processors = compiled._bind_processors
    arguments = []
    for name in compiled.positiontup or ():
        value = values[name]
        process = processors.get(name)
        arguments.append(process(value) if process is not None and value is not None else value)
    return compiled.string, arguments


def private_file(folder: Path, name: str, content: str) -> Path:
    """`content` written to `folder/name`, readable by its owner only (0600): a client's
    password file (libpq ignores a passfile others can read)."""
    import os

    path = folder / name
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(content)
    return path


def pool_options(settings: Settings) -> dict[str, Any]:
    """create_async_engine()'s pool keywords, from the pool settings."""
    return {
        "pool_size": settings.pool_size,
        "max_overflow": settings.max_overflow,
        "pool_timeout": settings.pool_timeout,
        "pool_recycle": settings.pool_recycle,
    }


def integer_bits(column: Column[Any]) -> int:
    """16, 32 or 64: the bits of an integer column as SQL types size them (SmallInteger,
    Integer, BigInteger), on the databases that keep to them."""
    from sqlalchemy import BigInteger, SmallInteger

    column_type = getattr(column.type, "impl", column.type)
    if isinstance(column_type, SmallInteger):
        return 16
    return 64 if isinstance(column_type, BigInteger) else 32


def default_application_name() -> str:
    """What an application's connections are called when nothing says otherwise: the
    program's name (uvicorn, gunicorn, ...), so they are never mistaken for dbtool's."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    if program.name == "__main__.py":  # python -m uvicorn: the package's name
        program = program.parent
    return (program.name.removesuffix(".py") or "python")[:63]


def ssl_reason(exc: BaseException) -> str:
    """OpenSSL's short reason for an SSL or file error: many carry none (reason None), and
    their text ends in a source location that means nothing to a user."""
    text = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    return re.sub(r"^\[\w+\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(text)) or type(exc).__name__
