"""Password hashing and the password policy: the one place that knows about either.

New hashes are Argon2id with argon2-cffi's recommended parameters (RFC 9106 low-memory
profile), or bcrypt (cost 12) with DBTOOL_PASSWORD_HASH=bcrypt, for applications whose login
code verifies only bcrypt. Hashes of the other scheme still verify, and so do the hashes of
other systems that imports accept (dbtool.users.legacy_hashes: Django, Firebase); a login
(`authenticate`) or `check-password --upgrade` replaces an outdated one (`upgrade_scheme`:
a bcrypt hash stays bcrypt unless DBTOOL_PASSWORD_HASH says otherwise). `!` marks an
account without a usable password.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

from dbtool.errors import DbtoolError, InvalidInputError
from dbtool.users import legacy_hashes
from dbtool.users.bounds import (
    BCRYPT,
    BCRYPT_COST,
    bcrypt_match_problem,
    outside,
)

if TYPE_CHECKING:
    from pwdlib import PasswordHash

MAX_PASSWORD_LENGTH = 4096
DEFAULT_MIN_LENGTH = 8
DEFAULT_SCHEME = "argon2"
SCHEME_NAMES = {"argon2": "Argon2id", "bcrypt": "bcrypt"}  # as told to people
BCRYPT_MAX_BYTES = 72  # bcrypt ignores (bcrypt 5: refuses) anything longer

# Scheme -> the PasswordHash whose first hasher makes new hashes of that scheme; the others
# only verify (and ask for an upgrade). Built on first use, so the hashing modules load only
# for commands that hash.
_hashers: dict[str, PasswordHash] = {}


def password_hasher(scheme: str = DEFAULT_SCHEME) -> PasswordHash:
    if not _hashers:
        from pwdlib import PasswordHash
        from pwdlib.hashers.argon2 import Argon2Hasher
        from pwdlib.hashers.bcrypt import BcryptHasher

        argon2, bcrypt, legacy = Argon2Hasher(), BcryptHasher(), LegacyHasher()
        _hashers.update(
            argon2=PasswordHash((argon2, bcrypt, legacy)),
            bcrypt=PasswordHash((bcrypt, argon2, legacy)),
        )
    return _hashers[scheme]


def hash_password(password: str, scheme: str = DEFAULT_SCHEME) -> str:
    return password_hasher(scheme).hash(password)


class HashRefusedError(DbtoolError):
    """A stored hash dbtool will not verify: unknown format, or parameters out of bounds."""


def verify_password(
    password: str, stored_hash: str, scheme: str = DEFAULT_SCHEME
) -> tuple[bool, str | None]:
    """(matches, replacement hash or None). Note pwdlib's order: password first, then hash.

    A hash outside the bounds below is refused (HashRefusedError) before any work: a bcrypt
    cost of 31, or Argon2 with 4 GiB of memory, would otherwise cost minutes of CPU or
    gigabytes per check, which an attacker who can plant a hash turns into denial of service.
    An unusable password (`!`) matches nothing.
    """
    if legacy_hashes.is_unusable(stored_hash):
        return False, None
    problem = hash_problem(stored_hash)
    if problem is not None:
        raise HashRefusedError(f"the stored password hash {problem}; it is not verified")
    try:
        return password_hasher(scheme).verify_and_update(password, stored_hash)
    except ValueError:
        # bcrypt refuses passwords over 72 bytes instead of answering "no".
        return False, None


# --- what a stored hash may look like -------------------------------------------------------

ARGON2_MEMORY_KIB = (8, 262_144)  # and at least 8 KiB per lane (Argon2's own minimum)
ARGON2_TIME = (1, 16)
ARGON2_LANES = (1, 16)
ARGON2_WORK_KIB = 1_048_576  # memory x time: e.g. 256 MiB x 4 or 64 MiB x 16
ARGON2_SALT_BYTES = (8, 64)
ARGON2_DIGEST_BYTES = (32, 64)  # 32 is every common library's default

# The parameters as one group (the hashes of one system share them: checked once per set),
# then the salt and the digest.
_ARGON2 = re.compile(
    r"\$(?P<parameters>(?P<variant>argon2(?:id|i|d))\$v=\d{1,4}\$m=\d{1,12},t=\d{1,12},p=\d{1,12})"
    r"\$(?P<salt>[A-Za-z0-9+/]+)\$(?P<digest>[A-Za-z0-9+/]+)"
)
_ARGON2_PARAMETERS = re.compile(r"(argon2(?:id|i|d))\$v=(\d+)\$m=(\d+),t=(\d+),p=(\d+)")


def _argon2_problem(match: re.Match[str]) -> str | None:
    # One groups() call, the parameters checked once per set of them, the lengths looked up:
    # this runs for every row of an import of hashes.
    parameters, _, salt, digest = match.groups()
    problem = _argon2_parameters_problem(parameters)
    if problem is not None:
        return problem
    if len(salt) not in _ARGON2_SALT_CHARS:
        return "has an Argon2 salt of the wrong length (8 to 64 bytes)"
    if len(digest) not in _ARGON2_DIGEST_CHARS:
        return "has an Argon2 digest of the wrong length (32 to 64 bytes): it looks cut short"
    return None


def _base64_lengths(bounds: tuple[int, int]) -> frozenset[int]:
    """The lengths of unpadded base64 text (4 characters for 3 bytes; never 1 more than a
    multiple of 4) of `bounds` bytes."""
    return frozenset(
        length
        for length in range(4 * bounds[1] // 3 + 4)
        if length % 4 != 1 and not outside(length * 3 // 4, bounds)
    )


_ARGON2_SALT_CHARS = _base64_lengths(ARGON2_SALT_BYTES)
_ARGON2_DIGEST_CHARS = _base64_lengths(ARGON2_DIGEST_BYTES)


@lru_cache(maxsize=256)
def _argon2_parameters_problem(parameters: str) -> str | None:
    """The variant, version and cost parameters (`argon2id$v=19$m=65536,t=3,p=4`)."""
    match = _ARGON2_PARAMETERS.fullmatch(parameters)
    assert match is not None  # _ARGON2 matched them
    variant, version, m, t, p = match.groups()
    if variant == "argon2d":
        return "is Argon2d, which is not meant for passwords (use Argon2id or Argon2i)"
    if version not in ("16", "19"):
        return f"has an unknown Argon2 version (v={version})"
    memory, time, lanes = int(m), int(t), int(p)
    if outside(lanes, ARGON2_LANES):
        return f"has Argon2 parallelism p={lanes}, outside {ARGON2_LANES[0]}-{ARGON2_LANES[1]}"
    if outside(time, ARGON2_TIME):
        return f"has Argon2 time cost t={time}, outside {ARGON2_TIME[0]}-{ARGON2_TIME[1]}"
    if outside(memory, ARGON2_MEMORY_KIB) or memory < 8 * lanes:
        return f"has Argon2 memory m={memory} KiB, outside {8 * lanes}-{ARGON2_MEMORY_KIB[1]} KiB"
    if memory * time > ARGON2_WORK_KIB:
        return (
            f"costs too much to check (Argon2 m x t = {memory * time} KiB, more than "
            f"{ARGON2_WORK_KIB})"
        )
    return None


# Every block of an import's hashes: the parameter sets of its Argon2 hashes.
_ARGON2_PARAMETERS_IN_TEXT = re.compile(
    r"\$(argon2(?:id|i|d)\$v=\d{1,4}\$m=\d{1,12},t=\d{1,12},p=\d{1,12})\$"
)


# The salt and digest lengths of the Argon2 hashes libraries make (8, 16, 24 or 32-byte
# salts; 32, 48 or 64-byte digests), in base64 characters: each one of _ARGON2_SALT_CHARS,
# _ARGON2_DIGEST_CHARS. Fixed runs are what the regex engine matches fastest.
_COMMON_SALT_CHARS = (22, 11, 32, 43)
_COMMON_DIGEST_CHARS = (43, 64, 86)


def plain_hash_pattern() -> tuple[str, str, int]:
    """Regular expressions of common Argon2 and bcrypt hashes that `normalized_hash_problem`
    passes as they are, but for the Argon2 parameters, which `argon2_parameters_problem_in`
    checks for a whole block of text: (Argon2, which has commas, bcrypt, which has none,
    the longest hash they match). For import files checked a block at a time."""
    assert set(_COMMON_SALT_CHARS) <= _ARGON2_SALT_CHARS
    assert set(_COMMON_DIGEST_CHARS) <= _ARGON2_DIGEST_CHARS

    def runs(lengths: tuple[int, ...]) -> str:
        return "(?:" + "|".join(f"[A-Za-z0-9+/]{{{n}}}" for n in lengths) + ")"

    argon2 = (
        r"\$argon2(?:id|i)\$v=(?:19|16)\$m=\d{1,12},t=\d{1,12},p=\d{1,12}"
        rf"\${runs(_COMMON_SALT_CHARS)}\${runs(_COMMON_DIGEST_CHARS)}"
    )
    widest = len("$argon2id$v=19$m=,t=,p=$$") + 3 * 12
    widest += max(_COMMON_SALT_CHARS) + max(_COMMON_DIGEST_CHARS)
    costs = "|".join(f"{cost:02d}" for cost in range(BCRYPT_COST[0], BCRYPT_COST[1] + 1))
    return argon2, rf"\$2[aby]\$(?:{costs})\$[A-Za-z0-9./]{{53}}", widest


def argon2_parameters_problem_in(text: str) -> bool:
    """Whether some Argon2 hash in `text` has parameters `hash_problem` refuses."""
    found = set(_ARGON2_PARAMETERS_IN_TEXT.findall(text))
    return any(_argon2_parameters_problem(parameters) is not None for parameters in found)


def hash_problem(value: str) -> str | None:
    """Why `value` cannot be stored (import) or verified as a password hash, or None: the
    format is recognised, complete, its parameters lie within the bounds above (or those of
    dbtool.users.legacy_hashes), and this installation can verify it. An unusable-password marker
    (`!`) can be stored."""
    return normalized_hash_problem(legacy_hashes.normalize(value))


def normalized_hash_problem(value: str) -> str | None:
    """hash_problem of a hash already through normalize_hash (an import's every row)."""
    if (match := _ARGON2.fullmatch(value)) is not None:
        return _argon2_problem(match)
    if (match := BCRYPT.fullmatch(value)) is not None:
        return bcrypt_match_problem(match)
    if value.startswith("$2") or value.startswith("$argon2"):
        return "is not a complete Argon2 or bcrypt hash"
    return legacy_hashes.problem(value)


def normalize_hash(value: str) -> str:
    """How an imported hash is stored (Django's `argon2$`/`bcrypt$` prefixes removed)."""
    return legacy_hashes.normalize(value)


def is_usable(value: str | None) -> bool:
    """False for a missing or empty hash, or an unusable-password marker (`!...`)."""
    return bool(value) and not legacy_hashes.is_unusable(value or "")


def describe_hash(value: str | None) -> str:
    """The scheme of a stored hash, in words (for `users show`)."""
    if not is_usable(value):
        return "none (cannot log in until dbtool users set-password)"
    assert value is not None
    if (match := _ARGON2.fullmatch(value)) is not None:
        return match["variant"].capitalize()
    if BCRYPT.fullmatch(value):
        return "bcrypt"
    name = legacy_hashes.describe(value)
    return f"{name} (replaced at the next successful check)" if name else "unknown"


def upgrade_scheme(stored_hash: str, configured: str, *, chosen: bool) -> str:
    """The scheme an outdated hash is replaced with once its password matched: the
    configured one when DBTOOL_PASSWORD_HASH was set (`chosen`), else the stored hash's own
    family where dbtool makes it, so that the application's own login code, which may
    verify nothing else (FastAPI-boilerplate's `bcrypt.checkpw`), still can. A bcrypt hash
    of another cost then becomes a bcrypt hash of dbtool's cost, never an Argon2id one."""
    if chosen:
        return configured
    return "bcrypt" if BCRYPT.fullmatch(stored_hash) else configured


def is_password_hash(value: str) -> bool:
    """True if `value` is a hash dbtool accepts and can verify against."""
    return is_usable(value) and hash_problem(value) is None


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
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:  # invalid UTF-8 read from stdin or the environment
        return "password is not valid UTF-8 text"
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


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LegacyHasher:
    """A pwdlib hasher for the foreign hashes above, so that an application's own login
    code (fastapi-users' PasswordHelper, a plain pwdlib PasswordHash) verifies imported
    users (the schemes of `legacy_hashes`) and replaces their hashes:

        PasswordHash((Argon2Hasher(), BcryptHasher(), LegacyHasher()))

    It never makes hashes, and answers False (never raises) for a hash out of bounds or an
    unusable password, as a login path should.
    """

    @classmethod
    def identify(cls, hash: str | bytes) -> bool:
        text = _text(hash)
        normal = legacy_hashes.normalize(text)
        return (
            legacy_hashes.is_unusable(text)
            or normal != text
            or legacy_hashes.identify(normal) is not None
        )

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        raise TypeError("LegacyHasher only verifies; list another hasher first")

    def verify(self, password: str | bytes, hash: str | bytes) -> bool:
        text = legacy_hashes.normalize(_text(hash))
        if legacy_hashes.is_unusable(text) or hash_problem(text) is not None:
            return False
        if legacy_hashes.identify(text) is None:  # a standard hash behind Django's prefix
            return password_hasher().verify(password, text)
        return legacy_hashes.verify(_text(password), text)

    def check_needs_rehash(self, hash: str | bytes) -> bool:
        return True
