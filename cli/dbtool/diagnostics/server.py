"""What the database says about itself: reachability, version, size and tables (`ping`,
`info`); connections are `dbtool.diagnostics.pools`' (pool-status), kept apart so that
these two commands do not load it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from dbtool.backends import backend_for
from dbtool.backends.base import ServerRole
from dbtool.db import Database


@dataclass(frozen=True)
class PingResult:
    database: str
    server: str
    version: str
    latency_ms: float
    role: ServerRole | None = None  # PostgreSQL: primary or standby, host reached, lag

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "role": None if self.role is None else self.role.as_dict()}


async def server_version(db: Database) -> tuple[str, str]:
    """(product, version), e.g. ("PostgreSQL", "15.19") or ("SQLite", "3.40.1")."""
    async with db.reading() as conn:
        return await _server_version(conn)


async def _server_version(conn: AsyncConnection) -> tuple[str, str]:
    backend = backend_for(conn.dialect.name)
    return await backend.server_product(conn), await backend.server_version(conn)


async def ping(db: Database, *, rounds: int = 5) -> PingResult:
    """Round-trip latency of a trivial query (median of `rounds`), and the server version."""
    product, version = await server_version(db)
    timings = []
    async with db.reading() as conn:
        for _ in range(rounds):
            start = time.perf_counter()
            await conn.exec_driver_sql("SELECT 1")
            timings.append((time.perf_counter() - start) * 1000)
    role = await db.server_role()
    return PingResult(
        database=db.settings.masked_url,
        server=product,
        version=version,
        latency_ms=round(median(timings), 3),
        role=role,
    )


# --- dbtool info ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InfoReport:
    database: str
    server: str
    version: str
    database_name: str
    size_bytes: int
    models: str
    tables: list[dict[str, Any]]
    missing_tables: list[str]
    mismatched_tables: list[dict[str, Any]]
    alembic: dict[str, Any] | None = None
    role: ServerRole | None = None

    @property
    def schema_complete(self) -> bool:
        return not self.missing_tables and not self.mismatched_tables

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "schema_complete": self.schema_complete,
            "role": None if self.role is None else self.role.as_dict(),
        }


async def info(db: Database, *, exact: bool = False) -> InfoReport:
    """Server, database size, the models' tables with row counts (the planner's estimate for
    large PostgreSQL tables, unless `exact`), and what is missing or does not match."""
    async with db.reading() as conn:
        product, version = await _server_version(conn)
        name, size = await db.backend.database_size(conn, db.settings.url)
    from dbtool.schema.tables import describe_tables  # (ping and pool-status do without it)

    state = await describe_tables(db, estimate=not exact)
    role = await db.server_role()
    return InfoReport(
        database=db.settings.masked_url,
        server=product,
        version=version,
        database_name=name,
        size_bytes=int(size or 0),
        models=db.models.source,
        # "rows_estimated" only where it is true: the shape scripts already read stays.
        tables=[
            {
                "name": table.name,
                "rows": table.rows,
                **({"rows_estimated": True} if table.rows_estimated else {}),
            }
            for table in state.present
        ],
        missing_tables=[table.name for table in state.missing],
        mismatched_tables=[table.as_dict() for table in state.mismatched],
        role=role,
    )


def median(values: list[float]) -> float:
    """The median (statistics.median, without importing statistics and fractions for it:
    every ping and pool-status would pay for them)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
