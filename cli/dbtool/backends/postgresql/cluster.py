"""`dbtool cluster` on PostgreSQL: every host of a multi-host URL (and every member Patroni
knows, given its REST API), each asked on a connection of its own what it is.

Each member is read in one query: its role, timeline, WAL positions and (on a standby) its
WAL receiver. Lag is then measured against the primary's current position, read in the
same moment: the receive lag (WAL the standby has not even received: a stopped receiver
shows here, where received-minus-replayed would read 0) and the replay lag, in bytes and
seconds (0 s once caught up, however idle the cluster). Without a reachable primary each
standby is measured against the newest position its upstream reported.

Patroni's REST API (`/cluster`) is read only: dbtool never changes the cluster.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from dbtool.backends.base import ClusterMember, ClusterView, default_application_name
from dbtool.config import Settings

# One round trip per member. A standby's timeline is its WAL receiver's, else its last
# restart point's (pg_control_checkpoint(), where this user may call it), else Patroni's.
_MEMBER_SQL = """
WITH r AS (SELECT status, received_tli, latest_end_lsn, flushed_lsn,
                  sender_host, sender_port FROM pg_stat_wal_receiver)
SELECT pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery()
            THEN pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 END,
       pg_wal_lsn_diff(greatest(pg_last_wal_receive_lsn(), (SELECT flushed_lsn FROM r)),
                       '0/0')::float8,
       pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::float8,
       pg_wal_lsn_diff((SELECT latest_end_lsn FROM r), '0/0')::float8,
       (SELECT status FROM r),
       EXISTS (SELECT 1 FROM r),
       (SELECT sender_host || ':' || sender_port FROM r),
       CASE WHEN pg_is_in_recovery() THEN coalesce(
                (SELECT nullif(received_tli, 0) FROM r),
                CASE WHEN has_function_privilege('pg_control_checkpoint()', 'execute')
                     THEN (pg_control_checkpoint()).timeline_id END)
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END,
       extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
