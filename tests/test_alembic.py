"""Schema drift (`dbtool check`), Alembic projects, `--sql`, and DDL lock timeouts.

The Alembic projects are real ones: made with Alembic's own `init -t async`, with three
migrations that each write a row to `migration_log`, so a migration applied twice shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import Dbtool, assert_clean_error, dbtool_executable, run_sql, table_names

ROOT = Path(__file__).resolve().parents[1]
DRIFT = {"DBTOOL_MODELS": "tests.apps.drift_app:Base"}

MODELS = """
from sqlalchemy import Index, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (Index("ix_accounts_nickname", "nickname"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    nickname: Mapped[str | None] = mapped_column(String(50))


class MigrationLog(Base):
    __tablename__ = "migration_log"

    step: Mapped[int] = mapped_column(primary_key=True)
"""

MIGRATIONS = [
    ("0001", None, '''
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(200), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
    )
    op.create_table("migration_log", sa.Column("step", sa.Integer(), primary_key=True))
    op.execute("INSERT INTO migration_log (step) VALUES (1)")
'''),
    ("0002", "0001", '''
    op.add_column("accounts", sa.Column("nickname", sa.String(50), nullable=True))
    op.execute("INSERT INTO migration_log (step) VALUES (2)")
'''),
    ("0003", "0002", '''
    op.create_index("ix_accounts_nickname", "accounts", ["nickname"])
    op.execute("INSERT INTO migration_log (step) VALUES (3)")
'''),
]  # fmt: skip


def make_project(
    directory: Path, *, models: str = MODELS, migrations: bool = True, template: str = "async"
) -> Path:
    """An Alembic project made by Alembic itself (`alembic init -t async`, or `generic`:
    the default, synchronous env.py), targeting `models`."""
    from alembic import command
    from alembic.config import Config

    directory.mkdir(parents=True, exist_ok=True)
    config = Config(str(directory / "alembic.ini"))
    command.init(config, str(directory / "migrations"), template=template)
    (directory / "project_models.py").write_text(textwrap.dedent(models))
    env = directory / "migrations" / "env.py"
    env.write_text(env.read_text().replace(
        "target_metadata = None",
        "import project_models\ntarget_metadata = project_models.Base.metadata",
    ))  # fmt: skip
    for revision, down, body in MIGRATIONS if migrations else []:
        (directory / "migrations" / "versions" / f"{revision}_step.py").write_text(
            "import sqlalchemy as sa\nfrom alembic import op\n\n"
            f"revision = {revision!r}\ndown_revision = {down!r}\n"
            "branch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade() -> None:{textwrap.indent(textwrap.dedent(body), '    ')}\n\n"
            "def downgrade() -> None:\n    pass\n"
        )
    return directory


def in_project(project: Path, url: str, *args: str, stdin: str | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """The installed console script, run from the project directory as a user would."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DBTOOL_", "DATABASE"))}
    return subprocess.run(
        [dbtool_executable(), "--url", url, *args], cwd=project, input=stdin,
        capture_output=True, text=True, timeout=180,
        env={**environment, "DBTOOL_MODELS": "project_models:Base", **(env or {})},
    )  # fmt: skip


