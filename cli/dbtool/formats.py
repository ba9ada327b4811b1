"""File formats of import/export and how values are written to them, so that `users
import` reads exports back. Light on purpose: the CLI imports it to declare its options."""

from __future__ import annotations

import re
import uuid
from datetime import date
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any

# The stored password of an account that cannot log in (Django's convention: "!" and
# anything after it), until `users set-password`.
UNUSABLE = "!"


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    JSON = "json"  # one document: an array of objects, or an object holding one


class Source(StrEnum):
    """Systems whose user exports `users import --from` reads (dbtool.transfer.mapping)."""

    DJANGO = "django"
    AUTH0 = "auth0"
    FIREBASE = "firebase"


class OnConflict(StrEnum):
    FAIL = "fail"
    SKIP = "skip"
    UPDATE = "update"


def csv_value(value: Any) -> str:
    """A value as a CSV field: true/false, ISO 8601 timestamps, empty for None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, default=json_default, ensure_ascii=False)
    return "" if value is None else str(value)


def json_default(value: Any) -> Any:
    """`json.dumps(default=...)` for the types dbtool's rows contain."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def excerpt(value: Any, limit: int = 32) -> str:
    """A short, quoted excerpt of `value` for a message: cut at the first separator-like
    character, so what follows it in a broken file (a password, another row) never shows."""
    text = str(value)
    cut = re.search(r"[,;\t\r\n ]", text)
    end = min(cut.start() if cut else len(text), limit)
    shown = text[:end]
    return repr(shown + "…" if end < len(text) else shown)


# How messages on stderr are written (DBTOOL_LOG_FORMAT, --log-format): for people, or one
# JSON object per line for log collectors.
LOG_FORMATS = ("text", "json")


def parse_log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"expected one of {', '.join(LOG_FORMATS)}")
    return value
