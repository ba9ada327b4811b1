"""PgBouncer's admin console, for pool-status: PgBouncer's limits and the pool of
dbtool's database in it, beside what the server sees."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dbtool.config import Settings, mask_url
from dbtool.errors import ConfigError, DatabaseUnavailableError


@dataclass(frozen=True)
class PgBouncerReport:
    """PgBouncer's view, read at `read_at`: its limits, and the pools of dbtool's database
    in it (every user's), with SHOW STATS' totals."""

    admin: str  # the admin console's URL, password masked
    version: str
    read_at: str  # ISO time: PgBouncer's half and the server's are read apart
    database: str
    pool_mode: str
    max_client_conn: int
    default_pool_size: int
    clients_active: int
    clients_waiting: int
    servers_active: int
    servers_idle: int
    servers_used: int  # back from a client, not yet reset (server_reset_query, check)
    servers_tested: int
    servers_login: int
    max_wait_seconds: float
    clients_total: int  # of every pool: what max_client_conn limits
    client_headroom: int
    server_headroom: int
    headroom_processes: int | None  # more processes with dbtool's pool that PgBouncer accepts
    pools: list[dict[str, Any]]  # one per user: clients, servers, longest wait
    stats: dict[str, float]  # SHOW STATS for the database: transactions, queries, wait time

    @property
    def limit(self) -> str:
        """What bounds more processes with dbtool's pool, as people read it."""
        return f"PgBouncer's max_client_conn ({self.max_client_conn})"

    @property
    def full(self) -> bool:
        """Every server connection of the pool is taken and clients queue for one."""
        return self.clients_waiting > 0 and self.server_headroom == 0


# SHOW STATS' totals dbtool reports, where this PgBouncer has them (1.18 has no
# total_requests, which is what broke Debian's prometheus-pgbouncer-exporter 1.7): the
# times are microseconds there, seconds here.
_STATS = {
    "total_xact_count": ("transactions", 1), "total_query_count": ("queries", 1),
    "total_wait_time": ("wait_seconds", 1e-6), "total_xact_time": ("transaction_seconds", 1e-6),
    "total_query_time": ("query_seconds", 1e-6), "total_received": ("received_bytes", 1),
    "total_sent": ("sent_bytes", 1), "avg_wait_time": ("average_wait_seconds", 1e-6),
}  # fmt: skip


def admin_rows(conninfo: str, query: str) -> list[dict[str, Any]]:
    """Rows from PgBouncer's admin console, which speaks only the simple query protocol:
    asyncpg cannot read its rows, psycopg (the `pgbouncer` extra) can."""
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            "reading PgBouncer's admin console needs psycopg: install psycopg[binary], "
            "dbtool's 'pgbouncer' extra"
        ) from None
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        cursor = conn.execute(query)
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


async def pgbouncer_report(settings: Settings, admin_url: str) -> PgBouncerReport:
    """Read SHOW POOLS / CONFIG / VERSION from PgBouncer's admin console (in a thread:
    psycopg's connection here is a blocking one). Take it before connecting through the
    pooler: dbtool's own first query may have to queue in it."""
    from sqlalchemy.engine import make_url

    url = make_url(admin_url).set(drivername="postgresql")
    conninfo = url.render_as_string(hide_password=False)
    try:
        pools, config, version, stats = await asyncio.gather(
            asyncio.to_thread(admin_rows, conninfo, "SHOW POOLS"),
            asyncio.to_thread(admin_rows, conninfo, "SHOW CONFIG"),
            asyncio.to_thread(admin_rows, conninfo, "SHOW VERSION"),
            asyncio.to_thread(admin_rows, conninfo, "SHOW STATS"),
        )
    except OSError as exc:
        raise DatabaseUnavailableError(f"cannot read PgBouncer at {mask_url(url)}: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DatabaseUnavailableError(
                f"cannot read PgBouncer at {mask_url(url)}: {first}"
            ) from None
        raise
    read_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    limits = {row["key"]: row["value"] for row in config}
    database = settings.url.database or ""
    ours = [row for row in pools if row["database"] == database]
    keys = ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
    pool = {key: sum(as_int(row.get(key)) for row in ours) for key in keys}
    max_wait = max((_wait(row) for row in ours), default=0.0)
    clients = sum(as_int(row["cl_active"]) + as_int(row["cl_waiting"]) for row in pools)
    max_clients = as_int(limits.get("max_client_conn"))
    pool_size = as_int(limits.get("default_pool_size"))
    # Each user of the database has a pool of its own, of default_pool_size each.
    servers = sum(pool[key] for key in keys[2:])
    size = pool_size * max(len(ours), 1)
    client_headroom = max(max_clients - clients, 0)
    capacity = settings.pool_capacity
    totals = next((row for row in stats if row.get("database") == database), {})
    return PgBouncerReport(
        admin=mask_url(url),
        version=str(version[0].get("version", "")) if version else "",
        read_at=read_at,
        database=database,
        pool_mode=str(ours[0]["pool_mode"] if ours else limits.get("pool_mode", "")),
        max_client_conn=max_clients,
        default_pool_size=pool_size,
        clients_active=pool["cl_active"],
        clients_waiting=pool["cl_waiting"],
        servers_active=pool["sv_active"],
        servers_idle=pool["sv_idle"],
        servers_used=pool["sv_used"],
        servers_tested=pool["sv_tested"],
        servers_login=pool["sv_login"],
        max_wait_seconds=round(max_wait, 3),
        clients_total=clients,
        client_headroom=client_headroom,
        server_headroom=max(size - servers, 0),
        headroom_processes=client_headroom // capacity if capacity > 0 else None,
        pools=[
            {
                "user": row.get("user"),
                **{key: as_int(row.get(key)) for key in keys},
                "max_wait_seconds": round(_wait(row), 3),
            }
            for row in ours
        ],
        stats={
            name: round(as_int(totals[key]) * scale, 6)
            for key, (name, scale) in _STATS.items()
            if key in totals
        },
    )


def as_int(value: Any) -> int:
    """A console's number (text, or empty) as an int, 0 when there is none."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _wait(row: dict[str, Any]) -> float:
    return as_int(row.get("maxwait")) + as_int(row.get("maxwait_us")) / 1e6
