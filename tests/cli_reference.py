"""The command reference, docs/commands.md, generated from the real `--help` of every
command, so that it cannot drift (tests/test_docs.py compares the file with this output).

Regenerate after changing a command's help:

    python -m tests.cli_reference > docs/commands.md
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import dbtool_executable

WIDTH = 100
HEADER = """# Command reference

Generated from `dbtool COMMAND --help` (at {width} columns) by `python -m tests.cli_reference >
docs/commands.md`; a test fails when this file and the help differ. The guides explain each
command in depth: [schema and diagnostics](guides/schema-and-diagnostics.md),
[users](guides/users.md), [import and export](guides/import-export.md).
"""


def help_text(*command: str, width: int = WIDTH) -> str:
    env = {**os.environ, "COLUMNS": str(width), "NO_COLOR": "1", "TERM": "dumb"}
    env.pop("FORCE_COLOR", None)
    done = subprocess.run(
        [dbtool_executable(), *command, "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return "\n".join(line.rstrip() for line in done.stdout.strip("\n").splitlines())


def command_names() -> list[tuple[str, ...]]:
    from tests.test_docs import all_commands

    return [tuple(name.split()) for name in sorted(all_commands())]


def reference() -> str:
    parts = [HEADER.format(width=WIDTH), "## dbtool\n", "```text", help_text(), "```\n"]
    for command in command_names():
        parts += [f"## dbtool {' '.join(command)}\n", "```text", help_text(*command), "```\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(reference())
