"""`dbtool cluster`'s output: a table (tab-separated when piped), JSON, OpenMetrics, and the
live view of --watch."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING

from dbtool.render import console as output
from dbtool.render.metrics import Family, render

if TYPE_CHECKING:
    from rich.console import RenderableType

    from dbtool.backends.base import ClusterMember, ClusterView

COLUMNS = ("Member", "Host", "Role", "State", "TL", "Receive lag", "Replay lag", "Lag", "Patroni")


def print_cluster(view: ClusterView, fmt: str, *, stream: bool = False) -> None:
    """One reading of the cluster in `fmt` (table, json, openmetrics); `stream`: one of
    many (--watch), so JSON is one object per line."""
    if fmt == "json":
        (output.print_json_line if stream else output.print_json)(view.as_dict())
    elif fmt == "openmetrics":
        sys.stdout.write(cluster_exposition(view))
        sys.stdout.flush()
    else:
        output.print_table(COLUMNS, (_row(m) for m in view.members), keep=("Member", "Role"))
        for warning in view.warnings:
            output.warning(warning)


def cluster_renderable(
    view: ClusterView, *, refreshed: datetime, interval: float, changes: list[str]
) -> RenderableType:
    """--watch on a terminal: when, the leader, the members, the warnings, and the last
    changes of leader seen."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from dbtool.render.console import out_console

    console = out_console()
    rows = [_row(member) for member in view.members]
    # Columns left out, in this order, until the table fits the terminal (never cut to "…").
    shown = list(COLUMNS)
    for spare in (None, "Patroni", "Receive lag", "TL", "Host"):
        if spare is not None:
            shown.remove(spare)
        fits = spare != "Host"  # the last try folds what still does not fit
        table = Table(header_style="bold")
        for name in shown:
            table.add_column(name, no_wrap=fits, overflow="fold")
        for member, row in zip(view.members, rows, strict=True):
            style = {"primary": "bold green", "unreachable": "red"}.get(member.role, "")
            cells = dict(zip(COLUMNS, row, strict=True))
            table.add_row(*(Text(cells[name], style=style) for name in shown))
        if table.__rich_measure__(console, console.options).maximum <= console.width:
            break
    parts: list[RenderableType] = [
        Text(f"updated {refreshed:%H:%M:%S}, every {interval:g}s · Ctrl-C to quit", style="dim"),
        Text.assemble(("leader ", "bold"), view.leader or "none"),
        table,
    ]
    parts += [Text.assemble(("warning: ", "bold yellow"), w) for w in view.warnings]
    parts += [Text(change, style="yellow") for change in changes[-5:]]
    return Group(*parts)


def _row(member: ClusterMember) -> tuple[str, ...]:
    patroni = " ".join(v for v in (member.patroni_role, member.patroni_state) if v) or "-"
    seconds = member.replay_lag_seconds
    return (
        member.name,
        member.host,
        member.role,
        member.state or "-",
        "-" if member.timeline is None else str(member.timeline),
        _bytes(member.receive_lag_bytes),
        _bytes(member.replay_lag_bytes),
        "-" if seconds is None else f"{seconds:g}s",
        patroni,
    )


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def cluster_exposition(view: ClusterView) -> str:
    """The cluster as OpenMetrics text."""
    return render(cluster_metrics(view))


def cluster_metrics(view: ClusterView) -> list[Family]:
    """The cluster as gauges, one sample per member (labelled member and host)."""
    up = Family("dbtool_cluster_member_up", "1 when the member answered dbtool's probe")
    primary = Family("dbtool_cluster_member_primary", "1 when the member takes writes")
    timeline = Family("dbtool_cluster_member_timeline", "The member's timeline")
    receive = Family(
        "dbtool_cluster_member_receive_lag_bytes", "WAL the standby has not received yet",
        unit="bytes",
    )  # fmt: skip
    replay = Family(
        "dbtool_cluster_member_replay_lag_bytes", "WAL the standby has not replayed yet",
        unit="bytes",
    )  # fmt: skip
    seconds = Family(
        "dbtool_cluster_member_replay_lag_seconds",
        "How long ago the oldest WAL not yet replayed was written (0 once caught up)",
        unit="seconds",
    )
    streaming = Family(
        "dbtool_cluster_member_receiver_streaming", "1 when a standby's WAL receiver streams"
    )
    for m in view.members:
        labels = {"member": m.name, "host": m.host}
        up.add(m.role != "unreachable", **labels)
        primary.add(m.role == "primary", **labels)
        timeline.add(m.timeline, **labels)
        receive.add(m.receive_lag_bytes, **labels)
        replay.add(m.replay_lag_bytes, **labels)
        seconds.add(m.replay_lag_seconds, **labels)
        if m.role == "standby":
            streaming.add(m.state == "streaming", **labels)
    members = Family("dbtool_cluster_members", "Members found").add(len(view.members))
    leaders = Family("dbtool_cluster_primaries", "Members that take writes (1 when healthy)")
    leaders.add(sum(m.role == "primary" for m in view.members))
    return [members, leaders, up, primary, timeline, receive, replay, seconds, streaming]