def alembic_cli(project: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Alembic's own command line, with the project's ini pointed at `url`."""
    code = (
        "import sys\nfrom alembic.config import main\n"
        f"sys.argv = ['alembic', '-x', 'unused=1', *{list(args)!r}]\nmain()"
    )
    ini = (project / "alembic.ini").read_text()
    (project / "alembic.ini").write_text(
        "\n".join(f"sqlalchemy.url = {url}" if line.startswith("sqlalchemy.url") else line
                  for line in ini.splitlines()) + "\n"
    )  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                          text=True, timeout=180)  # fmt: skip


# --- dbtool check ---------------------------------------------------------------------------


def drift_cases(backend: str) -> dict[str, tuple[str, str]]:
    """kind -> (SQL that makes the database differ so, fragment of the report)."""
    cases = {
        "missing_table": ("DROP TABLE others", "table others is in the models"),
        "extra_table": ("CREATE TABLE stray (id INTEGER)", "table stray is in the database"),
        "missing_column": ("ALTER TABLE things DROP COLUMN score", "things.score is in the models"),
        "extra_column": ("ALTER TABLE things ADD COLUMN legacy TEXT",
                         "things.legacy is in the database"),
        "missing_index": ("DROP INDEX ix_things_name" + " ON things" * (backend == "mariadb"),
                          "index ix_things_name on things (name)"),
        "extra_index": ("CREATE INDEX ix_extra ON things (status)", "index ix_extra on things"),
    }  # fmt: skip
    if backend == "mariadb":  # MySQL's own words for the same changes
        cases |= {
            "missing_unique": ("ALTER TABLE things DROP INDEX uq_things_code",
                               "unique constraint uq_things_code on things (code)"),
            # (an extra UNIQUE is a unique index there, reported as an extra index)
            "type": ("ALTER TABLE things MODIFY name VARCHAR(80) NOT NULL",
                     "things.name: type VARCHAR(80) in the database, VARCHAR(50) in the models"),
            "nullable": ("ALTER TABLE things MODIFY label VARCHAR(30) NULL",
                         "things.label: NULL allowed in the database, NOT NULL in the models"),
            "server_default": ("ALTER TABLE things ALTER COLUMN status SET DEFAULT 'old'",
                               "things.status: server default"),
            "missing_foreign_key": ("ALTER TABLE others DROP FOREIGN KEY others_ibfk_1",
                                    "foreign key others (thing_id) -> things"),
        }  # fmt: skip
    if backend == "postgres":  # SQLite cannot alter these in place
        cases |= {
            "missing_unique": ("ALTER TABLE things DROP CONSTRAINT uq_things_code",
                               "unique constraint uq_things_code on things (code)"),
            "extra_unique": ("ALTER TABLE things ADD CONSTRAINT uq_extra UNIQUE (label)",
                             "unique constraint uq_extra"),
            "type": ("ALTER TABLE things ALTER COLUMN name TYPE VARCHAR(80)",
                     "things.name: type VARCHAR(80) in the database, VARCHAR(50) in the models"),
            "nullable": ("ALTER TABLE things ALTER COLUMN label DROP NOT NULL",
                         "things.label: NULL allowed in the database, NOT NULL in the models"),
            "server_default": ("ALTER TABLE things ALTER COLUMN status SET DEFAULT 'old'",
                               "things.status: server default"),
            "missing_foreign_key": ("ALTER TABLE others DROP CONSTRAINT others_thing_id_fkey",
                                    "foreign key others (thing_id) -> things"),
        }  # fmt: skip
    return cases


def test_check_reports_each_kind_of_drift(database_url: str, backend: str) -> None:
    dbtool = Dbtool(database_url, env=DRIFT)
    assert dbtool("init").exit_code == 0
    clean = dbtool("check")
    assert clean.exit_code == 0, clean.output
    assert "matches the models" in clean.stderr
    assert json.loads(dbtool("check", "--json").stdout)["ok"] is True
    for kind, (sql, fragment) in drift_cases(backend).items():
        dbtool("drop", "--yes", "--force")
        assert dbtool("init").exit_code == 0
        run_sql(database_url, sql)
        result = dbtool("check")
        assert_clean_error(result, 1, "does not match the models")
        assert fragment in result.stderr, (kind, result.stderr)
        report = json.loads(dbtool("check", "--json").stdout)
        assert report["ok"] is False
        assert kind in {difference["kind"] for difference in report["differences"]}, (kind, report)
        run_sql(database_url, "DROP TABLE IF EXISTS stray")


# --- Alembic projects ------------------------------------------------------------------------


def test_concurrent_init_applies_each_migration_once(database_url: str, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    processes = [
        subprocess.Popen(
            [dbtool_executable(), "--url", database_url, "init", "--json"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "DBTOOL_MODELS": "project_models:Base"},
        )
        for _ in range(8)
    ]
    outcomes = [(p.wait(timeout=300), *p.communicate()) for p in processes]
    assert [code for code, _, _ in outcomes] == [0] * 8, outcomes
    assert run_sql(database_url, "SELECT step FROM migration_log ORDER BY step") == [
        (1,), (2,), (3,)
    ]  # fmt: skip
    applied = [json.loads(out)["alembic"]["applied"] for _, out, _ in outcomes]
    assert sorted(applied, key=len)[-1] == ["0001", "0002", "0003"]
    assert sum(len(revisions) for revisions in applied) == 3  # all by one of the eight
    assert run_sql(database_url, "SELECT version_num FROM alembic_version") == [("0003",)]
    again = in_project(project, database_url, "init")
    assert again.returncode == 0 and "already at head" in again.stderr


def test_check_and_info_know_the_alembic_head(database_url: str, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    assert alembic_cli(project, database_url, "upgrade", "0001").returncode == 0
    behind = in_project(project, database_url, "check", "--json")
    assert behind.returncode == 1
    report = json.loads(behind.stdout)
    assert report["alembic"]["current"] == ["0001"] and report["alembic"]["pending"] == [
        "0002", "0003"
    ]  # fmt: skip
    assert report["alembic"]["at_head"] is False
    assert "pending" in in_project(project, database_url, "check").stderr
    info = json.loads(in_project(project, database_url, "info", "--json").stdout)
    assert info["alembic"]["heads"] == ["0003"] and info["alembic"]["current"] == ["0001"]
    assert in_project(project, database_url, "init").returncode == 0
    at_head = in_project(project, database_url, "check")
    assert at_head.returncode == 0, at_head.stderr
    assert "Alembic: at head (0003)" in at_head.stderr


def test_drop_removes_alembic_version_so_alembic_starts_over(
    database_url: str, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "project")
    assert in_project(project, database_url, "init").returncode == 0
    dropped = in_project(project, database_url, "drop", "--yes", "--json")
    assert dropped.returncode == 0, dropped.stderr
    assert not table_names(database_url) & {"accounts", "migration_log", "alembic_version"}
    upgraded = alembic_cli(project, database_url, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    assert table_names(database_url) >= {"accounts", "migration_log", "alembic_version"}
    assert in_project(project, database_url, "check").returncode == 0


def test_reset_on_an_alembic_project_migrates_again(database_url: str, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    assert in_project(project, database_url, "init").returncode == 0
    run_sql(database_url, "INSERT INTO accounts (email, password_hash) VALUES ('a@b.c', 'x')")
    reset = in_project(project, database_url, "reset", "--yes")
    assert reset.returncode == 0, reset.stderr
    assert run_sql(database_url, "SELECT count(*) FROM accounts") == [(0,)]
    assert run_sql(database_url, "SELECT count(*) FROM migration_log") == [(3,)]


def test_stamp_and_create_all(database_url: str, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    stamped = in_project(project, database_url, "init", "--create-all", "--json")
    assert stamped.returncode == 0, stamped.stderr
    report = json.loads(stamped.stdout)
    assert report["alembic"]["at_head"] is True and report["alembic"]["applied"] == []
    assert run_sql(database_url, "SELECT count(*) FROM migration_log") == [(0,)]  # not migrated
    assert in_project(project, database_url, "check").returncode == 0
    refused = in_project(project, database_url, "init", "--create-all")
    assert refused.returncode == 5 and "empty database" in refused.stderr
    without = Dbtool(database_url)("init", "--stamp")
    assert_clean_error(without, 2, "--stamp is for Alembic projects")


def test_the_built_in_models_autogenerate_a_migration_that_runs(
    database_url: str, tmp_path: Path
) -> None:
    """`alembic revision --autogenerate` from dbtool's own models writes a migration that
    needs no extra imports, and it builds the schema dbtool checks as matching."""
    from alembic import command
    from alembic.config import Config

    project = make_project(tmp_path / "project", models="from dbtool.models.builtin import Base\n",
                           migrations=False)  # fmt: skip
    config = Config(str(project / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", "sqlite+aiosqlite:///" + str(tmp_path / "gen.db"))
    cwd = os.getcwd()
    os.chdir(project)
    sys.path.insert(0, str(project))
    try:
        command.revision(config, message="users", autogenerate=True, rev_id="0001")
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("project_models", None)
        os.chdir(cwd)
    [migration] = (project / "migrations" / "versions").glob("0001_*.py")
    assert "dbtool." not in migration.read_text()  # plain sa.DateTime, sa.Uuid: nothing to import
    upgraded = alembic_cli(project, database_url, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    assert Dbtool(database_url)("check").exit_code == 0


# --- --sql ------------------------------------------------------------------------------------


def feed(database_url: str, sql: str) -> subprocess.CompletedProcess[str]:
    """Run SQL with the database's own shell: sqlite3, psql or mariadb (stopping at the
    first error)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if database_url.startswith("sqlite"):
        argv = ["sqlite3", "-bail", database_url.split("///", 1)[1]]
    elif url.get_backend_name() in ("mysql", "mariadb"):
        argv = ["mariadb", "--protocol=tcp", "-h", url.host or "127.0.0.1",
                "-P", str(url.port or 3306), "-u", url.username or "root",
                url.database or ""]  # fmt: skip
    else:
        argv = ["psql", "-v", "ON_ERROR_STOP=1", "-q", "-h", url.host or "127.0.0.1",
                "-p", str(url.port or 5432), "-U", url.username or "postgres",
                url.database or "postgres"]  # fmt: skip
    return subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=60)


