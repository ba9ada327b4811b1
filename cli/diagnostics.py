"""What the database says about itself: reachability, server version, latency."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from sqlalchemy import text

from cli.db import Database


@dataclass(frozen=True)
class PingResult:
    database: str
    server: str
    version: str
    latency_ms: float


async def server_version(db: Database) -> tuple[str, str]:
    """(product, version), e.g. ("PostgreSQL", "15.19") or ("SQLite", "3.40.1")."""
    async with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            version = await conn.scalar(text("SHOW server_version"))
            return "PostgreSQL", str(version).split()[0]
        version = await conn.scalar(text("SELECT sqlite_version()"))
        return "SQLite", str(version)


async def ping(db: Database, *, rounds: int = 5) -> PingResult:
    """Round-trip latency of a trivial query (median of `rounds`), and the server version."""
    product, version = await server_version(db)
    timings = []
    async with db.engine.connect() as conn:
        for _ in range(rounds):
            start = time.perf_counter()
            await conn.exec_driver_sql("SELECT 1")
            timings.append((time.perf_counter() - start) * 1000)
    return PingResult(
        database=db.settings.masked_url,
        server=product,
        version=version,
        latency_ms=round(statistics.median(timings), 3),
    )
