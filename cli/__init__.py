"""dbtool: database admin for async SQLAlchemy applications.

The library part is importable by applications:

    from cli import Database, load_settings
    from cli.users import add_user

Names are loaded on first use (PEP 562), so importing the package, as every `dbtool`
invocation does, costs nothing until a command needs the database.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Settings": "cli.config",
    "load_settings": "cli.config",
    "Database": "cli.db",
    "Base": "cli.models",
    "User": "cli.models",
    "DbtoolError": "cli.errors",
    "ExitCode": "cli.errors",
    "UserModel": "cli.appmodels",
    "user_model_for": "cli.appmodels",
    "load_models": "cli.appmodels",
    "UserRecord": "cli.users",
}

__all__ = [
    "Base",
    "Database",
    "DbtoolError",
    "ExitCode",
    "Settings",
    "User",
    "UserModel",
    "UserRecord",
    "__version__",
    "load_models",
    "load_settings",
    "user_model_for",
]

if TYPE_CHECKING:
    from cli.appmodels import UserModel, load_models, user_model_for
    from cli.config import Settings, load_settings
    from cli.db import Database
    from cli.errors import DbtoolError, ExitCode
    from cli.models import Base, User
    from cli.users import UserRecord


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cli' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
