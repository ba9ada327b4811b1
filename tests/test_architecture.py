"""The layout holds: database differences live behind the backend seam, layers import
downwards only, and nothing is installed under another project's import name."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from dbtool.backends import _BACKENDS, DRIVERS, UnsupportedBackendError, backend_for
from dbtool.backends.base import Backend

PACKAGE = Path(__file__).parents[1] / "cli" / "dbtool"
# Words that name a database or its driver: feature code asks the backend instead.
DIALECT_WORDS = ("postgres", "sqlite", "asyncpg", "aiosqlite", "mysql", "mariadb", "psycopg")


def _feature_modules() -> list[Path]:
    return sorted(
        path for path in PACKAGE.rglob("*.py") if "backends" not in path.relative_to(PACKAGE).parts
    )


def _prose(tree: ast.AST) -> set[int]:
    """The ids of the string constants that are prose, which may name databases: docstrings,
    and help text (`help=`, `epilog=`)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg in ("help", "epilog"):
            found.update(id(part) for part in ast.walk(node.value))
    return found


def dialect_names_in(source: str) -> list[tuple[int, str]]:
    """(line, text) of every name, import or string in `source` that names a database,
    prose and comments aside."""
    tree = ast.parse(source)
    prose = _prose(tree)
    hits = []
    for node in ast.walk(tree):
        words: list[str] = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in prose:
                words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, ast.alias):
            words.append(node.name)
        elif isinstance(node, ast.ImportFrom):
            words.append(node.module or "")
        for word in words:
            if any(name in word.lower() for name in DIALECT_WORDS):
                hits.append((getattr(node, "lineno", 0), word))
    return hits


# Where a module must name a database, and why (kept short on purpose): the built-in
# default URL, and the examples in the "not a valid URL" error.
ALLOWED = {
    ("config.py", "sqlite+aiosqlite:///./dbtool.db"),
    ("config.py", "expected e.g. postgresql://user:password@host:5432/dbname or sqlite:///"),
    # The built-in table's own column type on MySQL (DATETIME(6)), declared as any model
    # declares one: SQLAlchemy's with_variant.
    ("builtin.py", "mysql"),
    ("builtin.py", "mariadb"),
}


def test_feature_code_names_no_database() -> None:
    """A third backend means a new module under backends/, never a branch in a feature."""
    found = []
    for path in _feature_modules():
        for line, word in dialect_names_in(path.read_text()):
            if not any(path.name == name and text in word for name, text in ALLOWED):
                found.append(f"{path.relative_to(PACKAGE)}:{line}: {word!r}")
    assert not found, "feature code names a database:\n" + "\n".join(found)


def test_the_check_catches_a_branch_on_the_dialect() -> None:
    """The scan above can fail: a branch on the dialect name is caught, prose is not."""
    branch = (
        'def f(conn):\n    """On PostgreSQL ..."""\n    return conn.dialect.name == "postgresql"\n'
    )
    assert dialect_names_in(branch) == [(3, "postgresql")]
    assert dialect_names_in("from sqlalchemy.dialects.sqlite import insert\n")
    assert dialect_names_in("import aiosqlite\n")
    assert not dialect_names_in('"""SQLite and PostgreSQL."""\n# sqlite\nx = 1\n')


@pytest.mark.parametrize("name", sorted(_BACKENDS))
def test_every_backend_implements_the_interface(name: str) -> None:
    backend = backend_for(name)
    assert isinstance(backend, Backend) and backend.name == name
    required = ("engine_options", "create_database", "server_version", "database_size", "insert")
    for method in required:
        assert getattr(type(backend), method) is not getattr(Backend, method), (name, method)


def test_every_driver_leads_to_a_backend() -> None:
    for scheme, driver in DRIVERS.items():
        assert backend_for(driver.partition("+")[0]).name == driver.partition("+")[0], scheme


def test_an_unknown_dialect_is_refused_not_taken_for_another() -> None:
    with pytest.raises(UnsupportedBackendError, match="no dbtool backend for the 'oracle'"):
        backend_for("oracle")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("dbtool")}


LIBRARY = (
    "backends",
    "models",
    "schema",
    "users",
    "transfer",
    "diagnostics",
    "fixtures",
    "interactive",
)


def test_the_library_never_imports_the_command_line() -> None:
    """Applications import the library: it needs neither Typer, Rich nor the commands."""
    for folder in (*LIBRARY, "db.py", "config.py", "errors.py", "formats.py"):
        for path in (PACKAGE / folder).rglob("*.py") if "." not in folder else [PACKAGE / folder]:
            imported = _imports(path)
            source = path.read_text()
            assert not {n for n in imported if n.startswith(("dbtool.commands", "dbtool.render",
                        "dbtool.app"))}, path  # fmt: skip
            assert "import typer" not in source and "from rich" not in source, path


def test_backends_import_no_feature() -> None:
    """The seam sits below the features: a backend builds on models, config and errors."""
    features = ("dbtool.schema", "dbtool.users", "dbtool.transfer", "dbtool.diagnostics")
    for path in (PACKAGE / "backends").rglob("*.py"):
        assert not {n for n in _imports(path) if n.startswith(features)}, path


def _imported_modules(path: Path, known: set[str]) -> set[str]:
    """The dbtool modules `path` imports, at module level or inside functions (imports made
    only for type checkers aside): `from a import b` counts as a.b where that is a module."""
    tree = ast.parse(path.read_text())
    checking = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dbtool"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("dbtool"))
    return found & known


def test_no_import_circles() -> None:
    """No cycle among dbtool's modules, counting the imports inside functions too: a lazy
    import is still a dependency."""
    paths = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    known = set(paths)
    edges = {name: _imported_modules(path, known) - {name} for name, path in paths.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, " -> ".join([*visiting[visiting.index(name) :], name])
        visiting.append(name)
        for dep in sorted(edges[name]):
            visit(dep)
        visiting.pop()
        done.add(name)

    for name in sorted(edges):
        visit(name)


def test_installed_under_its_own_name_only() -> None:
    """`import dbtool` and `python -m dbtool`; no top-level `cli` package of ours."""
    assert importlib.util.find_spec("dbtool") is not None
    done = subprocess.run(
        [sys.executable, "-c", "import cli"], capture_output=True, text=True, cwd="/"
    )
    assert done.returncode != 0 and "No module named 'cli'" in done.stderr


def test_the_command_registry_and_the_modules_agree() -> None:
    """Every command a module declares is in the registry under that module, and every
    registered name leads to a command: none is lost or listed twice."""
    from dbtool.commands import COMMANDS, GROUPS

    declared: dict[str, str] = {}
    for module_name in set(COMMANDS.values()):
        module = importlib.import_module(f"dbtool.commands.{module_name}")
        registry = getattr(module, "app", None)
        for info in getattr(registry, "registered_commands", []):
            declared[str(info.name)] = module_name
    assert declared == {name: module for name, module in COMMANDS.items() if name not in GROUPS}
    for group, attribute in GROUPS.items():
        module = importlib.import_module(f"dbtool.commands.{COMMANDS[group]}")
        assert getattr(module, attribute).info.name == group
