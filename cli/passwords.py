"""Password hashing and the password policy: the one place that knows about either.

New hashes are Argon2id with argon2-cffi's recommended parameters (RFC 9106 low-memory
profile), or bcrypt (cost 12) with DBTOOL_PASSWORD_HASH=bcrypt, for applications whose login
code verifies only bcrypt. Hashes of the other scheme still verify and are replaced by one
of the configured scheme when the password is next checked (`verify_password` returns the
new hash).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cli.errors import DbtoolError, InvalidInputError

if TYPE_CHECKING:
    from pwdlib import PasswordHash

MAX_PASSWORD_LENGTH = 4096
DEFAULT_MIN_LENGTH = 8
DEFAULT_SCHEME = "argon2"
BCRYPT_MAX_BYTES = 72  # bcrypt ignores (bcrypt 5: refuses) anything longer

# Scheme -> the PasswordHash whose first hasher makes new hashes of that scheme; the other
# hasher only verifies (and asks for an upgrade). Built on first use, so the hashing modules
# load only for commands that hash.
_hashers: dict[str, PasswordHash] = {}


def password_hasher(scheme: str = DEFAULT_SCHEME) -> PasswordHash:
    if not _hashers:
        from pwdlib import PasswordHash
        from pwdlib.hashers.argon2 import Argon2Hasher
        from pwdlib.hashers.bcrypt import BcryptHasher

        argon2, bcrypt = Argon2Hasher(), BcryptHasher()
        _hashers.update(
            argon2=PasswordHash((argon2, bcrypt)), bcrypt=PasswordHash((bcrypt, argon2))
        )
    return _hashers[scheme]


def hash_password(password: str, scheme: str = DEFAULT_SCHEME) -> str:
    return password_hasher(scheme).hash(password)


def verify_password(
    password: str, stored_hash: str, scheme: str = DEFAULT_SCHEME
) -> tuple[bool, str | None]:
    """(matches, replacement hash or None). Note pwdlib's order: password first, then hash."""
    from pwdlib.exceptions import UnknownHashError

    try:
        return password_hasher(scheme).verify_and_update(password, stored_hash)
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


def hash_problem(value: str) -> str | None:
    """Why `value` cannot be stored as a password hash (import), or None."""
    if not is_password_hash(value):
        return "is not a complete Argon2 or bcrypt hash"
    return None


def policy_violation(
    password: str,
    *,
    min_length: int = DEFAULT_MIN_LENGTH,
    email: str | None = None,
    username: str | None = None,
    scheme: str = DEFAULT_SCHEME,
) -> str | None:
    """Why `password` is not acceptable, or None. Applied in every mode, scripted or not."""
    if len(password) < min_length:
        return f"password is too short: at least {min_length} characters are required"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"password is too long: at most {MAX_PASSWORD_LENGTH} characters are allowed"
    if scheme == "bcrypt" and len(password.encode("utf-8", "surrogatepass")) > BCRYPT_MAX_BYTES:
        return (
            f"password is too long for bcrypt (DBTOOL_PASSWORD_HASH=bcrypt): at most "
            f"{BCRYPT_MAX_BYTES} bytes in UTF-8"
        )
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
    scheme: str = DEFAULT_SCHEME,
) -> None:
    problem = policy_violation(
        password, min_length=min_length, email=email, username=username, scheme=scheme
    )
    if problem is not None:
        raise InvalidInputError(problem)
