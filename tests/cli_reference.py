"""The command reference, docs/commands.md, generated from the real command definitions
(the help, usage, arguments, options and examples that `--help` shows), so that it cannot
drift: tests/test_docs.py compares the file with this output. Markdown, not a capture of
the terminal: it reads the same whatever Rich version draws `--help`.

Regenerate after changing a command:

    python -m tests.cli_reference > docs/commands.md
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import typer.main

from tests.helpers import dbtool_executable

HEADER = """# Command reference

Every command, generated from its definition (`python -m tests.cli_reference >
docs/commands.md`; a test fails when this file and the commands differ). `dbtool COMMAND
--help` shows the same. The guides explain the commands in depth:
[schema and diagnostics](guides/schema-and-diagnostics.md), [users](guides/users.md),
[import and export](guides/import-export.md); [exit codes](exit-codes.md),
[settings](settings.md).
"""


def help_text(*command: str, width: int = 100) -> str:
    """`dbtool COMMAND --help` as a terminal of `width` columns shows it (without colour)."""
    env = {**os.environ, "COLUMNS": str(width), "NO_COLOR": "1", "TERM": "dumb"}
    env.pop("FORCE_COLOR", None)
    done = subprocess.run(
        [dbtool_executable(), *command, "--help"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    return "\n".join(line.rstrip() for line in done.stdout.strip("\n").splitlines())


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _param_row(param: Any) -> tuple[str, str] | None:
    if getattr(param, "hidden", False):
        return None
    names = [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
    if param.param_type_name == "argument":
        label = f"`{param.metavar or param.name.upper()}`"
    else:
        metavar = "" if param.is_flag else f" {param.metavar or _choices(param) or 'VALUE'}"
        label = ", ".join(f"`{name}{metavar}`" for name in names)
    description = _cell(param.help or "")
    default = param.default
    if getattr(param, "show_default", False) and default not in (None, False, (), []):
        shown = getattr(default, "value", default)
        description += f" (default: `{shown}`)"
    return label, description


def _choices(param: Any) -> str:
    choices = getattr(param.type, "choices", None)
    return "{" + ",".join(str(getattr(c, "value", c)) for c in choices) + "}" if choices else ""


def _examples(epilog: str | None) -> list[str]:
    if not epilog:
        return []
    lines = [line.strip().replace("\\[", "[") for line in epilog.splitlines()]
    return [line for line in lines if line and not line.startswith("[bold]")]


def _section(title: str, command: Any, ctx: Any, heading: str | None = None) -> list[str]:
    parts = [f"## {heading or title}", "", (command.help or "").strip(), ""]
    usage = " ".join(command.collect_usage_pieces(ctx))
    parts += [f"Usage: `{title} {usage}`", ""]
    rows = [row for param in command.params if (row := _param_row(param)) is not None]
    if rows:
        parts += ["| | |", "|---|---|", *(f"| {label} | {text} |" for label, text in rows), ""]
    examples = _examples(command.epilog)
    if examples:
        parts += ["Examples:", "", "```bash", *examples, "```", ""]
    return parts


def reference() -> str:
    from dbtool.app import app

    root = typer.main.get_command(app)
    root_ctx = typer.Context(root, info_name="dbtool")
    parts = [HEADER, *_section("dbtool", root, root_ctx, heading="dbtool (global options)")]
    for name in root.list_commands(root_ctx):
        command = root.get_command(root_ctx, name)
        ctx = typer.Context(command, info_name=name, parent=root_ctx)
        if isinstance(command, typer.main.TyperGroup):
            parts += _section(f"dbtool {name}", command, ctx)
            for sub in command.list_commands(ctx):
                subcommand = command.get_command(ctx, sub)
                sub_ctx = typer.Context(subcommand, info_name=sub, parent=ctx)
                parts += _section(f"dbtool {name} {sub}", subcommand, sub_ctx)
        else:
            parts += _section(f"dbtool {name}", command, ctx)
    text = "\n".join(parts).rstrip() + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


if __name__ == "__main__":
    sys.stdout.write(reference())