def test_sql_output_runs_in_the_databases_own_shell(database_url: str, tmp_path: Path) -> None:
    dbtool = Dbtool(database_url, env=DRIFT)
    if database_url.startswith("sqlite"):
        Path(database_url.split("///", 1)[1]).unlink(missing_ok=True)
    created = dbtool("init", "--sql")
    assert created.exit_code == 0, created.output
    assert "CREATE TABLE things" in created.stdout
    assert not table_names(database_url) & {"things", "others"}  # --sql changed nothing
    fed = feed(database_url, created.stdout)
    assert fed.returncode == 0, fed.stderr
    assert dbtool("check").exit_code == 0
    assert dbtool("init", "--sql").stdout == ""  # nothing left to create
    dropped = dbtool("drop", "--sql")
    assert "DROP TABLE" in dropped.stdout and table_names(database_url) >= {"things", "others"}
    assert feed(database_url, dropped.stdout).returncode == 0
    assert not table_names(database_url) & {"things", "others"}
    reset = dbtool("reset", "--sql")
    assert reset.exit_code == 0 and "CREATE TABLE others" in reset.stdout


def test_alembic_sql_is_the_pending_migrations(database_url: str, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    if database_url.startswith("sqlite"):
        Path(database_url.split("///", 1)[1]).unlink(missing_ok=True)
    sql = in_project(project, database_url, "init", "--sql")
    assert sql.returncode == 0, sql.stderr
    assert "INSERT INTO migration_log (step) VALUES (3)" in sql.stdout
    fed = feed(database_url, sql.stdout)
    assert fed.returncode == 0, fed.stderr
    assert in_project(project, database_url, "check").returncode == 0


# --- DDL that never blocks production -------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_lock_timeout_names_the_session_in_the_way(initialised: Dbtool) -> None:
    import asyncio

    import asyncpg

    from tests.helpers import postgres_dsn

    database = initialised.url.rsplit("/", 1)[1]

    async def scenario() -> tuple[int, str, float, int]:
        holder = await asyncpg.connect(
            postgres_dsn(database), server_settings={"application_name": "billing-api"}
        )
        try:
            await holder.execute("BEGIN")
            await holder.fetch("SELECT * FROM users LIMIT 1")  # ACCESS SHARE, kept
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                dbtool_executable(), "--url", initialised.url, "drop", "--yes",
                env={**os.environ, "DBTOOL_LOCK_TIMEOUT": "1"},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, stderr = await process.communicate()
            return (process.returncode or 0, stderr.decode(), time.monotonic() - started,
                    holder.get_server_pid())  # fmt: skip
        finally:
            await holder.close()

    code, stderr, seconds, pid = asyncio.run(scenario())
    assert code == 1, stderr
    assert seconds < 15
    line = next(line for line in stderr.splitlines() if line.startswith("error:"))
    assert "within 1s" in line and f"pid {pid} (billing-api" in line, line
    assert "nothing was changed" in line
    assert "users" in table_names(initialised.url)


async def _held(database: str, statements: list[str], command: list[str]) -> tuple[int, str, float]:
    """Run `dbtool COMMAND` (DBTOOL_LOCK_TIMEOUT=1) while another session holds what
    `statements` take, in an open transaction."""
    import asyncio

    import asyncpg

    from tests.helpers import postgres_dsn

    holder = await asyncpg.connect(postgres_dsn(database))
    try:
        await holder.execute("BEGIN")
        for statement in statements:
            await holder.execute(statement)
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            dbtool_executable(), "--url", postgres_dsn(database).replace(
                "postgresql://", "postgresql+asyncpg://"), *command,
            env={**os.environ, "DBTOOL_LOCK_TIMEOUT": "1"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        except TimeoutError:
            process.kill()  # it waited without limit: no process outlives the test
            await process.wait()
            return -1, "error: still waiting after 60s", time.monotonic() - started
        return process.returncode or 0, stderr.decode(), time.monotonic() - started
    finally:
        await holder.close()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    ("command", "held"),
    [
        # The row counts shown before the drop wait behind an exclusive lock: bounded too.
        (["drop", "--yes"], ["LOCK TABLE users IN ACCESS EXCLUSIVE MODE"]),
        (["reset", "--yes"], ["LOCK TABLE users IN ACCESS EXCLUSIVE MODE"]),
        (["drop", "--sql"], ["LOCK TABLE users IN ACCESS EXCLUSIVE MODE"]),
        # Another run holding dbtool's schema lock (a hung init, say).
        (["init"], ["SELECT pg_advisory_xact_lock(110374023032684)"]),
        (["reset", "--yes"], ["SELECT pg_advisory_xact_lock(110374023032684)"]),
    ],
)
def test_every_wait_of_init_drop_reset_is_bounded(
    initialised: Dbtool, command: list[str], held: list[str]
) -> None:
    """Every statement of init, drop and reset, the previews and dbtool's schema lock
    included, gives up after DBTOOL_LOCK_TIMEOUT (exit 1) and changes nothing."""
    import asyncio

    from dbtool.backends.postgresql import SCHEMA_LOCK_ID

    assert SCHEMA_LOCK_ID == 110374023032684  # the key the statements above take
    initialised("users", "add", "ada@example.com", env={"DBTOOL_USER_PASSWORD": "long enough pw"})
    database = initialised.url.rsplit("/", 1)[1]
    code, stderr, seconds = asyncio.run(_held(database, held, command))
    assert code == 1, stderr
    assert seconds < 15, seconds
    line = next(line for line in stderr.splitlines() if line.startswith("error:"))
    assert "within 1s" in line and "nothing was changed" in line, line
    assert run_sql(initialised.url, "SELECT email FROM users") == [("ada@example.com",)]
