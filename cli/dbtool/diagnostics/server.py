"""What the database says about itself: reachability, version, size and tables (`ping`,
`info`); connections are `dbtool.diagnostics.pools`' (pool-status), kept apart so that
these two commands do not load it."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from dbtool.backends import backend_for
from dbtool.backends.base import ClusterMember, ClusterView, ServerRole
from dbtool.db import Database
from dbtool.errors import DbtoolError, LaggingError, WrongRoleError


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


# --- health probes: ping --require, --max-lag ----------------------------------------------

_LAG_UNITS = {
    "ms": ("seconds", 0.001), "s": ("seconds", 1.0), "min": ("seconds", 60.0),
    "b": ("bytes", 1), "kb": ("bytes", 1000), "mb": ("bytes", 10**6), "gb": ("bytes", 10**9),
    "kib": ("bytes", 1024), "mib": ("bytes", 2**20), "gib": ("bytes", 2**30),
}  # fmt: skip
_LAG = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*")


def parse_lag(text: str) -> tuple[str, float]:
    """("seconds" or "bytes", amount) from 10s, 500ms, 2min, 16MB, 512kB, 1GiB."""
    found = _LAG.fullmatch(text)
    unit = _LAG_UNITS.get(found.group(2).lower()) if found else None
    if found is None or unit is None:
        raise ValueError(
            f"{text!r} is not a lag: a number with a unit of time (ms, s, min) or of WAL "
            "(B, kB, MB, GB, KiB, MiB, GiB), e.g. 10s or 16MB"
        )
    kind, scale = unit
    return kind, float(found.group(1)) * scale


def health_problem(
    result: PingResult, *, require: str | None, max_lag: str | None
) -> DbtoolError | None:
    """Why the server reached is not what a probe asks for (None: it is). A server without
    replication (SQLite, a standalone server) takes writes: it is a primary."""
    role = result.role
    standby = role is not None and role.standby
    if require is not None and standby != (require == "standby"):
        where = f" at {role.host}" if role is not None and role.host else ""
        found = "a read-only standby" if standby else "a server that takes writes"
        return WrongRoleError(f"{require} required, but reached {found}{where}")
    if max_lag is None or not standby or role is None:
        return None
    kind, limit = parse_lag(max_lag)
    behind = role.replay_lag_seconds if kind == "seconds" else role.replay_lag_bytes
    if role.receiver not in (None, "streaming") or behind is None:
        state = role.receiver or "unknown"
        return LaggingError(
            f"the standby's lag cannot be known (WAL receiver {state}): it may be far "
            f"behind ({role.describe()})"
        )
    if behind > limit:
        shown = f"{behind:g}s" if kind == "seconds" else f"{int(behind):,} bytes"
        return LaggingError(f"the standby is {shown} behind, more than --max-lag {max_lag}")
    return None


async def single_server_view(db: Database) -> ClusterView:
    """`dbtool cluster` where the backend knows no cluster (SQLite, MariaDB for now): the
    one server the URL reaches, as a member of a cluster of one."""
    role = await db.server_role()
    host = role.host if role is not None else None
    lagging = role if role is not None and role.standby else None
    # A file's name (SQLite) rather than its whole path, which is the member's "host".
    name = host or PurePath(db.settings.url.database or db.settings.masked_url).name
    member = ClusterMember(
        name=name, host=host or db.settings.masked_url,
        role="primary" if lagging is None else "standby",
        state=(role.receiver if role is not None else None) or "running",
        replay_lag_bytes=lagging.replay_lag_bytes if lagging else None,
        replay_lag_seconds=lagging.replay_lag_seconds if lagging else None,
    )  # fmt: skip
    return ClusterView(
        members=[member],
        leader=member.name if lagging is None else None,
        checked_at=datetime.now(UTC),
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
