"""Alembic projects as real applications have them: no success unless the database dbtool
was pointed at is at head with the models' tables there.

Each env.py here is the real one of its kind: Alembic's own templates (`alembic init -t
generic`, the default synchronous one, and `-t async`) and advanced-alchemy's, copied from
the installed package at test time; then edited the way the applications edit them (the
FastAPI template builds its URL from its own settings; litestar-fullstack keeps its
revisions in `ddl_version`; FastAPI-boilerplate has no revisions yet).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.helpers import (
    Result,
    assert_clean_error,
    pg_execute,
    run_sql,
    table_names,
)
from tests.test_alembic import MODELS, in_project, make_project

TABLES = {"accounts", "migration_log"}


def clean_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    return assert_clean_error(Result(result.returncode, result.stdout, result.stderr), code,
                              *fragments)  # fmt: skip


def edit_env(project: Path, old: str, new: str) -> None:
    env = project / "migrations" / "env.py"
    text = env.read_text()
    assert old in text, old
    env.write_text(text.replace(old, new))


@pytest.mark.parametrize("template", ["generic", "async"])
def test_alembics_own_templates_migrate_and_check_clean(
    database_url: str, tmp_path: Path, template: str
) -> None:
    """The default env.py is synchronous: it makes a plain engine of dbtool's URL."""
    project = make_project(tmp_path / "project", template=template)
    result = in_project(project, database_url, "init")
    assert result.returncode == 0, result.stderr
    assert "applied 0001, 0002, 0003" in result.stderr
    assert "checked: alembic_version says head" in result.stderr
    assert table_names(database_url) >= TABLES | {"alembic_version"}
    assert run_sql(database_url, "SELECT step FROM migration_log ORDER BY step") == [
        (1,), (2,), (3,)
    ]  # fmt: skip
    checked = in_project(project, database_url, "check")
    assert checked.returncode == 0, checked.stderr


def test_an_env_py_that_builds_its_own_url_is_never_a_success(
    database_url: str, second_database_url: str, tmp_path: Path
) -> None:
    """As the FastAPI template's env.py: `get_url()` from the app's own settings, so the
    migrations went to another database. dbtool's database is still empty: exit 1."""
    other = second_database_url
    project = make_project(tmp_path / "project", template="generic")
    own_url = f"config.set_main_option('sqlalchemy.url', {other!r})"
    edit_env(project, "config = context.config\n", f"config = context.config\n{own_url}\n")
    for args in (["init"], ["init", "--json"]):
        result = in_project(project, database_url, *args)
        line = clean_error(result, 1, "env.py ignores the URL dbtool passes",
                           make_url(other).database or "")  # fmt: skip
        assert "migrated" in line and "✓" not in result.stderr
        assert result.stdout == ""  # no JSON claiming anything
        assert not table_names(database_url) & TABLES
    assert table_names(other) >= TABLES  # where the env.py really went
    assert in_project(project, database_url, "check").returncode == 1


def test_a_project_without_revisions_gets_the_models_tables(
    database_url: str, tmp_path: Path
) -> None:
    """FastAPI-boilerplate: an alembic.ini and env.py, no revision yet (the app makes its
    tables at start-up). init makes them from the models and says so; reset too."""
    project = make_project(tmp_path / "project", migrations=False)
    result = in_project(project, database_url, "init")
    assert result.returncode == 0, result.stderr
    assert "has no revisions yet" in result.stderr
    assert "Created tables: accounts, migration_log" in result.stderr
    assert table_names(database_url) >= TABLES
    assert "alembic_version" not in table_names(database_url)  # nothing recorded
    assert json.loads(in_project(project, database_url, "init", "--json").stdout)[
        "alembic_without_revisions"
    ].endswith("alembic.ini")
    reset = in_project(project, database_url, "reset", "--yes")
    assert reset.returncode == 0, reset.stderr
    assert "Created tables: accounts, migration_log" in reset.stderr
    assert table_names(database_url) >= TABLES
    sql = in_project(project, database_url, "reset", "--sql")
    assert "CREATE TABLE accounts" in sql.stdout


