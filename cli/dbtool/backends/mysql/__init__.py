"""MySQL and MariaDB through asyncmy (or aiomysql): everything dbtool does differently on them.

URLs with MySQL's own TLS options, utf8mb4 by default, UTC on the wire and in the session,
strict SQL modes, named locks (GET_LOCK) for schema changes and imports (held across DDL,
which commits implicitly here), CREATE DATABASE from a connection to no database, the
server's role from @@read_only and replication status, and error codes instead of
SQLSTATEs. MariaDB is MySQL's dialect in SQLAlchemy with its own name; `MariaDB` below is
the same backend under it.

What "all-or-nothing" means here: MySQL commits every DDL statement by itself, so `init`,
`drop` and `reset` hold dbtool's schema lock across the whole change (concurrent runs wait
their turn), and a change cut short (a crash between two statements) leaves a state the
next `init` completes and `check` names. Imports stay one transaction (rows are not DDL).
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Column, Table, bindparam, event, text
from sqlalchemy.dialects.mysql import Insert as MySQLInsert
from sqlalchemy.dialects.mysql.dml import OnDuplicateClause
from sqlalchemy.engine import URL
from sqlalchemy.exc import DataError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import NullPool

from dbtool.backends.base import (
    Backend,
    ClientCommand,
    ExportJob,
    ServerConnections,
    ServerProcess,
    ServerRole,
    default_application_name,
    integer_bits,
    pool_options,
    private_file,
)
from dbtool.backends.urls import (
    check_server_url,
    choice,
    no_key_password,
    single,
    take_dbtool_settings,
)
from dbtool.errors import ConfigError, RefusedError
from dbtool.models.user_model import python_type

if TYPE_CHECKING:
    from dbtool.backends.errors import UnavailableError
    from dbtool.config import Settings
    from dbtool.db import Database, RetryCallback

DEFAULT_CHARSET = "utf8mb4"
# New databases (init --create-database): every character an email can hold, compared
# without regard to letter case (the one-identity-per-email rule agrees with the index).
DATABASE_COLLATION = "utf8mb4_unicode_ci"

# MySQL's --ssl-mode values, as asyncmy and aiomysql have no such option of their own.
SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
# MySQL's names for the certificate files -> the settings that hold them.
CERTIFICATES = {"ssl_ca": "ssl_rootcert", "ssl_cert": "ssl_cert", "ssl_key": "ssl_key"}
URL_PARAMETERS = (
    "charset",
    "ssl_mode",
    "ssl_ca",
    "ssl_cert",
    "ssl_key",
    "connect_timeout",
    "application_name",
)

# Strict modes, whatever the server's default: a value that does not fit is an error,
# never silently cut or zeroed; an id of 0 is stored as 0, not taken for "the next one".
STRICT_MODES = (
    "NO_AUTO_VALUE_ON_ZERO",
    "STRICT_ALL_TABLES",
    "NO_ZERO_IN_DATE",
    "NO_ZERO_DATE",
    "ERROR_FOR_DIVISION_BY_ZERO",
)
SESSION_SETUP = (
    "SET time_zone = '+00:00', "
    f"sql_mode = CONCAT_WS(',', @@SESSION.sql_mode, '{','.join(STRICT_MODES)}')"
)

# Error codes (MySQL's own numbers, which MariaDB shares).
_ACCESS_DENIED = (1044, 1045, 1698)
_UNKNOWN_DATABASE = 1049
_DUPLICATE_KEY = 1062
_DATABASE_EXISTS = 1007
_LOCK_WAIT_TIMEOUT = 1205
_READ_ONLY = (1290, 1836)  # --read-only; running in read-only mode (replica)
_NO_SUCH_TABLE = 1146
_NO_SUCH_COLUMN = 1054
_CONNECTION_REFUSED = 2003
_UNKNOWN_HOST = 2005
# The server went away or closed the connection, or it is shutting down.
_LOST = (2006, 2013, 2055, 1053, 1927)
_TOO_MANY_CONNECTIONS = 1040
# Marks a connection whose server took no LOAD DATA LOCAL: batches go by INSERTs on it.
_NO_LOCAL_LOADS = "dbtool.no_local_loads"
# What 2003 ("can't connect") says when the name did not resolve.
_NO_SUCH_HOST = re.compile(r"Name or service not known|nodename nor servname|name resolution")

# "Duplicate entry 'a@b.c' for key 'users.uq_users_email'" (MySQL 8 prefixes the table),
# "... for key 'uq_users_email'" (MariaDB). The key is looked up in the catalogue.
_DUPLICATE = re.compile(r"for key '(?:[^'.]+\.)?(?P<key>[^']+)'")


class MySQL(Backend):
    name: ClassVar[str] = "mysql"
    product: ClassVar[str] = "MySQL"
    # asyncmy reads and writes on the event loop: the batch in flight gets turns while
    # the next one is validated.
    validation_slice: ClassVar[int | None] = 500

    # --- URLs and connecting -----------------------------------------------------------

    def normalize_url(self, url: URL, where: str) -> tuple[URL, dict[str, Any]]:
        query = check_server_url(url, where, URL_PARAMETERS)
        if "charset" in query:
            charset = single(query["charset"], "charset", where)
            if not re.fullmatch(r"[a-z0-9_]+", charset):
                raise ConfigError(f"{where}: charset={charset!r} is not a character set name")
        if "ssl_mode" in query:
            mode = single(query["ssl_mode"], "ssl_mode", where).upper().replace("-", "_")
            query["ssl_mode"] = choice(mode, "ssl_mode", SSL_MODES, where)
        extras = take_dbtool_settings(query, where, CERTIFICATES)
        return url.set(query=query), extras

    def hosts(self, url: URL) -> list[str]:
        return [f"{url.host or 'localhost'}:{url.port or 3306}"]

    # The client programs, the product's own first (both read the same option files).
    clients: ClassVar[tuple[str, ...]] = ("mysql", "mariadb")
    client_package: ClassVar[str] = "mysql-client (or mariadb-client)"

    def client_command(self, settings: Settings, private: Path) -> ClientCommand:
        """The mysql or mariadb client, given everything in an option file of its own
        (--defaults-extra-file, which must come first): the password never in argv."""
        url = settings.url
        options = {
            "host": url.host or "localhost",
            "port": url.port or 3306,
            "user": url.username,
            "password": url.password,
            "database": url.database,
            "ssl-ca": settings.ssl_rootcert,
            "ssl-cert": settings.ssl_cert,
            "ssl-key": settings.ssl_key,
            "default-character-set": url.query.get("charset", DEFAULT_CHARSET),
        }
        # TLS, in each client's words; "loose-": the client that does not know one skips it.
        mode = str(url.query.get("ssl_mode", ""))
        tls = {
            "loose-ssl-mode": mode,  # MySQL's
            "loose-ssl": mode in ("REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"),  # MariaDB's
            "loose-ssl-verify-server-cert": mode in ("VERIFY_CA", "VERIFY_IDENTITY"),
            "loose-skip-ssl": mode == "DISABLED",
        }
        lines = [f"{key}={_option_value(value)}" for key, value in options.items() if value]
        lines += [key if value is True else f"{key}={value}" for key, value in tls.items() if value]
        path = private_file(private, "client.cnf", "[client]\n" + "\n".join(lines) + "\n")
        return ClientCommand(self.clients, self.client_package, (f"--defaults-extra-file={path}",))

    def engine_options(self, settings: Settings) -> tuple[URL, dict[str, Any]]:
        url = settings.url
        driver = url.get_driver_name()
        if importlib.util.find_spec(driver) is None:
            extra = "mysql" if driver == "asyncmy" else driver
            raise ConfigError(
                f"{url.drivername} needs the {driver} driver, which is not installed: "
                f"python -m pip install 'dbtool-sqla[{extra}]' (or {driver} itself)"
            )
        mode = str(url.query.get("ssl_mode", "PREFERRED"))
        url = url.difference_update_query(["ssl_mode"])
        connect_args: dict[str, Any] = {
            # utf8mb4 unless the URL says otherwise: every character an email can hold.
            **({} if "charset" in url.query else {"charset": DEFAULT_CHARSET}),
            "connect_timeout": settings.connect_timeout,
            "init_command": SESSION_SETUP,
            "program_name": settings.application_name or default_application_name(),
            "conv": _conversions(url.get_driver_name()),
            # Said at connect time; answered only during dbtool's own LOAD DATA (load.py).
            "local_infile": True,
        }
        context = ssl_context(settings, mode)
        if context is not None:
            connect_args["ssl"] = context
        return url, {"connect_args": connect_args, **pool_options(settings)}

    def prepare_engine(self, engine: AsyncEngine) -> None:
        """The driver's log of the server's warnings (asyncmy writes each to Python's
        logging, which would print them on stderr) off: dbtool says what matters itself.
        INSERT IGNORE (`--on-conflict skip`) skips duplicate keys, and would turn every
        other error (a NULL in a NOT NULL column) into a warning too: those are errors."""

        import logging

        logging.getLogger(engine.url.get_driver_name()).setLevel(logging.ERROR)

        @event.listens_for(engine.sync_engine, "connect")
        def _no_local_files(dbapi_connection: Any, _record: Any) -> None:
            # Local files only while dbtool's own LOAD DATA runs (load.py), never at a
            # server's request otherwise.
            raw = getattr(dbapi_connection, "driver_connection", None)
            if raw is not None and hasattr(raw, "_local_infile"):
                raw._local_infile = False

        @event.listens_for(engine.sync_engine, "after_cursor_execute")
        def _refuse_ignored_errors(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            if not statement.startswith("INSERT IGNORE"):
                return
            check = conn.connection.dbapi_connection.cursor()
            try:
                check.execute("SHOW WARNINGS")
                warnings = [tuple(row) for row in check.fetchall()]
            finally:
                check.close()
            problems = [row for row in warnings if int(row[1]) != _DUPLICATE_KEY]
            if problems:
                _level, code, message = problems[0][:3]
                raise DataError(statement, None, Exception(f"({code}) {message}"))

    async def create_database(
        self,
        settings: Settings,
        *,
        wait: float,
        on_retry: RetryCallback | None,
        engine: Callable[..., AsyncEngine],
    ) -> bool:
        """From a connection to no database in particular, with utf8mb4 and a collation
        that ignores letter case; a concurrent run creating it at the same moment is fine."""
        from dbtool.db import retry_connect

        name = settings.url.database or ""
        server = replace(settings, url=settings.url.set(database=""))
        server_engine = engine(server, poolclass=NullPool)
        created = False

        async def attempt() -> None:
            nonlocal created
            async with server_engine.connect() as conn:
                exists = await conn.scalar(
                    text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
                    {"n": name},
                )
                if exists:
                    return
                quoted = conn.dialect.identifier_preparer.quote(name)
                try:
                    await conn.exec_driver_sql(
                        f"CREATE DATABASE {quoted} CHARACTER SET {DEFAULT_CHARSET} "
                        f"COLLATE {DATABASE_COLLATION}"
                    )
                    created = True
                except Exception as exc:
                    if _code(exc) != _DATABASE_EXISTS:
                        raise

        try:
            await retry_connect(attempt, server, wait=wait, on_retry=on_retry)
        finally:
            await server_engine.dispose()
        return created

    async def drop_database(
        self, settings: Settings, *, engine: Callable[..., AsyncEngine]
    ) -> None:
        """Refused while another session uses it: MySQL would drop it under them."""
        name = settings.url.database or ""
        server_engine = engine(replace(settings, url=settings.url.set(database="")),
                               poolclass=NullPool)  # fmt: skip
        try:
            async with server_engine.connect() as conn:
                users = await conn.scalar(
                    text(
                        "SELECT count(*) FROM information_schema.processlist"
                        " WHERE db = :n AND id <> CONNECTION_ID()"
                    ),
                    {"n": name},
                )
                if users:
                    raise RefusedError(f"database {name} is in use by {users} other session(s)")
                quoted = conn.dialect.identifier_preparer.quote(name)
                await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
        finally:
            await server_engine.dispose()

    # --- what the server is ------------------------------------------------------------

    async def server_version(self, conn: AsyncConnection) -> str:
        version = str(await conn.scalar(text("SELECT VERSION()")))
        return version.split("-")[0]

    async def server_product(self, conn: AsyncConnection) -> str:
        version = str(await conn.scalar(text("SELECT VERSION()")))
        return "MariaDB" if "mariadb" in version.lower() else "MySQL"

    async def server_role(self, conn: AsyncConnection) -> ServerRole | None:
        read_only, host, port = (
            await conn.execute(text("SELECT @@read_only, @@hostname, @@port"))
        ).one()
        behind = await _replica_lag(conn)
        replica = behind is not False
        return ServerRole(
            standby=bool(read_only) or replica,
            host=f"{host}:{port}",
            replay_lag_seconds=behind if isinstance(behind, float) else None,
        )

    async def database_size(self, conn: AsyncConnection, url: URL) -> tuple[str, int]:
        name, size = (
            await conn.execute(
                text(
                    "SELECT DATABASE(), COALESCE(SUM(data_length + index_length), 0)"
                    " FROM information_schema.tables WHERE table_schema = DATABASE()"
                )
            )
        ).one()
        return str(name), int(size or 0)

    async def estimated_rows(self, conn: AsyncConnection, quoted_table: str) -> int | None:
        # InnoDB's estimate, from the table's statistics (as SHOW TABLE STATUS shows it).
        parts = [part.strip("`") for part in quoted_table.split("`.`")]
        schema, name = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
        guess = await conn.scalar(
            text(
                "SELECT table_rows FROM information_schema.tables"
                " WHERE table_schema = COALESCE(:schema, DATABASE()) AND table_name = :name"
            ),
            {"schema": schema, "name": name},
        )
        return None if guess is None else int(guess)

    async def server_connections(self, conn: AsyncConnection) -> ServerConnections | None:
        """From information_schema.processlist (and InnoDB's open transactions): every
        client session, by program name (asyncmy sends it; others by user) and command."""
        max_connections = int(await conn.scalar(text("SELECT @@max_connections")) or 0)
        rows = list(await conn.execute(await _sessions_sql(conn)))
        in_use = len(rows)
        database = str(await conn.scalar(text("SELECT DATABASE()")))
        counts: dict[tuple[str, str], int] = {}
        oldest: ServerProcess | None = None
        idle_in_transaction: ServerProcess | None = None
        for pid, program, db, command, transaction_age, is_self in rows:
            in_transaction = transaction_age is not None
            state = _state(str(command or ""), in_transaction)
            if db == database:
                key = (str(program or ""), state)
                counts[key] = counts.get(key, 0) + 1
            if in_transaction and not is_self and db == database:
                process = ServerProcess(int(pid), str(program or ""), state, float(transaction_age))
                if oldest is None or process.age_seconds > oldest.age_seconds:
                    oldest = process
                if state == "idle in transaction" and (
                    idle_in_transaction is None
                    or process.age_seconds > idle_in_transaction.age_seconds
                ):
                    idle_in_transaction = process
        by_application = [
            {"application_name": app, "state": state, "count": count}
            for (app, state), count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        return ServerConnections(
            database_name=database,
            max_connections=max_connections,
            reserved_connections=1,  # one more for an administrator (CONNECTION ADMIN/SUPER)
            in_use=in_use,
            by_application=by_application,
            oldest_transaction=oldest,
            longest_idle_in_transaction=idle_in_transaction,
        )

    # --- locks and schema changes ------------------------------------------------------

    async def bound_lock_waits(self, conn: AsyncConnection, settings: Settings) -> None:
        # Whole seconds: MySQL's lock wait timeouts take no fraction; at least one.
        seconds = max(round(settings.lock_timeout), 1)
        await conn.exec_driver_sql(
            f"SET SESSION lock_wait_timeout = {seconds}, innodb_lock_wait_timeout = {seconds}"
        )

    @contextlib.asynccontextmanager
    async def schema_change(self, conn: AsyncConnection, settings: Settings) -> AsyncIterator[None]:
        # DDL commits by itself here, so no transaction-scoped lock could span the change:
        # a named lock of the session, released at the end whatever happens.
        await self.bound_lock_waits(conn, settings)
        async with _named_lock(conn, _schema_lock_name(conn), settings.lock_timeout):
            yield

    async def drop_cascade(
        self, conn: AsyncConnection, quoted_tables: list[str]
    ) -> list[str] | None:
        """MySQL has no DROP ... CASCADE (it parses the word and ignores it): the foreign
        keys of other tables that reference these go first, by name, then the tables."""
        names = [table.split("`.`")[-1].strip("`") for table in quoted_tables]
        rows = await conn.execute(
            text(
                "SELECT table_name, constraint_name FROM information_schema.referential_constraints"
                " WHERE constraint_schema = DATABASE() AND referenced_table_name IN :names"
                " AND table_name NOT IN :names"
            ).bindparams(bindparam("names", expanding=True)),
            {"names": names},
        )
        quote = conn.dialect.identifier_preparer.quote
        return [
            *(f"ALTER TABLE {quote(table)} DROP FOREIGN KEY {quote(key)}" for table, key in rows),
            *(f"DROP TABLE IF EXISTS {table}" for table in quoted_tables),
        ]

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return _code(exc) == _LOCK_WAIT_TIMEOUT

    async def lock_holders(self, db: Database, tables: list[str]) -> str:
        try:
            async with db.reading() as conn:
                holder = await conn.scalar(
                    text("SELECT IS_USED_LOCK(:name)"), {"name": _schema_lock_name(conn)}
                )
                rows = list(
                    await conn.execute(
                        text(
                            "SELECT p.id, COALESCE(p.user, ''), p.command, p.time"
                            " FROM information_schema.processlist p"
                            " WHERE p.id = :holder OR (p.db = DATABASE() AND p.id <> "
                            "CONNECTION_ID() AND p.id IN (SELECT trx_mysql_thread_id FROM"
                            " information_schema.innodb_trx)) ORDER BY p.time DESC LIMIT 3"
                        ),
                        {"holder": holder or -1},
                    )
                )
        except Exception:  # the explanation is a bonus; never replace the error with another
            return ""
        held = [
            f"connection {pid} ({user or 'no user'}, {command}, for {age or 0}s)"
            for pid, user, command, age in rows
        ]
        return f": held by {'; '.join(held)}" if held else ""

    @contextlib.asynccontextmanager
    async def schema_lock(self, db: Database) -> AsyncIterator[None]:
        async with db.engine.connect() as conn:
            name = _schema_lock_name(conn)
            async with _named_lock(conn, name, db.settings.lock_timeout):
                yield

    @contextlib.asynccontextmanager
    async def taking_turns(self, db: Database, name: str) -> AsyncIterator[None]:
        async with db.engine.connect() as conn:
            database = await conn.scalar(text("SELECT DATABASE()"))
            async with _named_lock(conn, f"dbtool {name} {database}"[:64], None):
                yield

    @contextlib.asynccontextmanager
    async def import_lock(self, conn: AsyncConnection, table: Table) -> AsyncIterator[None]:
        # One import per table at a time (as PostgreSQL's advisory lock does): waited for
        # as long as the other import takes.
        name = f"dbtool import {await conn.scalar(text('SELECT DATABASE()'))}.{table.name}"
        async with _named_lock(conn, name[:64], None):
            yield

    # --- statements that differ ----------------------------------------------------------

    def insert(self, table: Table) -> Any:
        return _Insert(table)

    async def create_temporary(self, conn: AsyncConnection, table: Table) -> None:
        # A temporary table lives as long as its connection, not its transaction: one a
        # failed import left on this pooled connection goes first.
        quoted = conn.dialect.identifier_preparer.format_table(table)
        await conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {quoted}")
        await conn.run_sync(lambda sync: table.create(sync))

    def bind_processor(self, column: Column[Any], dialect: Any) -> Callable[[Any], Any] | None:
        """A UUID column's values may come as canonical text (the import's converter makes
        them so): stored as the 32 hex digits SQLAlchemy's Uuid keeps in CHAR(32)."""
        processor = column.type._cached_bind_processor(dialect)
        if processor is None or python_type(column) is not uuid.UUID:
            return processor
        general = processor

        def as_hex(value: Any) -> Any:
            if value.__class__ is str:
                return value.replace("-", "").lower()
            return general(value)

        return as_hex

    def integer_range(self, column: Column[Any]) -> tuple[int, int]:
        bits = integer_bits(column)
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def upsert(self, table: Table, keys: list[Column[Any]], updates: list[Column[Any]]) -> Any:
        """ON DUPLICATE KEY UPDATE (any unique key of the table matches: MySQL names none),
        or INSERT IGNORE to keep the existing row."""
        statement = _Insert(table)
        if not updates:
            return statement.on_conflict_do_nothing()
        return statement.on_duplicate_key_update(
            {column.name: statement.inserted[column.name] for column in updates}
        )

    # --- bulk paths ----------------------------------------------------------------------

    @property
    def copies_rows(self) -> bool:
        return True

    async def copy_rows(
        self, conn: AsyncConnection, table: Table, columns: list[str], records: list[list[Any]]
    ) -> None:
        # A duplicate key is SQLAlchemy's IntegrityError, by either path.
        await self.load_rows(conn, table, columns, records)

    async def load_rows(
        self, conn: AsyncConnection, table: Table, columns: list[str], payload: Any
    ) -> None:
        """LOAD DATA LOCAL INFILE where the server takes it (load.py); else multi-row
        INSERTs, which asyncmy makes of an executemany, up to max_allowed_packet each."""
        from dbtool.backends.mysql.load import LocalLoadRefused, load_data

        if not payload:
            return
        if conn.info.get(_NO_LOCAL_LOADS) is None:
            try:
                await load_data(conn, table, columns, payload)
                return
            except LocalLoadRefused:
                conn.info[_NO_LOCAL_LOADS] = True
        preparer = conn.dialect.identifier_preparer
        names = ", ".join(preparer.quote(name) for name in columns)
        marks = ", ".join(["%s"] * len(columns))
        target = preparer.format_table(table)
        await conn.exec_driver_sql(
            f"INSERT INTO {target} ({names}) VALUES ({marks})", [tuple(row) for row in payload]
        )

    async def fast_export(self, job: ExportJob) -> int | None:
        from dbtool.backends.mysql.export import export

        return await export(job)

    # --- errors --------------------------------------------------------------------------

    def connection_error(
        self, exc: BaseException, cause: BaseException, target: str, settings: Settings
    ) -> UnavailableError | None:
        from dbtool.backends.errors import UnavailableError

        url = settings.url
        code = _code(cause)
        if code in _ACCESS_DENIED:
            return UnavailableError(
                f"{target}: access denied for user {url.username!r}", retryable=False
            )
        if code == _UNKNOWN_DATABASE:
            return UnavailableError(
                f"{target}: database {url.database!r} does not exist "
                "(`dbtool init --create-database` creates it)",
                retryable=False,
            )
        if code == _UNKNOWN_HOST or (
            code == _CONNECTION_REFUSED and _NO_SUCH_HOST.search(str(cause))
        ):
            return UnavailableError(f"{target}: unknown host {url.host!r}", retryable=True)
        if code == _CONNECTION_REFUSED or (code is not None and "refused" in str(cause)):
            return UnavailableError(
                f"{target}: connection refused (is the server running on {self.hosts(url)[0]}?)",
                retryable=True,
            )
        if code == _TOO_MANY_CONNECTIONS:
            return UnavailableError(f"{target}: the server has too many connections",
                                    retryable=True)  # fmt: skip
        if code in _LOST:
            return UnavailableError(f"{target}: the connection was lost", retryable=True)
        return None

    def unique_violation_columns(self, cause: BaseException) -> list[str] | None:
        """MySQL names the key (`for key 'uq_users_email'`): its columns come from the key's
        name by the naming conventions, else are left to the caller (an empty list)."""
        if _code(cause) != _DUPLICATE_KEY:
            return None
        found = _DUPLICATE.search(str(cause))
        return [found["key"]] if found else []

    def translate_error(self, exc: BaseException, settings: Settings) -> Any | None:
        from dbtool.backends.errors import first_line
        from dbtool.config import mask_url

        if _code(exc) in _READ_ONLY:
            return RefusedError(
                f"{mask_url(settings.url)} is read-only (a replica, or read_only is on): "
                f"{first_line(exc)}; point DATABASE_URL at the primary"
            )
        return None

    def is_read_only(self, exc: BaseException) -> bool:
        return _code(exc) in _READ_ONLY

    def is_missing_table(self, cause: BaseException) -> bool:
        return _code(cause) == _NO_SUCH_TABLE

    def is_missing_column(self, cause: BaseException) -> bool:
        return _code(cause) == _NO_SUCH_COLUMN


