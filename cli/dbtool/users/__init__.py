"""Users and passwords: the library's account operations (`service`), with the password
hashing (`passwords`), other systems' hashes (`legacy_hashes`) and input rules
(`validation`) they use.

    from dbtool.users import add_user, authenticate, get_user

The service's names load on first use (PEP 562): importing `dbtool.users.passwords` alone
does not import SQLAlchemy's ORM.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "UserFilter",
    "UserRecord",
    "add_user",
    "authenticate",
    "check_password",
    "count_users",
    "delete_user",
    "find_user",
    "get_user",
    "list_users",
    "set_password",
    "stream_users",
    "update_user",
]

if TYPE_CHECKING:
    from dbtool.users.service import (
        UserFilter,
        UserRecord,
        add_user,
        authenticate,
        check_password,
        count_users,
        delete_user,
        find_user,
        get_user,
        list_users,
        set_password,
        stream_users,
        update_user,
    )


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'dbtool.users' has no attribute {name!r}")
    return getattr(importlib.import_module("dbtool.users.service"), name)
