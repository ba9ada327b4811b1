"""Start-up: `dbtool --version` and `--help` against the floors set by Python and Typer."""

from __future__ import annotations

from benchmarks.harness import DBTOOL, PYTHON, ROOT, Row, clean_env, time_interleaved, timed_process

MINIMAL_APP = str(ROOT / "benchmarks" / "minimal_typer_app.py")


def run(runs: int, **_: object) -> list[Row]:
    # Start-up figures are short and this is a shared machine: take four times the runs.
    runs *= 4
    env = clean_env()
    medians = time_interleaved(
        {
            "python -c pass": timed_process([PYTHON, "-c", "pass"], env=env),
            "python -c 'import typer'": timed_process([PYTHON, "-c", "import typer"], env=env),
            "dbtool --version": timed_process([DBTOOL, "--version"], env=env),
            "minimal Typer app --help": timed_process([PYTHON, MINIMAL_APP, "--help"], env=env),
            "dbtool --help": timed_process([DBTOOL, "--help"], env=env),
            "dbtool users --help": timed_process([DBTOOL, "users", "--help"], env=env),
        },
        runs,
    )
    ms = {name: seconds * 1000 for name, seconds in medians.items()}
    return [
        Row("`dbtool --version`", ms["dbtool --version"], "`python -c pass`", ms["python -c pass"]),
        Row(
            "`dbtool --version`",
            ms["dbtool --version"],
            "`python -c 'import typer'`",
            ms["python -c 'import typer'"],
            target=1.2,
        ),
        Row(
            "`dbtool --help`",
            ms["dbtool --help"],
            "minimal Typer app `--help`",
            ms["minimal Typer app --help"],
            target=1.15,
        ),
        Row(
            "`dbtool users --help`",
            ms["dbtool users --help"],
            "minimal Typer app `--help`",
            ms["minimal Typer app --help"],
        ),
    ]
