"""Private PostgreSQL clusters and PgBouncer instances for the tests: a primary, a hot
standby of it (pg_basebackup -R), a server that checks passwords, PgBouncer in front.

Each runs on a free port in a temporary directory, as the `postgres` system user when the
tests run as root (PostgreSQL and PgBouncer refuse root), and only these are ever stopped:
the shared server on 5432 is never touched.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_binaries() -> Path | str:
    """The PostgreSQL server's bin directory, or why there is none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        return "no PostgreSQL server binaries (initdb) on this machine"
    return Path(found[-1]).parent


def _run_as() -> list[str] | str:
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "running as root and there is no postgres user to run a server as"
    return ["runuser", "-u", "postgres", "--"]


def private_directory(prefix: str) -> Path:
    """A temporary directory the postgres user owns (not under pytest's tmp_path, whose
    parents are private to root)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        import pwd

        owner = pwd.getpwnam("postgres")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    return directory


class TopologyError(Exception):
    """A private server could not be started: the test skips (or fails under CI)."""


@dataclass
class Cluster:
    """A private PostgreSQL server (initdb + pg_ctl)."""

    directory: Path
    port: int
    bindir: Path
    run_as: list[str]
    password: str | None = None

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres", *, driver: str = "postgresql+asyncpg") -> str:
        secret = f":{self.password}" if self.password else ""
        return f"{driver}://postgres{secret}@127.0.0.1:{self.port}/{database}"

    @property
    def dsn_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _step(self, *argv: str, timeout: float = 120) -> None:
        done = subprocess.run([*self.run_as, *argv], capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        if done.returncode != 0:
            raise TopologyError(f"{' '.join(argv[:2])} failed: {done.stderr.strip()}")

    @classmethod
    def create(cls, *, password: str | None = None) -> Cluster:
        bindir = server_binaries()
        run_as = _run_as()
        if isinstance(bindir, str) or isinstance(run_as, str):
            raise TopologyError(str(bindir if isinstance(bindir, str) else run_as))
        directory = private_directory("dbtool-pg-")
        cluster = cls(directory, free_port(), bindir, run_as, password)
        auth = ["-A", "trust"]
        if password is not None:
            secret = directory / "pw"
            secret.write_text(password + "\n")
            secret.chmod(0o644)
            auth = ["-A", "scram-sha-256", f"--pwfile={secret}"]
        cluster._step(str(bindir / "initdb"), "-D", str(cluster.data), "-U", "postgres", *auth)
        cluster.start()
        return cluster

    def standby(self) -> Cluster:
        """A hot standby of this server, streaming from it (pg_basebackup -R), started."""
        directory = private_directory("dbtool-standby-")
        standby = Cluster(directory, free_port(), self.bindir, self.run_as, self.password)
        source = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        # A fast checkpoint: the default spread one can take minutes on a primary in use.
        self._step(str(self.bindir / "pg_basebackup"), "-D", str(standby.data), "-R", "-c",
                   "fast", *source)  # fmt: skip
        standby.start()
        return standby

    def start(self) -> None:
        self._step(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                   str(self.directory / "log"), "-o",
                   f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1",
                   "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        subprocess.run([*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data),
                        "-m", mode, "-w", "stop"], capture_output=True, timeout=60)  # fmt: skip

    def promote(self) -> None:
        self._step(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "promote")

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class PgBouncer:
    """A private PgBouncer in front of one server, with an admin console."""

    directory: Path
    port: int
    mode: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/pgbouncer"

    @classmethod
    def start(cls, server: Cluster, *, mode: str, pool_size: int = 5) -> PgBouncer:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise TopologyError("pgbouncer is not installed (apt-get install -y pgbouncer)")
        if isinstance(_run_as(), str):
            raise TopologyError(str(_run_as()))
        directory = private_directory(f"dbtool-pgbouncer-{mode}-")
        bouncer = cls(directory, free_port(), mode)
        (directory / "userlist.txt").write_text('"postgres" ""\n')
        (directory / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={server.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {bouncer.port}\n"
            f"unix_socket_dir = {directory}\n"
            f"auth_type = trust\nauth_file = {directory / 'userlist.txt'}\n"
            f"pool_mode = {mode}\ndefault_pool_size = {pool_size}\nmax_client_conn = 200\n"
            "admin_users = postgres\nstats_users = postgres\n"
            f"logfile = {directory / 'log'}\npidfile = {directory / 'pid'}\n"
        )
        for name in ("userlist.txt", "pgbouncer.ini"):
            (directory / name).chmod(0o644)
        # As root, PgBouncer switches to the user itself (-u), so this process is PgBouncer.
        user = ["-u", "postgres"] if os.geteuid() == 0 else []
        bouncer.process = subprocess.Popen(
            [binary, *user, str(directory / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", bouncer.port), timeout=1).close()
                return bouncer
            except OSError:
                time.sleep(0.1)
        bouncer.stop()
        raise TopologyError(f"pgbouncer did not start: {(directory / 'log').read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
