"""Settings: precedence, sources, URL normalisation, validation and masking."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from dbtool.app import app
from dbtool.config import load_settings, normalize_url
from dbtool.errors import ConfigError
from tests.helpers import Result, assert_clean_error


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), env=env)
    return Result(result.exit_code, result.stdout, result.stderr)


def config_json(*args: str, env: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
    result = run(*args, "config", "--json", env=env)
    assert result.exit_code == 0, result.output
    data: dict[str, dict[str, object]] = json.loads(result.stdout)
    return data


def test_defaults_when_nothing_is_configured() -> None:
    data = config_json()
    assert data["DATABASE_URL"] == {"value": "sqlite+aiosqlite:///./dbtool.db", "source": "default"}
    assert data["DBTOOL_POOL_SIZE"] == {"value": 5, "source": "default"}
    assert data["DBTOOL_CONNECT_TIMEOUT"] == {"value": 10.0, "source": "default"}
    assert data["DBTOOL_PROTECTED"] == {"value": False, "source": "default"}


def test_url_precedence_option_then_environment_then_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "DATABASE_URL=sqlite:///from-dotenv.db\nDBTOOL_POOL_SIZE=7\nDBTOOL_ECHO=yes\n"
    )
    data = config_json()
    assert data["DATABASE_URL"]["value"] == "sqlite+aiosqlite:///from-dotenv.db"
    assert str(data["DATABASE_URL"]["source"]).startswith(".env file")
    assert data["DBTOOL_POOL_SIZE"]["value"] == 7
    assert data["DBTOOL_ECHO"]["value"] is True

    env = {"DATABASE_URL": "sqlite:///from-env.db", "DBTOOL_POOL_SIZE": "3"}
    data = config_json(env=env)
    assert data["DATABASE_URL"] == {
        "value": "sqlite+aiosqlite:///from-env.db",
        "source": "environment",
    }
    assert data["DBTOOL_POOL_SIZE"] == {"value": 3, "source": "environment"}

    data = config_json("--url", "sqlite:///from-option.db", env=env)
    assert data["DATABASE_URL"] == {
        "value": "sqlite+aiosqlite:///from-option.db",
        "source": "option",
    }


def test_env_file_option_replaces_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DBTOOL_POOL_SIZE=7\n")
    other = tmp_path / "ci.env"
    other.write_text("DBTOOL_POOL_SIZE=9\n")
    data = config_json("--env-file", str(other))
    assert data["DBTOOL_POOL_SIZE"] == {"value": 9, "source": f".env file ({other})"}


def test_missing_env_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run("--env-file", str(tmp_path / "nope.env"), "config")
    assert_clean_error(result, 2, "--env-file", "no such file")


def test_empty_environment_value_counts_as_unset(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DBTOOL_POOL_SIZE=7\n")
    data = config_json(env={"DBTOOL_POOL_SIZE": ""})
    assert data["DBTOOL_POOL_SIZE"]["value"] == 7


LITESTAR_ENV = """\
DATABASE_USER=app
DATABASE_PASSWORD='pa$$w0rd $HOME'
DATABASE_HOST=localhost
DATABASE_DB=app
DATABASE_URL=postgresql://${DATABASE_USER}:${DATABASE_PASSWORD}@${DATABASE_HOST}:${DATABASE_PORT}/${DATABASE_DB}
"""


@pytest.mark.parametrize(
    "environment",
    [{"DATABASE_PORT": "5433"}, {"DATABASE_PORT": "5433", "DATABASE_USER": "from_env"}],
)
def test_dotenv_is_read_as_python_dotenv_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    """litestar-fullstack's .env builds DATABASE_URL from ${...} references: the same URL
    as the application's own load_dotenv() sees, and a bare `$` stays literal."""
    from dotenv import load_dotenv

    (tmp_path / ".env").write_text(LITESTAR_ENV)
    monkeypatch.setattr(os, "environ", {**os.environ, **environment})  # undone after the test
    settings = load_settings()
    load_dotenv(tmp_path / ".env")  # the application's way, into os.environ
    expected = make_url(os.environ["DATABASE_URL"])
    assert settings.url.password == expected.password == "pa$$w0rd $HOME"
    assert (settings.url.username, settings.url.port) == (expected.username, 5433)
    assert settings.url.username == environment.get("DATABASE_USER", "app")