class MariaDB(MySQL):
    """MariaDB: SQLAlchemy's MySQL dialect under its own name (`mariadb://` URLs)."""

    name: ClassVar[str] = "mariadb"
    product: ClassVar[str] = "MariaDB"
    clients: ClassVar[tuple[str, ...]] = ("mariadb", "mysql")
    client_package: ClassVar[str] = "mariadb-client"


def _option_value(value: object) -> str:
    """A value of an option file, quoted with the escapes the clients read (a password may
    hold any character)."""
    text_value = str(value)
    for plain, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\t", "\\t")):
        text_value = text_value.replace(plain, escaped)
    return f'"{text_value}"'


class _Insert(MySQLInsert):
    """MySQL's INSERT, with the conflict policy every backend's insert has: a duplicate key
    skips the row (INSERT IGNORE; any other ignored error is refused, see prepare_engine)."""

    inherit_cache = True

    def on_conflict_do_nothing(self) -> _Insert:
        return self.prefix_with("IGNORE")

    def on_duplicate_key_update(self, *args: Any, **kw: Any) -> _Insert:
        statement = super().on_duplicate_key_update(*args, **kw)
        clause: Any = statement._post_values_clause
        statement._post_values_clause = _OnDuplicate(clause.inserted_alias, clause.update)
        return statement


