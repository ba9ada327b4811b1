"""Password hashing and the password policy: the one place that knows about either.

New hashes are Argon2id with argon2-cffi's recommended parameters (RFC 9106 low-memory
profile). bcrypt hashes from older systems still verify and are replaced by Argon2 ones
when the password is next checked (`verify_password` returns the new hash).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cli.errors import DbtoolError, InvalidInputError

if TYPE_CHECKING:
    from pwdlib import PasswordHash

MAX_PASSWORD_LENGTH = 4096
DEFAULT_MIN_LENGTH = 8

_hasher: PasswordHash | None = None


def password_hasher() -> PasswordHash:
    """Built on first use: the hashing modules load only for commands that hash."""
    global _hasher
    if _hasher is None:
        from pwdlib import PasswordHash
        from pwdlib.hashers.argon2 import Argon2Hasher
        from pwdlib.hashers.bcrypt import BcryptHasher

        _hasher = PasswordHash((Argon2Hasher(), BcryptHasher()))
    return _hasher


def hash_password(password: str) -> str:
    return password_hasher().hash(password)


def verify_password(password: str, stored_hash: str) -> tuple[bool, str | None]:
    """(matches, replacement hash or None). Note pwdlib's order: password first, then hash."""
    from pwdlib.exceptions import UnknownHashError

    try:
        return password_hasher().verify_and_update(password, stored_hash)
    except UnknownHashError:
        raise DbtoolError(
            "the stored password hash is in a format dbtool does not recognise "
            "(expected Argon2 or bcrypt)"
        ) from None
    except ValueError:
        # bcrypt refuses passwords over 72 bytes instead of answering "no".
        return False, None


# Complete encoded hashes, stricter than pwdlib's identify() (which also accepts an Argon2
# parameter string without salt or digest): what import accepts must verify later.
_ARGON2_HASH = re.compile(
    r"\$argon2(?:id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{16,}"
)
_BCRYPT_HASH = re.compile(r"\$2[abxy]\$\d{2}\$[A-Za-z0-9+/.]{53}")


def is_password_hash(value: str) -> bool:
    """True if `value` is a complete Argon2 or bcrypt hash dbtool can verify against."""
    return bool(_ARGON2_HASH.fullmatch(value) or _BCRYPT_HASH.fullmatch(value))


def policy_violation(
    password: str,
    *,
    min_length: int = DEFAULT_MIN_LENGTH,
    email: str | None = None,
    username: str | None = None,
) -> str | None:
    """Why `password` is not acceptable, or None. Applied in every mode, scripted or not."""
    if len(password) < min_length:
        return f"password is too short: at least {min_length} characters are required"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"password is too long: at most {MAX_PASSWORD_LENGTH} characters are allowed"
    if "\x00" in password:
        return "password must not contain a NUL character"
    folded = password.casefold()
    if email and folded == email.casefold():
        return "password must not be the same as the email address"
    if username and folded == username.casefold():
        return "password must not be the same as the username"
    return None


def check_policy(
    password: str,
    *,
    min_length: int = DEFAULT_MIN_LENGTH,
    email: str | None = None,
    username: str | None = None,
) -> None:
    problem = policy_violation(password, min_length=min_length, email=email, username=username)
    if problem is not None:
        raise InvalidInputError(problem)
