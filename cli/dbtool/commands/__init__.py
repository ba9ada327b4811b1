"""The commands: Typer wiring only, one module per group of commands.

Each module declares its commands on a Typer app of its own (`app`, or `users_app` for the
`users` group); the root command (`dbtool.app.RootGroup`) finds them here by name and
imports a module only when one of its commands is listed or run, as pip's commands_dict
does. A new command: its function in one of these modules, and its name below.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer

# Command name -> the module (in this package) that holds it, in the order `--help` lists.
COMMANDS = {
    "init": "schema",
    "drop": "schema",
    "reset": "schema",
    "dump": "data",
    "load": "data",
    "seed": "data",
    "ping": "status",
    "pool-status": "status",
    "cluster": "status",
    "info": "status",
    "check": "status",
    "config": "status",
    "users": "users",
    "shell": "interactive",
    "dbshell": "interactive",
}
# Groups of subcommands: the module's Typer app is the group itself.
GROUPS = {"users": "users_app"}


def load_command(name: str, *, rich_markup_mode: Any, pretty_exceptions_short: bool) -> Any:
    """The Click command for `name` (None for a name that is not a command)."""
    module_name = COMMANDS.get(name)
    if module_name is None:
        return None
    module = importlib.import_module(f"{__name__}.{module_name}")
    if name in GROUPS:
        return typer.main.get_command(getattr(module, GROUPS[name]))
    registry: typer.Typer = module.app
    info = next(info for info in registry.registered_commands if info.name == name)
    return typer.main.get_command_from_info(
        info, pretty_exceptions_short=pretty_exceptions_short, rich_markup_mode=rich_markup_mode
    )