class _OnDuplicate(OnDuplicateClause):
    """SQLAlchemy 2.0's ON DUPLICATE KEY UPDATE clause has no cache key, and warns so on
    every statement: said here to be compiled each time (nothing, next to a load's rows)."""

    inherit_cache = False


# Every client session, with its program's name (which asyncmy sends, where the server
# keeps connection attributes) and how long its open InnoDB transaction has run.
_SESSIONS_SQL = (
    "SELECT p.id, COALESCE({program}, p.user, ''), p.db, p.command,"
    " TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) / 1e6, p.id = CONNECTION_ID()"
    " FROM information_schema.processlist p"
    " LEFT JOIN information_schema.innodb_trx t ON t.trx_mysql_thread_id = p.id"
    " {attributes}"
    " WHERE p.command NOT IN ('Daemon', 'Binlog Dump', 'Slave_IO', 'Slave_SQL')"
    " AND p.user NOT IN ('system user', 'event_scheduler')"
)
_ATTRIBUTES = (
    "LEFT JOIN performance_schema.session_connect_attrs a"
    " ON a.processlist_id = p.id AND a.attr_name = 'program_name'"
)


async def _sessions_sql(conn: AsyncConnection) -> Any:
    if await conn.scalar(text("SELECT @@performance_schema")):
        return text(_SESSIONS_SQL.format(program="a.attr_value", attributes=_ATTRIBUTES))
    return text(_SESSIONS_SQL.format(program="NULL", attributes=""))


