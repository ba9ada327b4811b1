"""Production operations on a real HA cluster: Patroni 3 over etcd (Debian's packages), three
members on loopback (tests/topology.py). Commands under --wait ride switchovers and a
leader's death, exactly once; `dbtool cluster` shows every member and survives them; the
probes (`ping --require`, `--max-lag`) and the OpenMetrics output are what operators plug in.

The cluster is started once for the module (about 10 s); without patroni and etcd the tests
skip, unless DBTOOL_REQUIRE_PATRONI=1 (.ci/run sets it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.helpers import Dbtool, assert_clean_error, dbtool_executable, run_sql
from tests.topology import Patroni, TopologyError

pytestmark = pytest.mark.postgres
REQUIRE_PATRONI = os.environ.get("DBTOOL_REQUIRE_PATRONI") == "1"
PASSWORD = "long enough pw"


@pytest.fixture(scope="module")
def patroni() -> Iterator[Patroni]:
    try:
        cluster = Patroni.create()
    except TopologyError as exc:
        if REQUIRE_PATRONI:
            pytest.fail(f"DBTOOL_REQUIRE_PATRONI=1 but {exc}")
        pytest.skip(str(exc))
    yield cluster
    cluster.remove()


def healthy(cluster: Patroni) -> None:
    """Wait for one leader and two streaming replicas (the state every test starts from)."""
    cluster.wait_for(lambda: cluster.leader() is not None and cluster.streaming() == 2, 120,
                     "healthy cluster")  # fmt: skip


def spawn(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [dbtool_executable(), "--url", url, *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, "DBTOOL_USER_PASSWORD": PASSWORD},
    )  # fmt: skip


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def during(
    event: object, commands: list[tuple[float, list[str], str]]
) -> list[tuple[int, str, str]]:
    """Start each command `delay` seconds after `event` begins (in a thread: a switchover's
    REST call blocks until it is done), and return how each ended."""
    processes: list[subprocess.Popen[str]] = []
    trigger = threading.Thread(target=event)  # type: ignore[arg-type]
    started = time.monotonic()
    trigger.start()
    for delay, args, url in sorted(commands, key=lambda command: command[0]):
        time.sleep(max(0.0, started + delay - time.monotonic()))
        processes.append(spawn(url, *args))
    trigger.join(60)
    return [finish(process) for process in processes]


# --- --wait rides switchovers and a leader's death, exactly once ---------------------------


def init_during(patroni: Patroni, event: object) -> list[str]:
    """Four `init --wait 60 --create-database` runs started 0-7 s into `event`: each exits
    0 having created the tables; the new databases' names."""
    names = [f"db_{uuid.uuid4().hex[:8]}" for _ in range(4)]
    args = ["init", "--wait", "60", "--create-database", "--json"]
    batch = [
        (delay, args, patroni.url(name))
        for delay, name in zip((0.0, 1.5, 3.5, 7.0), names, strict=True)
    ]
    outcomes = during(event, batch)
    failures = [(code, err) for code, _, err in outcomes if code != 0]
    assert not failures, failures
    assert all(json.loads(out)["created"] == ["users"] for _, out, _ in outcomes), outcomes
    return names


def tables_once(patroni: Patroni, names: list[str]) -> None:
    for name in names:
        found = run_sql(patroni.url(name), "SELECT count(*) FROM pg_class WHERE relname = 'users'")
        assert found == [(1,)]


def test_init_rides_switchovers(patroni: Patroni) -> None:
    """16 `init --wait 60 --create-database` runs, each started 0-7 s into a switchover:
    every one exits 0, and each database has its table once (the leader's death is the
    module's last test)."""
    names = []
    for _ in range(4):
        healthy(patroni)
        names += init_during(patroni, patroni.switchover)
    tables_once(patroni, names)


def test_users_add_during_switchovers_makes_exactly_one_row(patroni: Patroni) -> None:
    healthy(patroni)
    url = patroni.url("accounts")
    assert Dbtool(url)("init", "--create-database", "--wait", "60").exit_code == 0
    emails = [f"person{n}@example.com" for n in range(8)]
    for half in (emails[:4], emails[4:]):
        healthy(patroni)
        batch = [
            (delay, ["users", "add", email, "--if-not-exists", "--wait", "60"], url)
            for delay, email in zip((0.0, 1.0, 2.5, 5.0), half, strict=True)
        ]
        outcomes = during(patroni.switchover, batch)
        failed = [err for code, _, err in outcomes if code != 0]
        assert not failed, "\n".join(failed)  # whole, for the error's reason
    rows = run_sql(url, "SELECT email, count(*) FROM users GROUP BY email ORDER BY email")
    assert rows == [(email, 1) for email in sorted(emails)]


