"""`python -m benchmarks`: run every benchmark and print one Markdown table.

python -m benchmarks                      # everything, 15 runs per figure
python -m benchmarks --runs 5 --only startup commands
python -m benchmarks --postgres-url postgresql://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from datetime import date

from benchmarks.harness import HEADER, Row, compile_package

# Each module has run(runs, postgres_url=..., quick=...) -> list[Row]. Later issues add theirs.
SUITES = [
    "startup", "commands", "everyday", "sessions", "imports", "exports", "lists", "mariadb",
    "fixtures", "probes",
]  # fmt: skip
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
        cpu = f"{len(names)} x {names[0]}" if names else cpu
    except OSError:
        pass
    return f"{cpu}; Python {platform.python_version()}; {platform.system()} {platform.release()}"


def postgres_reachable(url: str) -> bool:
    import asyncio

    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=15, help="runs per figure (median)")
    parser.add_argument("--only", nargs="+", choices=SUITES, help="run only these suites")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("DBTOOL_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="server for the PostgreSQL figures (skipped when it does not answer)",
    )
    parser.add_argument("--quick", action="store_true", help="smaller data sets")
    args = parser.parse_args()

    compile_package()
    postgres = args.postgres_url if postgres_reachable(args.postgres_url) else None
    if postgres is None:
        print(
            f"note: PostgreSQL at {args.postgres_url} does not answer; its figures are skipped",
            file=sys.stderr,
        )
    started = time.perf_counter()
    # The table is printed as it grows (a long run that fails late keeps what it measured).
    print(HEADER, flush=True)
    failed = []
    for name in args.only or SUITES:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        suite = importlib.import_module(f"benchmarks.{name}")
        try:
            rows: list[Row] = suite.run(args.runs, postgres_url=postgres, quick=args.quick)
        except Exception as exc:  # report it, and go on with the other suites
            print(f"error: the {name} benchmarks failed: {exc!r}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        for row in rows:
            print(row.markdown(), flush=True)
    print(
        f"\n{date.today().isoformat()}, {machine()}, {args.runs} runs per figure (medians), "
        f"{time.perf_counter() - started:.0f} s"
    )
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
