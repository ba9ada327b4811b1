"""dbtool installed beside applications that have their own `cli.py` or `cli/` package: a
real wheel and a real editable install into fresh virtual environments, before and after
the application, run from the application's project root.

The environments see this test environment's packages (SQLAlchemy, drivers...) through a
.pth line, but not its dbtool: each installs dbtool itself, so what runs is what pip put
there."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

MODELS = """\
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from {prefix_from} import TABLE_PREFIX


class Base(DeclarativeBase):
    pass


class Member(Base):
    __tablename__ = TABLE_PREFIX + "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    hashed_password: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=True)
    is_superuser: Mapped[bool] = mapped_column(default=False)
"""


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, input: str = "") -> str:
    done = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, input=input, capture_output=True, text=True
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dbtool's wheel, built as pip builds it for a normal install."""
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, ROOT, cwd=out)
    (found,) = out.glob("dbtool_sqla-*.whl")
    return found


def new_venv(where: Path) -> Path:
    """A virtual environment that borrows this one's third-party packages, not its dbtool."""
    run(sys.executable, "-m", "venv", "--without-pip", where, cwd=where.parent)
    (packages,) = where.glob("lib/python*/site-packages")
    borrowed = [path for path in site.getsitepackages() if Path(path).is_dir()]
    (packages / "borrowed.pth").write_text("\n".join(borrowed) + "\n")
    return where / "bin" / "python"


def pip_install(python: Path, *args: str | Path, cwd: Path) -> None:
    # This interpreter's pip, installing into the new environment.
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", *args,
        cwd=cwd)  # fmt: skip


def make_app(root: Path, layout: str) -> dict[str, str]:
    """A Typer-style project with its own `cli` (a module or a package), and models that
    import from it; the DBTOOL_MODELS that finds them."""
    root.mkdir()
    (root / "pyproject.toml").write_text(
        textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "someapp-{layout}"
        version = "1.0"

        [tool.setuptools]
        {'py-modules = ["cli", "models"]' if layout == "module" else 'packages = ["cli"]'}
        """)
    )
    if layout == "module":
        (root / "cli.py").write_text('TABLE_PREFIX = "app_"\nWHO = "the app\'s cli"\n')
        (root / "models.py").write_text(MODELS.format(prefix_from="cli"))
        return {"DBTOOL_MODELS": "models:Base"}
    (root / "cli").mkdir()
    (root / "cli" / "__init__.py").write_text('TABLE_PREFIX = "app_"\nWHO = "the app\'s cli"\n')
    (root / "cli" / "models.py").write_text(MODELS.format(prefix_from="cli"))
    return {"DBTOOL_MODELS": "cli.models:Base"}


def use_dbtool(python: Path, app: Path, settings: dict[str, str]) -> None:
    """init and users add from the project root, on the app's own tables."""
    database = app / "app.db"
    env = {**os.environ, **settings, "DATABASE_URL": f"sqlite:///{database}"}
    env.pop("PYTHONPATH", None)
    dbtool = python.parent / "dbtool"
    assert run(dbtool, "--version", cwd=app, env=env).startswith("dbtool ")
    run(dbtool, "init", cwd=app, env=env)
    env["DBTOOL_USER_PASSWORD"] = "long enough pw"
    run(dbtool, "users", "add", "ada@example.com", "--superuser", cwd=app, env=env)
    listed = run(dbtool, "users", "list", "--json", cwd=app, env=env)
    assert '"ada@example.com"' in listed
    import sqlite3

    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "app_members" in tables and "users" not in tables, tables
    # There, `cli` is the application's, and dbtool is dbtool.
    assert run(python, "-c", "import cli; print(cli.WHO)", cwd=app, env=env).strip() == (
        "the app's cli"
    )
    assert run(python, "-m", "dbtool", "--version", cwd=app, env=env).startswith("dbtool ")


@pytest.mark.parametrize("layout", ["module", "package"])
@pytest.mark.parametrize("order", ["dbtool first", "app first"])
def test_dbtool_beside_an_app_with_its_own_cli(
    tmp_path: Path, wheel: Path, layout: str, order: str
) -> None:
    app = tmp_path / "app"
    settings = make_app(app, layout)
    python = new_venv(tmp_path / "venv")
    steps = [("dbtool", wheel), ("app", app)]
    for _, target in steps if order == "dbtool first" else steps[::-1]:
        pip_install(python, target, cwd=tmp_path)
    use_dbtool(python, app, settings)
    # Removing the app leaves dbtool whole.
    run(sys.executable, "-m", "pip", "--python", python, "uninstall", "-q", "-y",
        f"someapp-{layout}", cwd=tmp_path)  # fmt: skip
    assert run(python.parent / "dbtool", "--version", cwd=tmp_path).startswith("dbtool ")


def test_an_editable_dbtool_beside_an_editable_app(tmp_path: Path) -> None:
    app = tmp_path / "app"
    settings = make_app(app, "package")
    python = new_venv(tmp_path / "venv")
    pip_install(python, "-e", ROOT, cwd=tmp_path)
    pip_install(python, "-e", app, cwd=tmp_path)
    use_dbtool(python, app, settings)