def test_config_shows_where_each_reference_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text(LITESTAR_ENV)
    monkeypatch.setenv("DATABASE_PORT", "5433")
    result = run("config", "--json")
    assert result.exit_code == 0, result.output
    url = json.loads(result.stdout)["DATABASE_URL"]
    assert url["value"] == "postgresql+asyncpg://app:***@localhost:5433/app"
    assert "${DATABASE_PORT} from the environment" in url["source"]
    assert "${DATABASE_PASSWORD} from .env" in url["source"]
    assert "pa$$" not in result.output


def test_a_reference_to_nothing_is_named_in_the_error() -> None:
    Path(".env").write_text(LITESTAR_ENV)
    assert_clean_error(run("config"), 2, "DATABASE_URL", "${DATABASE_PORT} is not set", "port")


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"DBTOOL_POOL_SIZE": "abc"}, ["DBTOOL_POOL_SIZE", "environment", "whole number"]),
        ({"DBTOOL_POOL_SIZE": "0"}, ["DBTOOL_POOL_SIZE", "at least 1"]),
        ({"DBTOOL_POOL_TIMEOUT": "-1"}, ["DBTOOL_POOL_TIMEOUT", "above 0"]),
        ({"DBTOOL_POOL_PRE_PING": "maybe"}, ["DBTOOL_POOL_PRE_PING", "true or false"]),
        ({"DBTOOL_CONNECT_TIMEOUT": "soon"}, ["DBTOOL_CONNECT_TIMEOUT", "seconds"]),
        ({"DBTOOL_PASSWORD_MIN_LENGTH": "0"}, ["DBTOOL_PASSWORD_MIN_LENGTH", "between 1 and 4096"]),
    ],
)
def test_bad_setting_values_name_the_setting_and_source(
    env: dict[str, str], fragments: list[str]
) -> None:
    assert_clean_error(run("config", env=env), 2, *fragments)


