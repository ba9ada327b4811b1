"""The README and help text stay true to the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from dbtool.app import app
from dbtool.config import ALL_SETTING_NAMES
from dbtool.errors import ExitCode
from tests.helpers import dbtool_executable

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
# Everything a reader has: the front door and the house.
ALL_DOCS = "\n".join(path.read_text() for path in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))])


def all_commands() -> dict[str, Any]:
    """Every command, subcommands as "users add", as the CLI resolves them (lazily)."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.main.TyperGroup)
    ctx = typer.Context(group)
    commands: dict[str, Any] = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, typer.main.TyperGroup):
            commands |= {f"{name} {sub}": command.get_command(ctx, sub)
                         for sub in command.list_commands(ctx)}  # fmt: skip
        else:
            commands[name] = command
    return commands


def readme_test_command() -> str:
    section = README.split("## Tests", 1)[1]
    match = re.search(r"```bash\n(.+?)\n```", section)
    assert match, "the README's Tests section has no command"
    return match.group(1)


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_test_command() in ci.splitlines()


def test_the_readme_stays_a_front_door() -> None:
    """About 200 lines at most; the rest lives in docs/, and every link there resolves."""
    assert len(README.splitlines()) <= 200
    for path in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", path.read_text()):
            assert (path.parent / target).is_file(), (path, target)


def test_the_command_reference_is_the_real_help() -> None:
    """docs/commands.md is generated from every command's --help (tests/cli_reference.py)."""
    from tests.cli_reference import reference

    assert (DOCS / "commands.md").read_text() == reference(), (
        "docs/commands.md is out of date: python -m tests.cli_reference > docs/commands.md"
    )


@pytest.mark.parametrize("name", sorted(all_commands()))
def test_help_paragraphs_are_one_line_each(name: str) -> None:
    """Rich wraps help to the terminal; a docstring's own line breaks must not survive into
    it, or sentences break in the middle ("run the migrations" / "to head.")."""
    text = all_commands()[name].help or ""
    for paragraph in text.split("\n\n"):
        for line in paragraph.splitlines()[1:]:
            assert line.startswith((" ", "-", "*")), (name, paragraph)


@pytest.mark.parametrize("width", [80, 120])
def test_help_reads_as_sentences_at_any_width(width: int) -> None:
    from tests.cli_reference import help_text

    flat = " ".join(line.strip("│ ") for line in help_text(width=width).splitlines())
    assert "run the migrations to head. Safe to re-run" in " ".join(flat.split())
    short = [line for line in help_text("init", width=width).splitlines() if line.strip()]
    assert all(len(line) <= width for line in short)


@pytest.mark.parametrize("name", sorted(all_commands()))
def test_every_command_has_help_and_is_in_the_readme(name: str) -> None:
    command = all_commands()[name]
    assert command.help, f"{name} has no help text"
    assert f"`{name.split()[-1]}" in ALL_DOCS or f"dbtool {name}" in ALL_DOCS, name


def test_every_setting_is_in_the_settings_table() -> None:
    settings = (DOCS / "settings.md").read_text()
    for setting in (*ALL_SETTING_NAMES, "DBTOOL_USER_PASSWORD"):
        assert f"| `{setting}` |" in settings, setting


def test_exit_code_table_matches_the_code() -> None:
    exit_codes = (DOCS / "exit-codes.md").read_text()
    table = dict(re.findall(r"^\| (\d+) \| (.+) \|$", exit_codes, re.MULTILINE))
    assert sorted(int(code) for code in table) == sorted(int(code) for code in ExitCode)


def test_console_script_and_module_entry_points() -> None:
    script = subprocess.run([dbtool_executable(), "--version"], capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout.startswith("dbtool ")
    module = subprocess.run(
        [sys.executable, "-m", "dbtool", "--help"], capture_output=True, text=True
    )
    assert module.returncode == 0 and "users" in module.stdout


def test_readme_application_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The FastAPI example under "Use from your application" works as printed."""
    import asyncio

    import httpx

    section = (DOCS / "guides" / "application.md").read_text()
    code = re.search(r"```python\n(.+?)\n```", section, re.DOTALL)
    assert code
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'app.db'}")
    from tests.helpers import Dbtool

    assert Dbtool(f"sqlite:///{tmp_path / 'app.db'}")("init").exit_code == 0
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    app = namespace["app"]

    async def exercise() -> tuple[int, dict[str, str]]:
        async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                created = await client.post(
                    "/users", json={"email": "Ada@Example.com", "password": "long enough pw"}
                )
                shown = await client.get("/users/ada")
                return created.status_code, shown.json()

    status, shown = asyncio.run(exercise())
    assert status == 201
    assert shown == {"email": "ada@example.com"}
