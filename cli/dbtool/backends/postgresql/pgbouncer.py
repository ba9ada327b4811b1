"""PgBouncer's admin console, for pool-status: PgBouncer's limits and the pool of
dbtool's database in it, beside what the server sees."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from dbtool.config import Settings, mask_url
from dbtool.errors import ConfigError, DatabaseUnavailableError


@dataclass(frozen=True)
class PgBouncerReport:
    """PgBouncer's view: its limits, and the pool of dbtool's database in it."""

    admin: str  # the admin console's URL, password masked
    version: str
    database: str
    pool_mode: str
    max_client_conn: int
    default_pool_size: int
    clients_active: int
    clients_waiting: int
    servers_active: int
    servers_idle: int
    servers_other: int  # used, tested, logging in
    max_wait_seconds: float
    clients_total: int  # of every pool: what max_client_conn limits
    client_headroom: int
    server_headroom: int
    headroom_processes: int | None  # more processes with dbtool's pool that PgBouncer accepts


def _admin_rows(conninfo: str, query: str) -> list[dict[str, Any]]:
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
        pools, config, version = await asyncio.gather(
            asyncio.to_thread(_admin_rows, conninfo, "SHOW POOLS"),
            asyncio.to_thread(_admin_rows, conninfo, "SHOW CONFIG"),
            asyncio.to_thread(_admin_rows, conninfo, "SHOW VERSION"),
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
    limits = {row["key"]: row["value"] for row in config}
    database = settings.url.database or ""
    ours = [row for row in pools if row["database"] == database]
    pool = {key: sum(int(row.get(key) or 0) for row in ours) for key in (
        "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"
    )}  # fmt: skip
    max_wait = max((int(row["maxwait"]) + int(row.get("maxwait_us") or 0) / 1e6
                    for row in ours), default=0.0)  # fmt: skip
    clients = sum(int(row["cl_active"]) + int(row["cl_waiting"]) for row in pools)
    max_clients = int(limits.get("max_client_conn", 0))
    pool_size = int(limits.get("default_pool_size", 0))
    servers = pool["sv_active"] + pool["sv_idle"] + pool["sv_used"] + pool["sv_tested"]
    servers += pool["sv_login"]
    client_headroom = max(max_clients - clients, 0)
    capacity = settings.pool_capacity
    return PgBouncerReport(
        admin=mask_url(url),
        version=str(version[0].get("version", "")) if version else "",
        database=database,
        pool_mode=str(ours[0]["pool_mode"] if ours else limits.get("pool_mode", "")),
        max_client_conn=max_clients,
        default_pool_size=pool_size,
        clients_active=pool["cl_active"],
        clients_waiting=pool["cl_waiting"],
        servers_active=pool["sv_active"],
        servers_idle=pool["sv_idle"],
        servers_other=pool["sv_used"] + pool["sv_tested"] + pool["sv_login"],
        max_wait_seconds=round(max_wait, 3),
        clients_total=clients,
        client_headroom=client_headroom,
        server_headroom=max(pool_size - servers, 0),
        headroom_processes=client_headroom // capacity if capacity > 0 else None,
    )
