"""How dbtool says how many of something there are: "1 row", "2 rows", never "1 rows" or
"row(s)". Light on purpose: messages everywhere use it."""

from __future__ import annotations


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """`1,234 rows`, `1 row`: the number with thousands separators, and the noun agreeing
    with it (`plural` where adding an s is wrong: "1 entry", "2 entries")."""
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"


def agreeing(number: int, singular: str, plural: str) -> str:
    """The word of the two that agrees with `number` ("is"/"are", "has"/"have")."""
    return singular if number == 1 else plural