# --- dbtool cluster --------------------------------------------------------------------------


def test_cluster_shows_every_member_with_patroni(patroni: Patroni) -> None:
    healthy(patroni)
    leader = patroni.leader()
    result = Dbtool(patroni.url())("cluster", "--patroni", patroni.rest(1), "--json")
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["leader"] == f"m{leader}"
    members = {member["name"]: member for member in view["members"]}
    assert sorted(members) == ["m0", "m1", "m2"]
    for name, member in members.items():
        primary = name == f"m{leader}"
        assert member["role"] == ("primary" if primary else "standby")
        assert member["patroni_role"] == ("leader" if primary else "replica")
        assert member["timeline"] == members[f"m{leader}"]["timeline"]
        if not primary:
            assert member["state"] == "streaming"
            assert member["receive_lag_bytes"] is not None
            assert member["replay_lag_seconds"] is not None
    assert view["warnings"] == []
    table = Dbtool(patroni.url())("cluster")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["Member", "Host", "Role"]
    assert sorted(line.split("\t")[2] for line in lines[1:]) == ["primary", "standby", "standby"]


def test_cluster_metrics_parse_as_openmetrics(patroni: Patroni) -> None:
    healthy(patroni)
    result = Dbtool(patroni.url())("cluster", "--patroni", patroni.rest(0), "--format",
                                   "openmetrics")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(result.stdout)}
    assert families["dbtool_cluster_primaries"].samples[0].value == 1
    primary = {
        s.labels["member"]: s.value for s in families["dbtool_cluster_member_primary"].samples
    }
    assert primary == {f"m{n}": float(n == patroni.leader()) for n in range(3)}
    lag = families["dbtool_cluster_member_replay_lag_bytes"]
    assert lag.unit == "bytes" and len(lag.samples) == 2


def test_cluster_watch_survives_a_switchover_and_marks_it(patroni: Patroni) -> None:
    healthy(patroni)
    before = patroni.leader()
    process = spawn(
        patroni.url(),
        "cluster",
        "--watch",
        "--interval",
        "0.5",
        "--json",
        "--patroni",
        patroni.rest(2),
    )
    try:
        time.sleep(2)
        patroni.switchover()
        patroni.wait_for(lambda: patroni.leader() not in (None, before), 60, "new leader")
        time.sleep(3)
    finally:
        process.send_signal(signal.SIGINT)
    code, out, err = finish(process, 30)
    assert code == 0, err
    leaders = [json.loads(line)["leader"] for line in out.splitlines()]
    assert leaders[0] == f"m{before}" and leaders[-1] == f"m{patroni.leader()}"
    assert "leader m" in err and "Traceback" not in err


# --- probes -----------------------------------------------------------------------------------


def test_ping_require_and_max_lag_gate_on_role(patroni: Patroni) -> None:
    healthy(patroni)
    leader = patroni.leader()
    assert leader is not None
    replica = (leader + 1) % 3
    on_primary, on_replica = Dbtool(patroni.member_url(leader)), Dbtool(patroni.member_url(replica))
    assert on_primary("ping", "--require", "primary", "--max-lag", "1s").exit_code == 0
    assert on_replica("ping", "--require", "standby", "--max-lag", "16MB").exit_code == 0
    wrong = on_replica("ping", "--require", "primary")
    assert_clean_error(wrong, 6, "primary required", "standby")
    answer = json.loads(on_primary("ping", "--require", "standby", "--json").stdout)
    assert answer["ok"] is False and "standby required" in answer["problem"]


def test_init_rides_the_leaders_death(patroni: Patroni) -> None:
    """The leader's machine dies (Patroni and PostgreSQL killed): four runs of `init --wait
    60` started 0-7 s into it all end on the new leader (last: the member stays dead)."""
    healthy(patroni)
    tables_once(patroni, init_during(patroni, patroni.kill_leader))
