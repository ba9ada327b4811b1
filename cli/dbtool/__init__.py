"""dbtool: database admin for async SQLAlchemy applications.

The library part is importable by applications:

    from dbtool import Database
    from dbtool import load_settings
    from dbtool.users import add_user

Names are loaded on first use (PEP 562), so importing the package, as every `dbtool`
invocation does, costs nothing until a command needs the database.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Settings": "dbtool.config",
    "load_settings": "dbtool.config",
    "Database": "dbtool.db",
    "Base": "dbtool.models.builtin",
    "User": "dbtool.models.builtin",
    "DbtoolError": "dbtool.errors",
    "ExitCode": "dbtool.errors",
    "UserModel": "dbtool.models.user_model",
    "user_model_for": "dbtool.models.user_model",
    "load_models": "dbtool.models.user_model",
    "UserRecord": "dbtool.users.service",
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
    from dbtool.config import Settings, load_settings
    from dbtool.db import Database
    from dbtool.errors import DbtoolError, ExitCode
    from dbtool.models.builtin import Base, User
    from dbtool.models.user_model import UserModel, load_models, user_model_for
    from dbtool.users.service import UserRecord


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dbtool' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
