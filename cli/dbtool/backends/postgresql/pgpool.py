"""pgpool-II, for pool-status: recognised on the database connection itself, its children
and their cached backend connections, and the room its num_init_children leaves.

pgpool-II answers its SHOW commands (pool_status, pool_pools, pool_nodes) on the port it
serves the database on, in the simple query protocol only (asyncpg's extended protocol
passes them through to PostgreSQL, which rejects them): they are read with psycopg, as
PgBouncer's console is. They are asked only when something stands between dbtool and the
server (the server's address is not the URL's), so that a direct connection never logs an
"unrecognized configuration parameter" error on the server.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dbtool.config import Settings


@dataclass(frozen=True)
class PgpoolReport:
    """pgpool-II's view, read at `read_at`. Each child serves one client at a time, so
    num_init_children bounds the clients; a child without a client keeps its backend
    connections open (connection_cache): idle sessions on the server that no process owns."""

    version: str
    read_at: str
    num_init_children: int
    max_pool: int
    connection_cache: bool
    children_with_client: int
    children_waiting: int  # waiting for a client
    cached_connections: int  # backend connections kept by children without a client
    cached_backend_pids: list[int]
    cached_by_application: list[dict[str, Any]]  # those, as pg_stat_activity counts them
    client_headroom: int
    headroom_processes: int | None
    nodes: list[dict[str, Any]]  # SHOW pool_nodes: host, port, status, role
    limit: str  # what bounds more processes, as people read it


async def proxied(conn: AsyncConnection, hosts: list[str]) -> bool:
    """Whether the server dbtool reached is not one of the URL's hosts (by address and
    port): a pooler or proxy stands in between. A Unix socket is never proxied."""
    address, port = (
        await conn.execute(text("SELECT host(inet_server_addr()), inet_server_port()"))
    ).one()
    if address is None:
        return False
    for host in hosts:
        name, _, number = host.rpartition(":")
        if int(number or 5432) != port:
            continue
        try:
            found = await asyncio.to_thread(socket.getaddrinfo, name, None)
        except OSError:
            continue
        if address in {str(entry[4][0]) for entry in found}:
            return False
    return True


async def pgpool_report(settings: Settings) -> PgpoolReport | None:
    """pgpool-II's children and limits, or None when what stands in between is not
    pgpool-II (or psycopg, the `pgbouncer` extra that reads such consoles, is missing)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None
    from dbtool.backends.base import default_application_name
    from dbtool.backends.postgresql.pgbouncer import as_int

    url = settings.url.set(drivername="postgresql")
    conninfo = url.render_as_string(hide_password=False)
    name = settings.application_name or default_application_name()
    try:
        found = await asyncio.to_thread(_read, conninfo, name)
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):
            return None  # not pgpool-II: PostgreSQL (through some proxy) said no
        raise
    status, pools, nodes, own_pid, by_pid = found
    config = {row.get("item"): row.get("value") for row in status}
    children: dict[str, list[dict[str, Any]]] = {}
    for row in pools:
        children.setdefault(str(row.get("pool_pid")), []).append(row)
    waiting = [rows for rows in children.values() if _waiting(rows)]
    cached = [
        as_int(row.get("pool_backendpid"))
        for rows in waiting
        for row in rows
        if row.get("database")
    ]
    # This very connection's backend joins the cache when it closes, as the application
    # name it gave (what pool-status then counts on the server).
    kept = [pid for pid in cached if pid > 0] + [own_pid]
    counts: dict[tuple[str, str], int] = {}
    for pid in kept:
        key = (name, "idle") if pid == own_pid else by_pid.get(pid, ("", "idle"))
        counts[key] = counts.get(key, 0) + 1
    limit = as_int(config.get("num_init_children"))
    headroom = max(limit - (len(children) - len(waiting)), 0)
    capacity = settings.pool_capacity
    return PgpoolReport(
        version=str(config.get("version") or config.get("pgpool_version") or ""),
        read_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        num_init_children=limit,
        max_pool=as_int(config.get("max_pool")),
        connection_cache=str(config.get("connection_cache")) in ("1", "on", "true"),
        children_with_client=len(children) - len(waiting),
        children_waiting=len(waiting),
        cached_connections=len(kept),
        cached_backend_pids=sorted(kept),
        cached_by_application=[
            {"application_name": app, "state": state, "count": count}
            for (app, state), count in counts.items()
        ],
        client_headroom=headroom,
        headroom_processes=headroom // capacity if capacity > 0 else None,
        nodes=[
            {key: row.get(key) for key in ("hostname", "port", "status", "role", "pg_role")}
            for row in nodes
        ],
        limit=f"pgpool-II's num_init_children ({limit})",
    )


def _read(conninfo: str, application: str) -> tuple[Any, ...]:
    """pgpool-II's SHOW commands and the cached backends' sessions, on one connection (one
    child, read in one moment; psycopg: the simple query protocol its SHOWs need)."""
    import psycopg

    with psycopg.connect(
        conninfo, autocommit=True, connect_timeout=10, application_name=application
    ) as conn:

        def rows(query: str) -> list[dict[str, Any]]:
            cursor = conn.execute(query)
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        status, pools, nodes = (rows(f"SHOW {name}") for name in ("pool_status", "pool_pools",
                                                                    "pool_nodes"))  # fmt: skip
        own = conn.execute("SELECT pg_backend_pid()").fetchone()
        sessions = conn.execute(
            "SELECT pid, coalesce(application_name, ''), coalesce(state, '')"
            " FROM pg_stat_activity WHERE backend_type = 'client backend'"
        ).fetchall()
    by_pid = {int(pid): (str(app), str(state)) for pid, app, state in sessions}
    return status, pools, nodes, int(own[0]) if own else 0, by_pid


def _waiting(rows: list[dict[str, Any]]) -> bool:
    """A child with no client: pgpool-II says "Wait for connection"."""
    return any("wait for connection" in str(row.get("status", "")).lower() for row in rows)
