"""The bounds every stored hash is checked against before it is verified, shared by
dbtool's own schemes (`passwords`) and other systems' (`legacy_hashes`): wide enough for
every common default, narrow enough that one check costs at most a few seconds and 256 MiB
(docs/guides/users.md, "Password hashes")."""

from __future__ import annotations

import re

BCRYPT_COST = (4, 16)
BCRYPT = re.compile(r"\$(?P<prefix>2[abxy])\$(?P<cost>\d{2})\$[A-Za-z0-9./]{53}")


def outside(value: int, bounds: tuple[int, int]) -> bool:
    return not bounds[0] <= value <= bounds[1]


def bcrypt_problem(value: str) -> str | None:
    """Why a complete bcrypt hash cannot be verified, or None."""
    match = BCRYPT.fullmatch(value)
    return "is not a complete bcrypt hash" if match is None else bcrypt_match_problem(match)


def bcrypt_match_problem(match: re.Match[str]) -> str | None:
    if match["prefix"] == "2x":
        return "is a $2x$ bcrypt hash (from a buggy implementation), which cannot be verified"
    cost = int(match["cost"])
    if outside(cost, BCRYPT_COST):
        return f"has bcrypt cost {cost}, outside {BCRYPT_COST[0]}-{BCRYPT_COST[1]}"
    return None
