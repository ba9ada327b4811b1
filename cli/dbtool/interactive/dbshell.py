"""`dbtool dbshell`: the database's own client (psql, sqlite3, mariadb/mysql) on the
configured URL, as Django's `dbshell` and Rails' `dbconsole`.

The backend says how (`Backend.client_command`); this module finds the program, runs it
on this terminal and removes what it was given. The password goes in an environment
variable's file or an option file in a private temporary folder (0700, the file 0600),
removed when the client exits: never in argv, which every user of the machine can read
in `ps`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from dbtool.backends import backend_for
from dbtool.config import URL_ENV, Settings
from dbtool.errors import DbtoolError


class ClientMissingError(DbtoolError):
    """The database's client program is not installed (exit 1)."""


def run_client(settings: Settings, args: Sequence[str]) -> int:
    """Run the client with `args` after dbtool's own, until it exits; its exit status."""
    backend = backend_for(settings.url)
    with tempfile.TemporaryDirectory(prefix="dbtool-dbshell-") as private:
        command = backend.client_command(settings, Path(private))
        program = next(filter(None, map(shutil.which, command.programs)), None)
        if program is None:
            raise ClientMissingError(
                f"{' or '.join(command.programs)} (the {backend.product} client) is not "
                f"installed: install the {command.package} package"
            )
        # The client connects by what the backend gave it, and never sees the URL (with
        # its password) in its environment, as dbtool did.
        env = {name: value for name, value in os.environ.items() if name != URL_ENV}
        env |= command.env
        # Ctrl-C belongs to the client (psql cancels the query): dbtool waits it out. A
        # handler, not SIG_IGN, which the client would inherit.
        previous = signal.signal(signal.SIGINT, lambda *_: None)
        try:
            return subprocess.run([program, *command.args, *args], env=env, check=False).returncode
        finally:
            signal.signal(signal.SIGINT, previous)
