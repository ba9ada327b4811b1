"""`dbtool load` against `psql \\copy` of the same CSV files, in the same run (PostgreSQL).

- One table of 1,000,000 rows (`reading`: integers, text, a decimal, a boolean, a
  timestamp with its zone, a nullable text), a folder with `reading.csv`, into an empty
  table; psql copies the same file into an identical one.
- Ten tables that reference each other (regions to task tags), 100,000 rows in all, as a
  fixture folder: dbtool loads the folder in one command (foreign-key order, every value
  checked, all or nothing); psql copies the files one table at a time, one psql each, in
  the same order, as a hand-written script would.

Both load into the same (emptied) tables, with their keys and foreign keys to check.

The files are what `dbtool dump --format csv` writes.
"""

from __future__ import annotations

import csv
import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.data import postgres_database, psql
from benchmarks.harness import DBTOOL, ROOT, Row, clean_env, run_quiet, time_interleaved

MODELS = "benchmarks.fixture_models"
# Rows per table of the ten-table set (100,000 in all), parents first.
TEN = {
    "region": 10, "country": 200, "plan": 5, "org": 2_000, "team": 6_000, "tag": 100,
    "person": 20_000, "project": 6_000, "task": 45_685, "task_tag": 20_000,
}  # fmt: skip


def run(runs: int, postgres_url: str | None = None, quick: bool = False, **_: object) -> list[Row]:
    if not postgres_url:
        return []
    count = 100_000 if quick else 1_000_000
    repeats = max(3, runs // 5)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        one = folder / "one"
        one.mkdir()
        _readings(one / "reading.csv", count)
        ten = folder / "ten"
        ten.mkdir()
        _ten_tables(ten)
        return [
            *_compare(postgres_url, f"{MODELS}:single", one, ["reading"], repeats,
                      f"`load`, {count:,} rows, one table (PostgreSQL)", 0.5),
            *_compare(postgres_url, f"{MODELS}:Base", ten, list(TEN), repeats,
                      f"`load`, {sum(TEN.values()):,} rows in 10 tables (PostgreSQL)", 0.5),
        ]  # fmt: skip


def _compare(
    server_url: str, models: str, folder: Path, tables: list[str], repeats: int, title: str,
    target: float,
) -> list[Row]:  # fmt: skip
    env = {**clean_env(), "DBTOOL_MODELS": models, "PYTHONPATH": str(ROOT)}
    rows = sum(_lines(folder / f"{table}.csv") for table in tables)
    with postgres_database(server_url, env=env) as url:
        # Both into the same tables, emptied first: the same constraints to check.
        empty = f"TRUNCATE {', '.join(tables)}"

        def with_psql(_: int) -> float:
            psql(url, empty)
            start = time.perf_counter()
            for table in tables:
                path = folder / f"{table}.csv"
                header = path.open().readline().strip()
                psql(url, f"\\copy {table}({header}) FROM '{path}' (FORMAT csv, HEADER)")
            return time.perf_counter() - start

        def with_dbtool(_: int) -> float:
            psql(url, empty)
            return _timed(lambda: run_quiet([DBTOOL, "--url", url, "load", str(folder)], env=env))

        medians = time_interleaved({"dbtool": with_dbtool, "psql": with_psql}, repeats, warmup=1)
    return [
        Row(
            title, rows / medians["dbtool"], "`psql \\copy`" + (" table by table" if len(tables) > 1
            else ""), rows / medians["psql"], unit="rows/s", target=target,
            higher_is_better=True,
            note=f"{medians['dbtool']:.2f} s vs {medians['psql']:.2f} s, whole commands, into "
            "the same tables; dbtool in one transaction, in foreign-key order",
        )
    ]  # fmt: skip


def _timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _lines(path: Path) -> int:
    with path.open() as stream:
        return sum(1 for _ in stream) - 1


def _readings(path: Path, count: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["id", "sensor", "value", "ok", "taken_at", "note", "count"])
        for n in range(1, count + 1):
            taken = (start + timedelta(seconds=n)).isoformat()
            note = "" if n % 3 else f"checked by #{n % 97}"
            writer.writerow([n, f"sensor-{n % 500}", f"{n % 10_000}.{n % 10_000:04d}",
                             "true" if n % 2 else "false", taken, note, n % 1000])  # fmt: skip


def _ten_tables(folder: Path) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows: dict[str, Callable[[int], list[object]]] = {
        "region": lambda n: [n, f"Region {n}"],
        "country": lambda n: [n, 1 + n % TEN["region"], f"C{n}", f"Country {n}"],
        "plan": lambda n: [n, f"Plan {n}", f"{n * 10}.00"],
        "org": lambda n: [n, 1 + n % TEN["country"], 1 + n % TEN["plan"], f"Org {n}",
                          (start + timedelta(minutes=n)).isoformat()],
        "team": lambda n: [n, 1 + n % TEN["org"], f"Team {n}"],
        "tag": lambda n: [n, f"tag-{n}"],
        "person": lambda n: [n, 1 + n % TEN["team"], f"p{n}@example.com",
                             "true" if n % 5 else "false"],
        "project": lambda n: [n, 1 + n % TEN["org"], f"Project {n}",
                              json.dumps({"public": n % 2 == 0, "labels": [n % 7]})],
        "task": lambda n: [n, 1 + n % TEN["project"], 1 + n % TEN["person"], f"Task {n}",
                           "true" if n % 3 == 0 else "false",
                           (start + timedelta(hours=n)).isoformat()],
        # Two tags a task, each pair once.
        "task_tag": lambda n: [1 + (n - 1) // 2, 1 + (n - 1) % 2 * 50 + (n - 1) // 2 % 50],
    }  # fmt: skip
    headers = {
        "region": "id,name", "country": "id,region_id,code,name", "plan": "id,name,price",
        "org": "id,country_id,plan_id,name,created_at", "team": "id,org_id,name",
        "tag": "id,name", "person": "id,team_id,email,active",
        "project": "id,org_id,name,settings",
        "task": "id,project_id,person_id,title,done,due_at", "task_tag": "task_id,tag_id",
    }  # fmt: skip
    for table, make in rows.items():
        with (folder / f"{table}.csv").open("w", newline="") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(headers[table].split(","))
            writer.writerows(make(n) for n in range(1, TEN[table] + 1))