def test_bad_setting_in_dotenv_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DBTOOL_MAX_OVERFLOW=lots\n")
    assert_clean_error(run("config"), 2, "DBTOOL_MAX_OVERFLOW", ".env file")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u@h:5433/db", "postgresql+asyncpg://u@h:5433/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u@h/db?sslmode=require", "postgresql+asyncpg://u@h/db?ssl=require"),
        ("postgresql://u@h/db?ssl=verify-full", "postgresql+asyncpg://u@h/db?ssl=verify-full"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
        ("sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ],
)
def test_urls_are_normalised_to_async_drivers(raw: str, expected: str) -> None:
    url, _ = normalize_url(raw, "test")
    assert url.render_as_string(hide_password=False) == expected


def test_escaped_password_characters_survive() -> None:
    url, _ = normalize_url("postgresql://app:p%40ss%3Aw%2Frd%23%3F@db:5432/app", "test")
    assert url.password == "p@ss:w/rd#?"
    # And they round-trip into what the driver receives.
    assert make_url(url.render_as_string(hide_password=False)).password == "p@ss:w/rd#?"


def test_libpq_parameters_become_settings() -> None:
    settings = load_settings(
        url="postgresql://u@h/db?application_name=billing&connect_timeout=3", environ={}
    )
    assert settings.application_name == "billing"
    assert settings.connect_timeout == 3
    assert settings.sources["DBTOOL_CONNECT_TIMEOUT"] == "DATABASE_URL"
    assert dict(settings.url.query) == {}
    # The setting itself wins over the URL.
    settings = load_settings(
        url="postgresql://u@h/db?connect_timeout=3", environ={"DBTOOL_CONNECT_TIMEOUT": "7"}
    )
    assert settings.connect_timeout == 7


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("not a url", "not a valid database URL"),
        ("oracle://u@h/db", "unsupported driver 'oracle'"),
        ("mysql://u@h/db?sslmode=require", "unsupported parameter(s) sslmode"),
        ("mysql://u@h/db?ssl_mode=sometimes", "ssl_mode='SOMETIMES' must be one of"),
        ("mysql://u@h/db?ssl_ca=/nope.pem", "ssl_ca=/nope.pem is not a readable file"),
        ("mariadb://u@h", "names no database"),
        ("postgresql+pg8000://u@h/db", "unsupported driver"),
        ("postgresql://u:p@ss@h/db", "percent-encode"),
        ("postgresql://u@h/db?sslmode=sometimes", "sslmode='sometimes'"),
        ("postgresql://u@h/db?options=-c%20x", "unsupported parameter(s) options"),
        ("postgresql://u@h:notaport/db", "not a valid database URL"),
        ("postgresql://u@h", "names no database"),
    ],
)
def test_bad_urls_are_usage_errors(raw: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        normalize_url(raw, "environment")
    assert fragment in str(caught.value)
    line = assert_clean_error(run("--url", raw, "ping"), 2, fragment)
    assert "DATABASE_URL" in line


def test_passwords_are_masked_in_config_and_errors() -> None:
    secret = "s3cr3t-Pa55"
    url = f"postgresql://app:{secret}@127.0.0.1:1/app"
    for result in (
        run("--url", url, "config"),
        run("--url", url, "config", "--json"),
        run("--url", url, "ping"),
        run("--url", url + "?sslmode=bogus", "ping"),
    ):
        assert secret not in result.output
    assert "***" in run("--url", url, "config", "--json").stdout


def test_config_table_lists_every_setting() -> None:
    result = run("config")
    assert result.exit_code == 0
    for name in (
        "DATABASE_URL",
        "DBTOOL_POOL_SIZE",
        "DBTOOL_MAX_OVERFLOW",
        "DBTOOL_POOL_TIMEOUT",
        "DBTOOL_POOL_RECYCLE",
        "DBTOOL_POOL_PRE_PING",
        "DBTOOL_CONNECT_TIMEOUT",
        "DBTOOL_ECHO",
        "DBTOOL_PROTECTED",
        "DBTOOL_PASSWORD_MIN_LENGTH",
    ):
        assert name in result.stdout


def test_env_example_documents_every_setting() -> None:
    from dbtool.config import ALL_SETTING_NAMES

    example = (Path(__file__).parents[1] / ".env.example").read_text()
    for name in (*ALL_SETTING_NAMES, "DBTOOL_USER_PASSWORD"):
        assert f"{name}=" in example, f"{name} is missing from .env.example"


def test_echo_logs_sql_to_stderr_with_parameters_hidden(tmp_path: Path) -> None:
    from tests.helpers import Dbtool

    dbtool = Dbtool(f"sqlite:///{tmp_path / 'echo.db'}")
    assert dbtool("init").exit_code == 0
    added = dbtool("users", "add", "secret.person@example.com", "--password-stdin",
                   input="long enough pw\n", env={"DBTOOL_ECHO": "true"})  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "INSERT INTO users" in added.stderr
    assert "secret.person" not in added.stderr.split("Created user")[0]  # parameters hidden
    listed = dbtool("users", "list", "--json", env={"DBTOOL_ECHO": "true"})
    assert json.loads(listed.stdout)[0]["email"] == "secret.person@example.com"  # stdout: data
    assert "SELECT" in listed.stderr


def test_debug_shows_a_traceback_without_locals() -> None:
    import subprocess

    from tests.helpers import dbtool_executable

    url = "postgresql://app:TopSecret99@127.0.0.1:1/app"
    plain = subprocess.run(
        [dbtool_executable(), "--url", url, "ping"], capture_output=True, text=True
    )
    assert plain.returncode == 3 and "Traceback" not in plain.stderr
    debug = subprocess.run(
        [dbtool_executable(), "--url", url, "--debug", "ping"], capture_output=True, text=True
    )
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr
    assert "TopSecret99" not in debug.stderr + debug.stdout


def test_user_text_in_errors_is_not_rich_markup(tmp_path: Path) -> None:
    from tests.helpers import Dbtool

    dbtool = Dbtool(f"sqlite:///{tmp_path / 'm.db'}")
    assert dbtool("init").exit_code == 0
    result = dbtool("users", "show", "[bold]x[/bold]")
    assert_clean_error(result, 1, "no user matches '[bold]x[/bold]'")