"""


@dataclass
class _Probe:
    """What one member said (or why it did not)."""

    host: str
    error: str | None = None
    standby: bool = False
    current: float | None = None  # a primary's current WAL position
    received: float | None = None
    replayed: float | None = None
    upstream_end: float | None = None  # the newest position its upstream reported
    receiver: str | None = None
    upstream: str | None = None
    timeline: int | None = None
    since_replay: float | None = None


async def cluster_view(
    settings: Settings, hosts: list[str], patroni: str | None, tls: ssl.SSLContext | None
) -> ClusterView:
    """Every member's state, the hosts of the URL and Patroni's members together."""
    warnings: list[str] = []
    members_of_patroni: dict[str, dict[str, Any]] = {}
    if patroni is not None:
        try:
            found = await asyncio.to_thread(_patroni_cluster, patroni, settings.connect_timeout)
        except (OSError, ValueError) as exc:
            warnings.append(f"Patroni's REST API at {patroni} did not answer: {exc}")
        else:
            for member in found.get("members", []):
                where = f"{member.get('host')}:{member.get('port')}"
                members_of_patroni[where] = member
    every = list(dict.fromkeys([*hosts, *members_of_patroni]))
    probes = await asyncio.gather(*(_probe(settings, host, tls) for host in every))
    members = _measure(list(probes), members_of_patroni)
    primaries = [member for member in members if member.role == "primary"]
    if len(primaries) > 1:
        warnings.append(
            f"{len(primaries)} members take writes ({', '.join(m.name for m in primaries)}): "
            "a split brain, or a demotion under way"
        )
    elif not primaries:
        warnings.append("no member takes writes: a failover under way, or the cluster is down")
    for member in members:
        if member.role == "standby" and member.state == "stopped":
            warnings.append(f"{member.name}: its WAL receiver is stopped (not replicating)")
    return ClusterView(
        members=members,
        leader=primaries[0].name if len(primaries) == 1 else None,
        checked_at=datetime.now(UTC),
        patroni=patroni,
        warnings=warnings,
    )


# What target_session_attrs asks for -> whether a probed host gives it.
_WANTED: dict[str, Callable[[_Probe], bool]] = {
    "read-write": lambda p: not p.standby, "primary": lambda p: not p.standby,
    "read-only": lambda p: p.standby, "standby": lambda p: p.standby,
    "prefer-standby": lambda p: True, "any": lambda p: True,
}  # fmt: skip


async def explain_hosts(
    settings: Settings, hosts: list[str], tls: ssl.SSLContext | None
) -> str | None:
    """ "no read-write host among 3: 2 standbys, 1 refusing connections" (None when one
    would do now: the next attempt will find it)."""
    from dbtool.wording import counted

    wanted = str(settings.url.query.get("target_session_attrs") or "any")
    probes = await asyncio.gather(*(_probe(settings, host, tls) for host in hosts))
    fits = _WANTED.get(wanted, _WANTED["any"])
    if any(p.error is None and fits(p) for p in probes):
        return None
    kinds: dict[str, list[str]] = {}
    for p in probes:
        kind = p.error if p.error is not None else ("standby" if p.standby else "primary")
        kinds.setdefault(kind, []).append(p.host)
    parts = [
        (counted(len(where), kind) if kind in ("standby", "primary") else f"{len(where)} {kind}")
        + f" ({', '.join(where)})"
        for kind, where in kinds.items()
    ]
    label = "" if wanted == "any" else f"{wanted} "
    return f"no {label}host among {len(hosts)}: {', '.join(parts)}"


async def _probe(settings: Settings, host: str, tls: ssl.SSLContext | None) -> _Probe:
    """One member asked on a connection of its own (`tls`: the URL's SSL context)."""
    import asyncpg

    name, _, port = host.rpartition(":")
    url = settings.url
    context: ssl.SSLContext | str | None = tls
    mode = url.query.get("ssl")
    if context is None and isinstance(mode, str) and mode not in ("disable", "allow"):
        context = mode
    probe = _Probe(host)
    started = time.monotonic()
    try:
        conn = await asyncpg.connect(
            host=name, port=int(port or 5432), user=url.username, password=url.password,
            database=url.database or "postgres", ssl=context or False,
            timeout=min(settings.connect_timeout, 5.0),
            server_settings={"application_name": settings.application_name
                             or default_application_name()},
        )  # fmt: skip
    except Exception as exc:
        probe.error = _reason(exc, time.monotonic() - started)
        return probe
    try:
        row = await conn.fetchrow(_MEMBER_SQL, timeout=5)
    except Exception as exc:
        probe.error = _reason(exc, time.monotonic() - started)
        return probe
    finally:
        await conn.close()
    assert row is not None
    values = tuple(row)
    probe.standby, probe.current, probe.received, probe.replayed = values[:4]
    probe.upstream_end, status, has_receiver, probe.upstream = values[4:8]
    probe.timeline, probe.since_replay = values[8:]
    if probe.standby:
        probe.receiver = status or ("unknown" if has_receiver else "stopped")
    return probe


def _reason(exc: BaseException, seconds: float) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refusing connections"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {seconds:.1f}s"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first


def _measure(probes: list[_Probe], patroni: dict[str, dict[str, Any]]) -> list[ClusterMember]:
    primaries = [p for p in probes if p.error is None and not p.standby and p.current is not None]
    reference = max((p.current for p in primaries if p.current is not None), default=None)
    members = []
    for probe in probes:
        known = patroni.get(probe.host, {})
        name = str(known.get("name") or probe.host)
        if probe.error is not None:
            members.append(ClusterMember(
                name=name, host=probe.host, role="unreachable", state=probe.error,
                timeline=_int(known.get("timeline")), patroni_role=known.get("role"),
                patroni_state=known.get("state"),
            ))  # fmt: skip
            continue
        member = ClusterMember(
            name=name, host=probe.host, role="standby" if probe.standby else "primary",
            state=probe.receiver if probe.standby else "running",
            timeline=probe.timeline or _int(known.get("timeline")),
            wal_position=_int(probe.replayed if probe.standby else probe.current),
            upstream=probe.upstream, patroni_role=known.get("role"),
            patroni_state=known.get("state"),
        )  # fmt: skip
        if probe.standby:
            member = _with_lag(member, probe, reference)
        members.append(member)
    return members


def _with_lag(member: ClusterMember, probe: _Probe, reference: float | None) -> ClusterMember:
    """The standby's lag behind the primary's current position (or, with no primary to
    ask, behind what its upstream last reported)."""
    target = reference if reference is not None else max(
        (value for value in (probe.upstream_end, probe.received) if value is not None),
        default=None,
    )  # fmt: skip
    if target is None:
        return member
    received = probe.received if probe.received is not None else probe.replayed
    replayed = probe.replayed if probe.replayed is not None else received
    receive_lag = None if received is None else max(int(target - received), 0)
    replay_lag = None if replayed is None else max(int(target - replayed), 0)
    seconds = None
    if replay_lag == 0:
        seconds = 0.0
    elif probe.since_replay is not None:
        seconds = round(max(probe.since_replay, 0.0), 3)
    return replace(
        member, receive_lag_bytes=receive_lag, replay_lag_bytes=replay_lag,
        replay_lag_seconds=seconds, measured_against="primary" if reference else "upstream",
    )  # fmt: skip


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _patroni_cluster(base: str, timeout: float) -> dict[str, Any]:
    """GET /cluster of Patroni's REST API (read only)."""
    url = base.rstrip("/") + "/cluster"
    try:
        with urllib.request.urlopen(url, timeout=min(timeout, 5.0)) as answer:
            found = json.loads(answer.read() or b"{}")
    except urllib.error.URLError as exc:
        raise OSError(str(exc.reason)) from None
    if not isinstance(found, dict):
        raise ValueError("not Patroni's /cluster answer")
    return found
