"""File formats of import/export and how values are written to them, so that `users
import` reads exports back. Light on purpose: the CLI imports it to declare its options."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


class OnConflict(StrEnum):
    FAIL = "fail"
    SKIP = "skip"
    UPDATE = "update"


def csv_value(value: Any) -> str:
    """A value as a CSV field: true/false, ISO 8601 timestamps, empty for None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else str(value)


def json_default(value: Any) -> Any:
    """`json.dumps(default=...)` for the types dbtool's rows contain."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
