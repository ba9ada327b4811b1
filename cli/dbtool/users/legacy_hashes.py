"""Password hashes of other systems, accepted on import and verified until replaced.

Users brought over from Django, Auth0 or Firebase keep their passwords: their hashes are
stored as those systems wrote them and verified at the next `check-password` or
`authenticate` (or by an application's own pwdlib `PasswordHash` that includes
`LegacyHasher`), which then stores a hash of the configured scheme instead.

- Django (`algorithm$...`): `pbkdf2_sha256`, `pbkdf2_sha1`, `bcrypt_sha256`, `md5` and
  `sha1` are verified by libpass (the maintained fork of passlib), `scrypt` by the standard
  library's hashlib.scrypt (libpass has no Django scrypt). Django's `argon2$...` and
  `bcrypt$...` are standard hashes behind a prefix: `normalize` removes it on import.
- Firebase's modified scrypt needs the project's hash parameters, so its stored form
  carries them: `$firebase-scrypt$r=<rounds>,m=<mem_cost>$<salt separator>$<signer key>
  $<salt>$<hash>` (base64, unpadded). It is scrypt (hashlib) keyed into AES-256-CTR
  (`cryptography`, the optional `firebase` extra). The PyPI package firebase-scrypt does the
  same with pycryptodome, but has had one release (2023) and cannot verify memory costs
  above 14 (no maxmem), so it is used in the tests only, as an independent implementation.
- A value starting with `!` (Django's unusable password, or an import row without a hash)
  is an account that cannot log in until `set-password`.

Every format is bounded like Argon2 and bcrypt in dbtool.users.passwords: a planted hash must not
cost more than a few seconds or 256 MiB to check.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from dbtool.errors import UsageError
from dbtool.formats import UNUSABLE
from dbtool.users.bounds import bcrypt_problem, outside

PBKDF2_ITERATIONS = (1, 10_000_000)  # Django 5.2's default is 1,000,000: 0.2 s here
SCRYPT_MEMORY_BYTES = 256 << 20  # 128 x n x r, per lane
SCRYPT_WORK_BYTES = 1 << 30  # 128 x n x r x p: lanes run one after another
SCRYPT_LANES = (1, 16)
FIREBASE_ROUNDS = (1, 16)
FIREBASE_MEM_COST = (1, 18)

# Django's unusable passwords are "!" followed by up to 40 random characters.
_UNUSABLE = re.compile(r"![A-Za-z0-9]{0,64}")


def is_unusable(value: str) -> bool:
    """True for a stored value that marks an account without a usable password."""
    return value.startswith(UNUSABLE)


def _b64decode(text: str) -> bytes | None:
    """Standard or URL-safe base64, padded or not; None when it is not base64."""
    text = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


# --- the schemes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scheme:
    """One foreign hash format: how to recognise, bound and verify it."""

    name: str  # for messages: "Django PBKDF2-SHA256"
    pattern: re.Pattern[str]
    problem: Callable[[re.Match[str]], str | None]
    verify: Callable[[str, str, re.Match[str]], bool]
    needs: str | None = None  # the module this build must have to verify it
    extra: str | None = None  # the dbtool extra that installs it

    def missing(self) -> str | None:
        """Why this build cannot verify the scheme, or None."""
        from importlib.util import find_spec

        if self.needs is None or find_spec(self.needs) is not None:
            return None
        install = f"install {self.needs}" + (
            f", dbtool's {self.extra!r} extra" if self.extra else ""
        )
        return f"is a {self.name} hash, which this installation cannot verify ({install})"


def _libpass(handler: str) -> Callable[[str, str, re.Match[str]], bool]:
    def verify(password: str, stored: str, _: re.Match[str]) -> bool:
        import passlib.hash  # type: ignore[import-untyped]  # libpass, loaded when needed

        try:
            return bool(getattr(passlib.hash, handler).verify(password, stored))
        except ValueError:  # e.g. a password bcrypt refuses: not a match
            return False

    return verify


def _pbkdf2_problem(match: re.Match[str]) -> str | None:
    iterations = int(match["iterations"])
    if outside(iterations, PBKDF2_ITERATIONS):
        low, high = PBKDF2_ITERATIONS
        return f"has {iterations:,} PBKDF2 iterations, outside {low:,}-{high:,}"
    return None


def _bcrypt_sha256_problem(match: re.Match[str]) -> str | None:
    return bcrypt_problem(match["bcrypt"])


def _scrypt_problem(match: re.Match[str]) -> str | None:
    n, r, p = int(match["n"]), int(match["r"]), int(match["p"])
    if n < 2 or n & (n - 1):
        return f"has scrypt work factor n={n}, which is not a power of two"
    if outside(p, SCRYPT_LANES):
        return f"has scrypt parallelism p={p}, outside {SCRYPT_LANES[0]}-{SCRYPT_LANES[1]}"
    if r < 1 or 128 * n * r > SCRYPT_MEMORY_BYTES:
        return f"needs more than {SCRYPT_MEMORY_BYTES >> 20} MiB to check (scrypt n={n}, r={r})"
    if 128 * n * r * p > SCRYPT_WORK_BYTES:
        return f"costs too much to check (scrypt n={n}, r={r}, p={p})"
    if _b64decode(match["hash"]) is None:
        return "has a scrypt digest that is not base64"
    return None


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    import hashlib

    maxmem = 128 * r * (n + p + 2) + (1 << 20)  # OpenSSL refuses anything over maxmem
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length)


def _verify_django_scrypt(password: str, stored: str, match: re.Match[str]) -> bool:
    expected = _b64decode(match["hash"]) or b""
    derived = _scrypt(
        password.encode("utf-8", "surrogatepass"),
        match["salt"].encode(),
        int(match["n"]),
        int(match["r"]),
        int(match["p"]),
        len(expected) or 64,
    )
    import hmac

    return hmac.compare_digest(derived, expected)


def _firebase_problem(match: re.Match[str]) -> str | None:
    rounds, mem_cost = int(match["r"]), int(match["m"])
    if outside(rounds, FIREBASE_ROUNDS):
        low, high = FIREBASE_ROUNDS
        return f"has Firebase scrypt rounds {rounds}, outside {low}-{high}"
    if outside(mem_cost, FIREBASE_MEM_COST) or (128 * rounds) << mem_cost > SCRYPT_MEMORY_BYTES:
        return (
            f"needs more than {SCRYPT_MEMORY_BYTES >> 20} MiB to check "
            f"(Firebase scrypt rounds {rounds}, mem_cost {mem_cost})"
        )
    parts = [_b64decode(match[name]) for name in ("separator", "signer", "salt", "hash")]
    if any(part is None for part in parts):
        return "has a Firebase scrypt part that is not base64"
    if len(parts[1] or b"") != len(parts[3] or b"") or not parts[3]:
        return "has a Firebase scrypt hash whose length does not match its signer key"
    return None


def _verify_firebase(password: str, stored: str, match: re.Match[str]) -> bool:
    import hmac

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    separator, signer, salt, expected = (
        _b64decode(match[name]) or b"" for name in ("separator", "signer", "salt", "hash")
    )
    derived = _scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt + separator,
        1 << int(match["m"]),
        int(match["r"]),
        1,
        64,
    )
    # Firebase's modification: the scrypt output keys AES-256-CTR (counter from zero), which
    # encrypts the project's signer key; that ciphertext is the stored hash.
    encryptor = Cipher(algorithms.AES(derived[:32]), modes.CTR(bytes(16))).encryptor()
    return hmac.compare_digest(encryptor.update(signer) + encryptor.finalize(), expected)


_B64 = r"[A-Za-z0-9+/]*={0,2}"
_BCRYPT = r"\$2[abxy]\$\d{2}\$[A-Za-z0-9./]{53}"


def _by_libpass(
    name: str,
    pattern: str,
    handler: str,
    problem: Callable[[re.Match[str]], str | None] = lambda _: None,
) -> Scheme:
    """A Django format that libpass verifies (`handler` in passlib.hash)."""
    return Scheme(name, re.compile(pattern), problem, _libpass(handler), needs="passlib")


_SALT = r"[^$]{1,128}"


@cache
def schemes() -> tuple[Scheme, ...]:
    """The formats, their patterns compiled on first use (not by every command)."""
    return _schemes()


def _schemes() -> tuple[Scheme, ...]:
    return (
        _by_libpass(
            "Django PBKDF2-SHA256",
            rf"pbkdf2_sha256\$(?P<iterations>\d{{1,9}})\${_SALT}\${_B64}",
            "django_pbkdf2_sha256",
            _pbkdf2_problem,
        ),
        _by_libpass(
            "Django PBKDF2-SHA1",
            rf"pbkdf2_sha1\$(?P<iterations>\d{{1,9}})\${_SALT}\${_B64}",
            "django_pbkdf2_sha1",
            _pbkdf2_problem,
        ),
        _by_libpass(
            "Django bcrypt-SHA256",
            rf"bcrypt_sha256\$(?P<bcrypt>{_BCRYPT})",
            "django_bcrypt_sha256",
            _bcrypt_sha256_problem,
        ),
        _by_libpass("Django salted MD5", rf"md5\${_SALT}\$[0-9a-f]{{32}}", "django_salted_md5"),
        _by_libpass("Django salted SHA1", rf"sha1\${_SALT}\$[0-9a-f]{{40}}", "django_salted_sha1"),
        Scheme(
            "Django scrypt",  # not in libpass: the standard library's scrypt
            re.compile(
                rf"scrypt\$(?P<n>\d{{1,9}})\$(?P<salt>{_SALT})\$(?P<r>\d{{1,4}})\$(?P<p>\d{{1,4}})"
                rf"\$(?P<hash>{_B64})"
            ),
            _scrypt_problem,
            _verify_django_scrypt,
        ),
        Scheme(
            "Firebase scrypt",
            re.compile(
                rf"\$firebase-scrypt\$r=(?P<r>\d{{1,4}}),m=(?P<m>\d{{1,4}})\$(?P<separator>{_B64})"
                rf"\$(?P<signer>{_B64})\$(?P<salt>{_B64})\$(?P<hash>{_B64})"
            ),
            _firebase_problem,
            _verify_firebase,
            needs="cryptography",
            extra="firebase",
        ),
    )


# Django's prefixes in front of hashes in the standard formats: removed on import.
_DJANGO_WRAPPED = re.compile(r"(?:argon2(?=\$argon2)|bcrypt\$(?=\$2[abxy]\$))")
# The prefixes of the formats above, to tell "a recognised format, but broken" apart.
_PREFIXES = ("pbkdf2_sha256$", "pbkdf2_sha1$", "bcrypt_sha256$", "scrypt$", "md5$", "sha1$")


def normalize(value: str) -> str:
    """The form a foreign hash is stored in: Django's `argon2$$argon2id$...` and
    `bcrypt$$2b$...` lose their prefix (they are then standard hashes, which an
    application's pwdlib verifies too); anything else is kept as it is."""
    if value.startswith("$"):  # a standard hash (the common case: no regex for it)
        return value
    return _DJANGO_WRAPPED.sub("", value, count=1) if _DJANGO_WRAPPED.match(value) else value


def identify(value: str) -> tuple[Scheme, re.Match[str]] | None:
    for scheme in schemes():
        if (match := scheme.pattern.fullmatch(value)) is not None:
            return scheme, match
    return None


def problem(value: str) -> str | None:
    """Why a value that is not an Argon2 or bcrypt hash cannot be stored and verified
    (unknown or broken format, parameters out of bounds, a scheme this build cannot check),
    or None. Unusable-password markers are fine."""
    if _UNUSABLE.fullmatch(value):
        return None
    found = identify(value)
    if found is None:
        if value.startswith(_PREFIXES) or value.startswith("$firebase-scrypt$"):
            return "is not a complete hash of its kind (it looks cut short or altered)"
        if value.startswith(UNUSABLE):
            return "is an unusable-password marker with unexpected characters after the !"
        return "is not a password hash dbtool knows"
    scheme, match = found
    return scheme.problem(match) or scheme.missing()


def describe(value: str) -> str | None:
    """The scheme's name for a foreign hash, None for anything else."""
    found = identify(value)
    return None if found is None else found[0].name


def verify(password: str, value: str) -> bool:
    """Whether `password` matches a foreign hash that `problem` accepted; False for an
    unusable password."""
    found = identify(value)
    if found is None:
        return False
    scheme, match = found
    return scheme.verify(password, value, match)


# --- Firebase's project parameters ------------------------------------------------------------


@dataclass(frozen=True)
class FirebaseHashConfig:
    """A Firebase project's password hash parameters (console: Authentication > Users > ⋮ >
    Password hash parameters). The signer key is a secret: never shown."""

    signer_key: bytes
    salt_separator: bytes
    rounds: int
    mem_cost: int

    def stored_hash(self, password_hash: str, salt: str) -> str:
        """The stored form of one exported user's passwordHash and salt (ValueError with a
        reason when they cannot be)."""
        digest, user_salt = _b64decode(password_hash), _b64decode(salt)
        if digest is None or not digest:
            raise ValueError("passwordHash is not base64")
        if user_salt is None:
            raise ValueError("salt is not base64")
        if len(digest) != len(self.signer_key):
            raise ValueError(
                "passwordHash does not fit the project's signer key (is the hash config "
                "from this project?)"
            )
        parts = (self.salt_separator, self.signer_key, user_salt, digest)
        encoded = "$".join(_b64encode(part) for part in parts)
        return f"$firebase-scrypt$r={self.rounds},m={self.mem_cost}${encoded}"


_CONFIG_KEYS = {
    "algorithm": "algorithm",
    "hashalgo": "algorithm",
    "signerkey": "signer_key",
    "hashkey": "signer_key",
    "key": "signer_key",
    "saltseparator": "salt_separator",
    "rounds": "rounds",
    "memcost": "mem_cost",
    "memorycost": "mem_cost",
}


def _config_key(name: str) -> str | None:
    folded = re.sub(r"[^a-z0-9]", "", name.lower()).removeprefix("base64")
    return _CONFIG_KEYS.get(folded)


def parse_firebase_config(text: str, name: str) -> FirebaseHashConfig:
    """The parameters from the console's `hash_config { ... }` block, or from JSON with the
    same keys (or firebase-tools' names: hashKey, saltSeparator, rounds, memCost). Errors
    are UsageErrors that never quote the signer key."""
    import json

    values: dict[str, Any] = {}
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            document = json.loads(stripped)
        except ValueError:
            raise UsageError(f"{name} is not valid JSON") from None
        if isinstance(document, dict) and isinstance(document.get("hash_config"), dict):
            document = document["hash_config"]
        if not isinstance(document, dict):
            raise UsageError(f"{name} is not a JSON object of hash parameters")
        pairs = list(document.items())
    else:
        pairs = re.findall(r"([A-Za-z_][A-Za-z0-9_-]*)\s*[:=]\s*\"?([^,\s\"}]+)\"?", text)
    for key, value in pairs:
        known = _config_key(str(key))
        if known is not None:
            values[known] = str(value).strip()
    algorithm = values.get("algorithm", "SCRYPT").upper()
    if algorithm != "SCRYPT":
        raise UsageError(
            f"{name}: the algorithm is {algorithm}; only Firebase's SCRYPT (its default) "
            "is supported"
        )
    missing = [
        key for key in ("signer_key", "salt_separator", "rounds", "mem_cost") if key not in values
    ]
    if missing:
        raise UsageError(
            f"{name} has no {', '.join(missing)} (expected the console's hash_config block: "
            "base64_signer_key, base64_salt_separator, rounds, mem_cost)"
        )
    signer, separator = _b64decode(values["signer_key"]), _b64decode(values["salt_separator"])
    if not signer:
        raise UsageError(f"{name}: base64_signer_key is not base64")
    if separator is None:
        raise UsageError(f"{name}: base64_salt_separator is not base64")
    numbers: dict[str, int] = {}
    for key, bounds in (("rounds", FIREBASE_ROUNDS), ("mem_cost", FIREBASE_MEM_COST)):
        if not values[key].isdigit() or outside(int(values[key]), bounds):
            raise UsageError(
                f"{name}: {key} must be a whole number from {bounds[0]} to {bounds[1]}"
            )
        numbers[key] = int(values[key])
    if (128 * numbers["rounds"]) << numbers["mem_cost"] > SCRYPT_MEMORY_BYTES:
        raise UsageError(f"{name}: rounds and mem_cost need more than 256 MiB per check")
    return FirebaseHashConfig(signer, separator, numbers["rounds"], numbers["mem_cost"])