def _state(command: str, in_transaction: bool) -> str:
    """A session's state in PostgreSQL's words, which pool-status uses for every database."""
    if command == "Sleep":
        return "idle in transaction" if in_transaction else "idle"
    return "active"


async def _replica_lag(conn: AsyncConnection) -> float | bool | None:
    """False when this server replicates from no one; else the seconds it is behind (None
    when it cannot tell: replication stopped)."""
    rows = None
    for statement in ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS"):  # before 8.0.22 / 10.5.1
        with contextlib.suppress(Exception):  # also: not allowed to ask (a plain user)
            rows = (await conn.exec_driver_sql(statement)).mappings().all()
            break
    if not rows:
        return False
    row = rows[0]
    behind = row.get("Seconds_Behind_Source", row.get("Seconds_Behind_Master"))
    return None if behind is None else float(behind)


def _schema_lock_name(conn: AsyncConnection) -> str:
    """dbtool's schema lock of this database (named locks are the server's, not a
    database's: the name carries the database)."""
    return f"dbtool schema {conn.engine.url.database}"[:64]


@contextlib.asynccontextmanager
async def _named_lock(
    conn: AsyncConnection, name: str, timeout: float | None
) -> AsyncIterator[None]:
    """GET_LOCK for the block, released afterwards; LockNotGrantedError when `timeout`
    seconds pass first (None: wait as long as it takes)."""
    from dbtool.backends.errors import LockNotGrantedError

    # No timeout: a year (MariaDB takes no negative one for "for ever", as MySQL does).
    seconds = 31_536_000 if timeout is None else max(round(timeout), 1)
    granted = await conn.scalar(text("SELECT GET_LOCK(:name, :seconds)"),
                                {"name": name, "seconds": seconds})  # fmt: skip
    if granted != 1:
        raise LockNotGrantedError(f"lock {name!r} not granted within {seconds}s")
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a lost connection released it already
            await conn.scalar(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


def _conversions(driver: str) -> dict[Any, Any]:
    """The driver's value conversions, with aware datetimes sent as UTC: MySQL's DATETIME
    has no zone, and the session's time zone is UTC (SESSION_SETUP)."""
    if driver == "aiomysql":
        from pymysql.converters import conversions, escape_datetime
    else:
        from asyncmy.converters import conversions, escape_datetime

    def utc(value: datetime, mapping: Any = None) -> str:
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return str(escape_datetime(value, mapping))

    return {**conversions, datetime: utc}


def ssl_context(settings: Settings, mode: str) -> ssl.SSLContext | None:
    """A context for MySQL's ssl-mode: VERIFY_IDENTITY checks the certificate and the
    host name, VERIFY_CA the certificate, REQUIRED encrypts without checking (unless a CA
    is given, then as VERIFY_CA, as MySQL's client does); PREFERRED and DISABLED connect
    without TLS, unless certificate files are given."""
    files = settings.ssl_rootcert or settings.ssl_cert
    if mode == "DISABLED" or (mode == "PREFERRED" and not files):
        return None
    context = ssl.create_default_context(cafile=settings.ssl_rootcert)
    if mode != "VERIFY_IDENTITY":
        context.check_hostname = False
    if not settings.ssl_rootcert and mode not in ("VERIFY_CA", "VERIFY_IDENTITY"):
        context.verify_mode = ssl.CERT_NONE
    if settings.ssl_cert:
        context.load_cert_chain(settings.ssl_cert, settings.ssl_key, password=no_key_password)
    return context


def _code(exc: BaseException) -> int | None:
    """MySQL's error number of a driver exception (its first argument), through
    SQLAlchemy's wrapping."""
    from dbtool.backends.errors import driver_error

    cause = driver_error(exc)
    arguments = getattr(cause, "args", ())
    if arguments and isinstance(arguments[0], int):
        return arguments[0]
    return None
