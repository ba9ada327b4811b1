"""Timing helpers shared by the benchmarks: interleaved runs, medians, one table."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DBTOOL = str(Path(PYTHON).parent / "dbtool")


@dataclass(frozen=True)
class Row:
    """One line of the results table: a dbtool figure beside its reference."""

    benchmark: str
    value: float
    reference_name: str
    reference: float
    unit: str = "ms"
    target: float | None = None  # the most (or, if higher_is_better, the least) ratio allowed
    higher_is_better: bool = False
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.reference if self.reference else float("nan")

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        met = self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target
        return "met" if met else "**missed**"

    def markdown(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        target = f"{sign} {self.target:g}x" if self.target is not None else "-"
        return (
            f"| {self.benchmark} | {_fmt(self.value)} {self.unit} | {self.reference_name} | "
            f"{_fmt(self.reference)} {self.unit} | {self.ratio:.2f}x | {target} | "
            f"{self.verdict} | {self.note} |"
        )


HEADER = (
    "| Benchmark | dbtool | Reference | Reference value | Ratio | Target | Result | Note |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- |"
)


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.3f}"


def run_quiet(
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
) -> None:
    done = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


def time_interleaved(
    commands: Mapping[str, Callable[[int], float]], runs: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds of each callable, run round-robin so drift hits all of them alike.

    Each callable receives the run number and returns the seconds it measured.
    """
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for number in range(-warmup, runs):
        for name, measure in commands.items():
            seconds = measure(number)
            if number >= 0:
                samples[name].append(seconds)
    return {name: statistics.median(values) for name, values in samples.items()}


def timed_process(
    argv: Sequence[str] | Callable[[int], Sequence[str]],
    *,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    before: Callable[[int], None] | None = None,
    cwd: str | Path | None = None,
) -> Callable[[int], float]:
    """A measure function: wall time of one subprocess (setup in `before` is not timed)."""

    def measure(number: int) -> float:
        if before is not None:
            before(number)
        command = argv(number) if callable(argv) else argv
        start = time.perf_counter()
        run_quiet(command, stdin=stdin, env=env, cwd=cwd)
        return time.perf_counter() - start

    return measure


# Reports the modules a command loaded, in load order, when it exits.
_MODULE_PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("\\nMODULES=" + json.dumps(list(sys.modules)) + "\\n"))
sys.argv = ["dbtool", *json.loads(sys.argv[1])]
from dbtool.app import main
main()
"""


def modules_loaded_by(
    args: Sequence[str], *, stdin: str | None = None, cwd: str | Path | None = None
) -> list[str]:
    """The modules `dbtool ARGS` loads beyond a bare interpreter, excluding dbtool's own."""
    done = subprocess.run(
        [PYTHON, "-c", _MODULE_PROBE, json.dumps(list(args))],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )
    loaded: list[str] = json.loads(done.stderr.rsplit("MODULES=", 1)[1])
    bare = subprocess.run(
        [PYTHON, "-c", "import sys, json; print(json.dumps(list(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    baseline = set(json.loads(bare.stdout)) | {"__main__"}
    return [
        m for m in loaded if m not in baseline and m != "dbtool" and not m.startswith("dbtool.")
    ]


def import_only_command(modules: Sequence[str]) -> list[str]:
    """A command that imports exactly `modules` (in order) and does nothing else."""
    code = (
        "import importlib\n"
        f"for name in {list(modules)!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        pass\n"
    )
    return [PYTHON, "-c", code]


def compile_package() -> None:
    """Bytecode for dbtool's own modules, as a wheel install has (an editable install under
    PYTHONDONTWRITEBYTECODE=1 would otherwise recompile them on every start)."""
    import compileall

    compileall.compile_dir(str(ROOT / "cli"), quiet=1)
    compileall.compile_dir(str(ROOT / "benchmarks"), quiet=1)


def clean_env() -> dict[str, str]:
    """The environment without dbtool settings that could change what is measured, and
    without PYTHONDONTWRITEBYTECODE: an installed dbtool has its modules compiled (pip does it
    on install), while an editable checkout under that variable would compile every module
    it loads on every run (measured here: about 50 ms per command)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DBTOOL_", "DATABASE_URL")) and k != "PYTHONDONTWRITEBYTECODE"
    }


def admin_sql(server_url: str, sql: str) -> None:
    """Run one statement (CREATE/DROP DATABASE, TRUNCATE ...) through asyncpg."""
    import asyncio

    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def peak_rss_kib(argv: Sequence[str], *, env: dict[str, str] | None = None) -> float:
    """Peak resident memory (KiB) of one run of `argv`, its output discarded.

    Measured by a small parent that only starts it: the maximum RSS Linux reports for a child
    also counts the memory it shared with its parent when forked, which for a (large)
    benchmark process would hide the command's own figure.
    """
    measure = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL,"
        " stderr=subprocess.PIPE, text=True)\n"
        "if done.returncode:\n"
        "    sys.exit(done.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", measure, *argv], capture_output=True, text=True, env=env, timeout=1200
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr}")
    return float(done.stdout)  # KiB on Linux


def memory_row(benchmark: str, rss_kib: dict[int, float]) -> Row:
    """Peak memory at the largest size beside the smallest: flat means a ratio near 1."""
    small, large = min(rss_kib), max(rss_kib)
    return Row(
        benchmark,
        rss_kib[large] / 1024,
        f"peak RSS, {small:,} rows",
        rss_kib[small] / 1024,
        unit="MiB",
        target=1.2,
    )