def test_a_version_table_of_its_own_is_the_one_read(database_url: str, tmp_path: Path) -> None:
    """litestar-fullstack's env.py: `version_table="ddl_version"`. init, check, info and
    drop all use it; nothing calls it an extra table."""
    project = make_project(tmp_path / "project")
    edit_env(project, "target_metadata=target_metadata",
             "target_metadata=target_metadata, version_table='ddl_version'")  # fmt: skip
    result = in_project(project, database_url, "init")
    assert result.returncode == 0, result.stderr
    assert "checked: ddl_version says head" in result.stderr
    assert "alembic_version" not in table_names(database_url)
    checked = in_project(project, database_url, "check", "--json")
    assert checked.returncode == 0, checked.stdout
    assert json.loads(checked.stdout)["alembic"]["version_table"] == "ddl_version"
    info = json.loads(in_project(project, database_url, "info", "--json").stdout)
    assert info["alembic"]["current"] == ["0003"]
    dropped = in_project(project, database_url, "drop", "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert not table_names(database_url) & (TABLES | {"ddl_version"})
    again = in_project(project, database_url, "init")  # migrates again from the start
    assert again.returncode == 0 and "applied 0001, 0002, 0003" in again.stderr


def test_a_version_table_elsewhere_than_dbtool_reads_is_named(
    database_url: str, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "project")
    edit_env(project, "target_metadata=target_metadata",
             "target_metadata=target_metadata, version_table='ddl_version'")  # fmt: skip
    told = in_project(project, database_url, "init",
                      env={"DBTOOL_ALEMBIC_VERSION_TABLE": "schema_history"})  # fmt: skip
    clean_error(told, 1, "schema_history", "another version table")


def test_script_location_relative_to_the_ini_file(database_url: str, tmp_path: Path) -> None:
    """`script_location = migrations` in backend/alembic.ini, dbtool run from the
    repository's root, as CI jobs do."""
    project = make_project(tmp_path / "repo" / "backend")
    (project / "project_models.py").rename(tmp_path / "repo" / "project_models.py")
    result = in_project(tmp_path / "repo", database_url, "init",
                        env={"DBTOOL_ALEMBIC_CONFIG": "backend/alembic.ini"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert table_names(database_url) >= TABLES


def advanced_alchemy_project(directory: Path) -> Path:
    """litestar-fullstack's layout: advanced-alchemy's own async env.py, with the ini file
    inside the migrations folder, revisions in `versions/`."""
    advanced_alchemy = pytest.importorskip("advanced_alchemy")
    template = Path(advanced_alchemy.__file__).parent / "alembic" / "templates" / "asyncio"
    project = make_project(directory)
    shutil.copy(template / "env.py", project / "migrations" / "env.py")
    (project / "alembic.ini").rename(project / "migrations" / "alembic.ini")
    return project


def test_advanced_alchemys_env_py_needs_its_version_table_named(
    database_url: str, tmp_path: Path
) -> None:
    project = advanced_alchemy_project(tmp_path / "project")
    config = {"DBTOOL_ALEMBIC_CONFIG": "migrations/alembic.ini"}
    refused = in_project(project, database_url, "init", env=config)
    clean_error(refused, 2, "advanced-alchemy", "DBTOOL_ALEMBIC_VERSION_TABLE")
    assert not table_names(database_url) & TABLES
    named = {**config, "DBTOOL_ALEMBIC_VERSION_TABLE": "ddl_version"}
    result = in_project(project, database_url, "init", env=named)
    assert result.returncode == 0, result.stderr
    assert "checked: ddl_version says head" in result.stderr
    assert table_names(database_url) >= TABLES | {"ddl_version"}
    checked = in_project(project, database_url, "check", env=named)
    assert checked.returncode == 0, checked.stderr
    sql = in_project(project, database_url, "reset", "--sql", env=named)
    assert sql.returncode == 0 and "ddl_version" in sql.stdout


CONDITIONAL_INDEX = MODELS.replace(
    '__table_args__ = (Index("ix_accounts_nickname", "nickname"),)',
    '__table_args__ = (\n        Index("ix_accounts_nickname", "nickname"),\n'
    '        Index("ix_accounts_slug", "nickname", unique=True).ddl_if(dialect="postgresql"),\n'
    "    )",
)


def test_an_index_the_dialect_skips_is_not_missing(
    database_url: str, backend: str, tmp_path: Path
) -> None:
    """advanced-alchemy's slug mixin: a unique index made on PostgreSQL only (ddl_if).
    `init && check` passes on every database; PostgreSQL has the index."""
    project = make_project(tmp_path / "project", models=CONDITIONAL_INDEX, migrations=False)
    (project / "alembic.ini").unlink()  # the models alone
    first = in_project(project, database_url, "init")
    assert first.returncode == 0, first.stderr
    again = in_project(project, database_url, "init")
    assert again.returncode == 0 and "Created missing indexes" not in again.stderr
    checked = in_project(project, database_url, "check")
    assert checked.returncode == 0, checked.stderr
    sql = "SELECT indexname FROM pg_indexes WHERE indexname = 'ix_accounts_slug'"
    if backend == "postgres":
        assert run_sql(database_url, sql) == [("ix_accounts_slug",)]
    else:
        assert "ix_accounts_slug" not in in_project(project, database_url, "init", "--sql").stdout


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_init_drops_the_database_it_created_when_it_then_fails(
    database_url: str, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "project")
    (project / "migrations" / "versions" / "0003_step.py").write_text(
        "from alembic import op\n\nrevision = '0003'\ndown_revision = '0002'\n"
        "branch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade() -> None:\n    op.execute('SELECT no_such_function()')\n"
    )
    name = f"dbtool_test_{uuid.uuid4().hex[:12]}"
    url = database_url.rsplit("/", 1)[0] + "/" + name
    try:
        result = in_project(project, url, "init", "--create-database")
        clean_error(result, 1, "alembic upgrade failed")
        assert f"Dropped database {name} again" in result.stderr
        exists = run_sql(database_url, "SELECT 1 FROM pg_database WHERE datname = :n", {"n": name})
        assert exists == []
    finally:
        pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.sqlite
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sql_previews_create_no_database_file(database_url: str, tmp_path: Path) -> None:
    path = Path(database_url.split("///", 1)[1])
    project = make_project(tmp_path / "project")
    for args in (["init", "--sql"], ["reset", "--sql"]):
        result = in_project(project, database_url, *args)
        assert not path.exists(), (args, result.stderr)
    assert "CREATE TABLE accounts" in in_project(project, database_url, "init", "--sql").stdout
