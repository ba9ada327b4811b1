"""--wait: retry while the server is not up yet, fail fast when waiting cannot help."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.helpers import (
    POSTGRES_URL,
    Dbtool,
    Result,
    assert_clean_error,
    postgres_dsn,
    postgres_url,
    run_sql,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def forwarder(port: int, target: tuple[str, int]) -> Iterator[None]:
    """Accept connections on `port` and relay them to the real server (a server that
    "comes up" when the test decides)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def serve() -> asyncio.Server:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        started.set()
        return server

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(serve())
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(5)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@pytest.mark.postgres
def test_wait_retries_until_the_server_answers(new_postgres_database: str) -> None:
    port = free_port()
    server = make_url(POSTGRES_URL)
    url = make_url(postgres_url(new_postgres_database)).set(host="127.0.0.1", port=port)
    dbtool = Dbtool(url.render_as_string(hide_password=False))
    process = dbtool.spawn("init", "--wait", "30", "--json")
    time.sleep(2.0)  # the CLI is now retrying against a closed port
    assert process.poll() is None, process.communicate()
    with forwarder(port, (server.host or "127.0.0.1", server.port or 5432)):
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["created"] == ["users"]
    assert "connection refused" in stderr  # it said what it was waiting for


@pytest.mark.postgres
def test_wait_gives_up_with_exit_3(postgres_available: None) -> None:
    dbtool = Dbtool(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    start = time.monotonic()
    result = dbtool("ping", "--wait", "1.5")
    assert time.monotonic() - start >= 1.5
    assert_clean_error(result, 3, "connection refused")


@pytest.mark.postgres
def test_wait_does_not_retry_what_waiting_cannot_fix(postgres_available: None) -> None:
    missing = postgres_url(f"missing_{uuid.uuid4().hex[:8]}")
    start = time.monotonic()
    result = Dbtool(missing)("ping", "--wait", "30")
    assert time.monotonic() - start < 10
    assert_clean_error(result, 3, "does not exist")


@pytest.mark.sqlite
def test_wait_on_a_missing_sqlite_file_fails_fast(tmp_path: Path) -> None:
    start = time.monotonic()
    result = Dbtool(f"sqlite:///{tmp_path / 'none.db'}")("ping", "--wait", "30")
    assert time.monotonic() - start < 10
    assert_clean_error(result, 3, "does not exist")


@pytest.mark.postgres
def test_json_logs_for_collectors(postgres_available: None) -> None:
    """DBTOOL_LOG_FORMAT=json (or --log-format json): each message on stderr, the retries
    of --wait included, is one JSON object; stdout is the same as ever."""
    dbtool = Dbtool(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    for how in ({"env": {"DBTOOL_LOG_FORMAT": "json"}}, {"args": ("--log-format", "json")}):
        args: tuple[str, ...] = (*how.get("args", ()), "ping", "--wait", "1")
        result = dbtool(*args, env=how.get("env"))  # type: ignore[arg-type]
        assert result.exit_code == 3
        records = [json.loads(line) for line in result.stderr.splitlines()]
        assert all(set(record) == {"time", "level", "message"} for record in records)
        assert records[-1]["level"] == "error" and "connection refused" in records[-1]["message"]
        assert any(r["level"] == "info" and "retrying" in r["message"] for r in records[:-1])
    ok = Dbtool(postgres_url("postgres"))("--log-format", "json", "ping", "--json")
    assert json.loads(ok.stdout)["ok"] is True
    assert all(json.loads(line)["level"] for line in ok.stderr.splitlines())
    bad = Dbtool(postgres_url("postgres"))("ping", env={"DBTOOL_LOG_FORMAT": "yaml"})
    assert_clean_error(bad, 2, "DBTOOL_LOG_FORMAT")


SLOW_SEED = """
from sqlalchemy import text


async def run(session):
    await session.execute(text(
        "INSERT INTO users VALUES (gen_random_uuid(), 'seeded@example.com', 'seeded', '!',"
        " true, false, now(), now())"))
    await session.execute(text("SELECT pg_sleep(2.5)"))
"""


@pytest.mark.postgres
def test_a_connection_lost_mid_command_is_retried_whole(
    new_postgres_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server ends dbtool's connection in the middle of a step (pg_terminate_backend, as
    an admin shutdown or a failover does): under --wait the whole step runs again and its
    work is done once; without it, exit 3 and nothing of it is saved."""
    import asyncpg

    (tmp_path / "slow_seed.py").write_text(SLOW_SEED)
    monkeypatch.chdir(tmp_path)
    url = postgres_url(new_postgres_database)
    dbtool = Dbtool(url, env={"DBTOOL_SEED": "slow_seed:run"})
    assert dbtool("init").exit_code == 0

    async def terminate_the_seed_once() -> None:
        conn = await asyncpg.connect(postgres_dsn())
        try:
            for _ in range(100):
                ended = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = $1 AND query LIKE 'SELECT pg_sleep(2.5)%'",
                    new_postgres_database,
                )
                if ended:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError("the seed never ran")
        finally:
            await conn.close()

    for wait, code in ((["--wait", "30"], 0), ([], 3)):
        process = dbtool.spawn("seed", *wait, "--json", cwd=tmp_path)
        asyncio.run(terminate_the_seed_once())
        out, err = process.communicate(timeout=60)
        assert process.returncode == code, err
        if code == 0:
            assert "lost" in err and "retrying" in err
            rows = run_sql(url, "SELECT count(*) FROM users WHERE email = 'seeded@example.com'")
            assert rows == [(1,)]
            run_sql(url, "DELETE FROM users")
        else:
            assert_clean_error(Result(code, out, err), 3, "lost")
            assert run_sql(url, "SELECT count(*) FROM users") == [(0,)]
