"""Private PostgreSQL clusters and PgBouncer instances for the tests: a primary, a hot
standby of it (pg_basebackup -R), a server that checks passwords, PgBouncer in front.

Each runs on a free port in a temporary directory, as the `postgres` system user when the
tests run as root (PostgreSQL and PgBouncer refuse root), and only these are ever stopped:
the shared server on 5432 is never touched.
"""

from __future__ import annotations

import contextlib
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


@dataclass
class Pgpool:
    """A private pgpool-II (Debian's `pgpool2`) in front of one server: connection cache on,
    `children` processes (num_init_children), no load balancing or health checks; run as
    the postgres system user."""

    directory: Path
    port: int
    children: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    @classmethod
    def start(cls, server: Cluster, *, children: int = 8, max_pool: int = 2) -> Pgpool:
        binary = shutil.which("pgpool") or "/usr/sbin/pgpool"
        run_as = _run_as()
        if not Path(binary).exists():
            raise TopologyError("pgpool-II is not installed (apt-get install -y pgpool2)")
        if isinstance(run_as, str):
            raise TopologyError(run_as)
        directory = private_directory("dbtool-pgpool-")
        pool = cls(directory, free_port(), children)
        settings = {
            "backend_clustering_mode": "'streaming_replication'",
            "listen_addresses": "'127.0.0.1'", "port": pool.port,
            "unix_socket_directories": f"'{directory}'",
            "pcp_listen_addresses": "''", "pcp_port": free_port(),
            "pcp_socket_dir": f"'{directory}'",
            "backend_hostname0": "'127.0.0.1'", "backend_port0": server.port,
            "backend_weight0": 1, "backend_flag0": "'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'",
            "num_init_children": children, "max_pool": max_pool,
            "connection_cache": "on", "load_balance_mode": "off",
            "sr_check_period": 0, "health_check_period": 0,
            "failover_on_backend_error": "off", "enable_pool_hba": "off",
            "pid_file_name": f"'{directory / 'pgpool.pid'}'", "logdir": f"'{directory}'",
            "wd_ipc_socket_dir": f"'{directory}'", "use_watchdog": "off",
        }  # fmt: skip
        (directory / "pgpool.conf").write_text(
            "".join(f"{name} = {value}\n" for name, value in settings.items())
        )
        (directory / "pcp.conf").write_text("")
        for name in ("pgpool.conf", "pcp.conf"):
            (directory / name).chmod(0o644)
        with (directory / "log").open("wb") as log:
            pool.process = subprocess.Popen(
                [*run_as, binary, "-n", "-f", str(directory / "pgpool.conf"),
                 "-F", str(directory / "pcp.conf")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if pool.process.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", pool.port), timeout=1).close()
                return pool
            except OSError:
                time.sleep(0.2)
        pool.stop()
        raise TopologyError(f"pgpool-II did not start: {(directory / 'log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            import signal

            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGINT)  # pgpool's fast shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class MariaDB:
    """A private MariaDB server (Debian's mariadb-server): mariadb-install-db into a
    temporary directory, then mariadbd on a free port, as the `mysql` system user when the
    tests run as root. A system MariaDB on 3306 is never touched. Its `root` account takes
    connections over the socket only; the tests connect as `dbtool` (password below) over
    TCP on 127.0.0.1, as an application would."""

    directory: Path
    port: int
    run_as: list[str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    user: str = "dbtool"

    @property
    def config(self) -> Path:
        return self.directory / "my.cnf"

    def url(self, database: str = "", *, driver: str = "mysql+asyncmy") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def create(cls, *, buffer_pool: str = "128M") -> MariaDB:
        """`buffer_pool`: InnoDB's cache (the benchmarks' million rows want more)."""
        install = shutil.which("mariadb-install-db")
        server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        if install is None or not Path(server).exists():
            raise TopologyError(
                "mariadb-server is not installed (apt-get install -y mariadb-server)"
            )
        run_as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            try:
                owner = pwd.getpwnam("mysql")
            except KeyError:
                raise TopologyError("running as root and there is no mysql user") from None
            run_as = ["runuser", "-u", "mysql", "--"]
        directory = Path(tempfile.mkdtemp(prefix="dbtool-mariadb-"))
        if run_as:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        instance = cls(directory, free_port(), run_as)
        instance.config.write_text(
            "[mysqld]\n"
            f"datadir={directory / 'data'}\nsocket={directory / 'sock'}\n"
            f"port={instance.port}\nbind-address=127.0.0.1\nskip-name-resolve\n"
            f"pid-file={directory / 'pid'}\nlog-error={directory / 'error.log'}\n"
            f"innodb_buffer_pool_size={buffer_pool}\ninnodb_log_file_size=256M\n"
            "skip-log-bin\nlocal_infile=1\nmax_connections=200\n"
            "innodb_flush_log_at_trx_commit=2\n"
            f"[client]\nsocket={directory / 'sock'}\n"
        )
        instance.config.chmod(0o644)
        done = subprocess.run(
            [*run_as, install, f"--defaults-file={instance.config}",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            shutil.rmtree(directory, ignore_errors=True)
            raise TopologyError(f"mariadb-install-db failed: {done.stderr.strip()[-500:]}")
        instance.process = subprocess.Popen(
            [*run_as, server, f"--defaults-file={instance.config}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if instance.admin("SELECT 1", check=False).returncode == 0:
                break
            if instance.process.poll() is not None:
                break
            time.sleep(0.2)
        else:
            instance.remove()
            raise TopologyError("mariadbd did not start within 60s")
        if instance.process.poll() is not None:
            log = (directory / "error.log").read_text(errors="replace")[-800:]
            instance.remove()
            raise TopologyError(f"mariadbd did not start: {log}")
        instance.admin(
            f"CREATE USER '{instance.user}'@'127.0.0.1';"
            f" GRANT ALL ON *.* TO '{instance.user}'@'127.0.0.1' WITH GRANT OPTION;"
        )
        return instance

    def admin(self, sql: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """SQL as the server's administrator, with the mariadb client over the socket, where
        the system user running it is who it logs in as (mariadb-install-db makes root, and
        the user who ran it, socket-authenticated)."""
        import getpass

        user = "root" if os.geteuid() == 0 else getpass.getuser()
        done = subprocess.run(
            ["mariadb", f"--defaults-file={self.config}", f"-u{user}", "-N", "-e", sql],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise TopologyError(f"mariadb -e failed: {done.stderr.strip()}")
        return done

    def remove(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Patroni:
    """A three-member PostgreSQL cluster run by Patroni (Debian's `patroni`) over a private
    etcd (`etcd-server`): each member's PostgreSQL and REST API on free loopback ports, as
    the `postgres` system user. Switchovers and leader kills are what the tests do to it;
    `url()` lists every member with target_session_attrs, as an application's would."""

    directory: Path
    run_as: list[str]
    etcd_port: int
    members: list[dict[str, int]] = field(default_factory=list)  # name -> pg / rest ports
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    SCOPE = "dbtool"

    @classmethod
    def create(cls, size: int = 3) -> Patroni:
        bindir = server_binaries()
        run_as = _run_as()
        patroni, etcd = shutil.which("patroni"), shutil.which("etcd")
        if isinstance(bindir, str) or isinstance(run_as, str):
            raise TopologyError(str(bindir if isinstance(bindir, str) else run_as))
        if patroni is None or etcd is None:
            raise TopologyError("patroni and etcd are not installed (apt-get install -y patroni "
                                "etcd-server)")  # fmt: skip
        directory = private_directory("dbtool-patroni-")
        cluster = cls(directory, run_as, free_port())
        cluster._start_etcd(etcd)
        try:
            for number in range(size):
                ports = {"pg": free_port(), "rest": free_port()}
                cluster.members.append(ports)
                cluster._write_config(number, ports, bindir)
                cluster.start_member(number)
                if number == 0:
                    cluster.wait_for(lambda: cluster.leader() is not None, 90, "a leader")
            cluster.wait_for(lambda: cluster.streaming() == size - 1, 120, "streaming replicas")
        except BaseException:
            cluster.remove()
            raise
        return cluster

    def _start_etcd(self, etcd: str) -> None:
        peer = free_port()
        with (self.directory / "etcd.log").open("wb") as log:
            self.processes["etcd"] = subprocess.Popen(
                [*self.run_as, etcd, "--name", "dbtool", "--data-dir", str(self.directory / "etcd"),
                 "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                 "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-cluster", f"dbtool=http://127.0.0.1:{peer}",
                 "--enable-v2=true"],
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        self.wait_for(lambda: self._get(f"http://127.0.0.1:{self.etcd_port}/health") is not None,
                      30, "etcd")  # fmt: skip

    def _write_config(self, number: int, ports: dict[str, int], bindir: Path) -> None:
        name = f"m{number}"
        data = self.directory / name
        config = {
            "scope": self.SCOPE, "name": name,
            "restapi": {"listen": f"127.0.0.1:{ports['rest']}",
                        "connect_address": f"127.0.0.1:{ports['rest']}"},
            "etcd3": {"host": f"127.0.0.1:{self.etcd_port}"},
            "bootstrap": {
                "dcs": {"ttl": 20, "loop_wait": 2, "retry_timeout": 5,
                        "maximum_lag_on_failover": 1048576,
                        "postgresql": {"use_pg_rewind": True,
                                       "parameters": {"wal_level": "replica",
                                                      "hot_standby": "on",
                                                      "max_wal_senders": 10,
                                                      "max_replication_slots": 10,
                                                      "wal_keep_size": "128MB"}}},
                "initdb": [{"encoding": "UTF8"}, "data-checksums"],
                "pg_hba": ["local all all trust", "host all all 127.0.0.1/32 trust",
                           "host replication all 127.0.0.1/32 trust"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{ports['pg']}",
                "connect_address": f"127.0.0.1:{ports['pg']}",
                "data_dir": str(data), "bin_dir": str(bindir),
                "pgpass": str(self.directory / f"{name}.pgpass"),
                "authentication": {"superuser": {"username": "postgres"},
                                   "replication": {"username": "postgres"},
                                   "rewind": {"username": "postgres"}},
                "parameters": {"unix_socket_directories": str(self.directory),
                               "max_connections": 100},
                "pg_hba": ["local all all trust", "host all all 127.0.0.1/32 trust",
                           "host replication all 127.0.0.1/32 trust"],
            },
            "tags": {"nofailover": False, "noloadbalance": False},
        }  # fmt: skip
        import json

        (self.directory / f"{name}.yml").write_text(json.dumps(config))  # JSON is YAML

    def start_member(self, number: int) -> None:
        name = f"m{number}"
        with (self.directory / f"{name}.log").open("ab") as log:  # the child keeps its own
            self.processes[name] = subprocess.Popen(
                [*self.run_as, shutil.which("patroni") or "patroni",
                 str(self.directory / f"{name}.yml")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def url(self, database: str = "postgres", *, attrs: str = "read-write") -> str:
        hosts = "&".join(f"host=127.0.0.1:{ports['pg']}" for ports in self.members)
        return f"postgresql+asyncpg://postgres@/{database}?{hosts}&target_session_attrs={attrs}"

    def member_url(self, number: int, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.members[number]['pg']}/{database}"

    def rest(self, number: int = 0) -> str:
        return f"http://127.0.0.1:{self.members[number]['rest']}"

    @staticmethod
    def _get(url: str) -> dict[str, object] | None:
        import json
        import urllib.request

        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return json.loads(answer.read() or b"{}")  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def state(self) -> list[dict[str, object]]:
        """Every member as Patroni's /cluster lists it (any member's REST API that answers)."""
        for number in range(len(self.members)):
            found = self._get(f"{self.rest(number)}/cluster")
            if found is not None:
                return list(found.get("members", []))  # type: ignore[arg-type]
        return []

    def leader(self) -> int | None:
        for member in self.state():
            if member.get("role") == "leader" and member.get("state") == "running":
                return int(str(member["name"])[1:])
        return None

    def streaming(self) -> int:
        """Replicas Patroni calls running with no lag whose WAL receiver streams from the
        leader (the leader's pg_stat_replication: Patroni 3.0 does not say)."""
        import asyncio

        import asyncpg

        replicas = [m for m in self.state() if m.get("role") in ("replica", "sync_standby")]
        current = sum(1 for m in replicas if m.get("state") == "running" and m.get("lag") == 0)
        leader = self.leader()
        if leader is None:
            return 0

        async def senders() -> int:
            port = self.members[leader]["pg"]
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres",
                                         timeout=2)  # fmt: skip
            try:
                query = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                return int(await conn.fetchval(query))
            finally:
                await conn.close()

        try:
            return min(current, asyncio.run(senders()))
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return 0

    def wait_for(self, condition: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():  # type: ignore[operator]
                return
            time.sleep(0.3)
        raise TopologyError(f"Patroni: no {what} within {timeout:g}s")

    def switchover(self) -> None:
        """Hand the leadership to another member (Patroni's REST API, as patronictl does)."""
        import json
        import urllib.request

        leader = self.leader()
        if leader is None:
            raise TopologyError("Patroni: no leader to switch over from")
        body = json.dumps({"leader": f"m{leader}"}).encode()
        request = urllib.request.Request(f"{self.rest(leader)}/switchover", data=body,
                                         method="POST")  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()

    def kill_leader(self) -> int:
        """Kill the leader's Patroni and its postmaster (a crashed machine); its number."""
        import signal

        leader = self.leader()
        if leader is None:
            raise TopologyError("Patroni: no leader to kill")
        process = self.processes[f"m{leader}"]
        os.killpg(process.pid, signal.SIGKILL)
        pid_file = self.directory / f"m{leader}" / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        process.wait(timeout=10)
        return leader

    def remove(self) -> None:
        import signal

        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                with contextlib.suppress(OSError):
                    if name == "etcd":
                        process.terminate()
                    else:
                        os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for number in range(len(self.members)):  # any postmaster Patroni left behind
            pid_file = self.directory / f"m{number}" / "postmaster.pid"
            if pid_file.exists():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.directory, ignore_errors=True)
