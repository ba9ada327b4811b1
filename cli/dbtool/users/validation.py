"""Validation and normalisation of emails and usernames, shared by every way users arrive."""

from __future__ import annotations

import re
import unicodedata

from dbtool.errors import InvalidInputError
from dbtool.formats import excerpt
from dbtool.models.builtin import USERNAME_MAX_LENGTH

USERNAME_MIN_LENGTH = 1
EMAIL_MAX_LENGTH = 254  # what email-validator accepts, and so plain_email_pattern
# Django's rule (UnicodeUsernameValidator, max_length 150): the usernames people bring along.
USERNAME_RULE = f"1-{USERNAME_MAX_LENGTH} characters of letters, digits and @ . + - _"


# The common case, checked by one regular expression instead of email-validator's ~36 µs: a
# plain ASCII dot-atom local part of at most 64 characters, and an ASCII host name of at
# most 253 with an alphabetic top-level label that is not a special-use name (test, local,
# ...); 254 characters in all. Labels with "--" in the third and fourth places (IDNA
# "xn--" forms) take the full path. Every address this accepts, email-validator accepts too
# and normalises to the same form (tests/test_validation.py checks that property); anything
# else goes to email-validator.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"(?![A-Za-z0-9-]{2}--)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_fast_pattern: re.Pattern[str] | None = None
_mailbox_names: frozenset[str] = frozenset()  # local parts email-validator lower-cases


def plain_email_pattern(stop: str | None = None, *, lower_only: bool = False) -> str:
    """The regular expression of the common case above. `stop`: the character that ends
    the address inside a longer text (a CSV field's separator), else the end of the text.
    `lower_only`: addresses without capitals, which the built-in model stores exactly as
    written."""
    from email_validator import SPECIAL_USE_DOMAIN_NAMES

    atext, label = _ATEXT, _LABEL
    if lower_only:
        atext, label = atext.replace("A-Z", ""), label.replace("A-Z", "")
    special = "|".join(re.escape(name) for name in SPECIAL_USE_DOMAIN_NAMES)
    letters = "[a-z]" if lower_only else "[A-Za-z]"
    # "Anything up to the stop" as a negated single character: the regex engine's fast loop.
    rest, end = (".", r"\Z") if stop is None else (f"[^{stop}]", f"(?=[{stop}])")
    return (
        rf"(?=[^@]{{1,64}}@)(?={rest}{{1,{EMAIL_MAX_LENGTH}}}{end})"
        rf"{atext}+(?:\.{atext}+)*@"
        rf"(?={rest}{{1,253}}{end})(?:{label}\.)+(?!(?i:{special}){end}){letters}{{2,63}}{end}"
    )


def _fast_email(candidate: str, *, lower_case: bool = True) -> str | None:
    """The normalised email if `candidate` is plainly valid, else None ("ask the validator")."""
    global _fast_pattern, _mailbox_names
    if _fast_pattern is None:
        try:  # email-validator >= 2.2 lower-cases postmaster, abuse, noc, ... (RFC 2142)
            from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
        except ImportError:  # pragma: no cover - older email-validator keeps them as typed
            CASE_INSENSITIVE_MAILBOX_NAMES = []
        _mailbox_names = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
        _fast_pattern = re.compile(plain_email_pattern())
    if _fast_pattern.fullmatch(candidate) is None:
        return None
    if lower_case:
        return candidate.lower()
    local, _, domain = candidate.rpartition("@")
    if local.lower() in _mailbox_names:
        return None
    return f"{local}@{domain.lower()}"


def normalize_email(raw: str, *, lower_case: bool = True) -> str:
    """The email as stored: validated (syntax only, no DNS) and normalised as
    email-validator (and so pydantic's EmailStr, which fastapi-users and SQLModel apps use)
    normalises it: the domain lower case, the local part as typed (Unicode NFC), or all of
    it lower case with `lower_case` (the built-in model's rule). Either way, dbtool matches
    emails without regard to case (see dbtool.users.service)."""
    fast = _fast_email(raw.strip(), lower_case=lower_case)
    return fast if fast is not None else normalize_email_strictly(raw, lower_case=lower_case)


def normalize_email_strictly(raw: str, *, lower_case: bool = True) -> str:
    """normalize_email without the fast path: email-validator decides everything."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validated = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInputError(
            f"invalid email address {excerpt(raw.strip())}: {exc}",
            without_value=f"invalid email address: {exc}",
        ) from None
    return validated.normalized.lower() if lower_case else validated.normalized


# Letters and digits of any script (\w is str.isalnum() plus "_"), and @ . + - _.
_USERNAME = re.compile(rf"[\w.@+\-]{{{USERNAME_MIN_LENGTH},{USERNAME_MAX_LENGTH}}}")
_NOT_USERNAME_CHARS = re.compile(r"[^\w.@+\-]+")


def normalize_username(raw: str) -> str:
    """The username as stored (Unicode NFC), or InvalidInputError naming the rule."""
    username = raw.strip()
    if not username.isascii():  # NFC changes nothing in ASCII
        username = unicodedata.normalize("NFC", username)
    if _USERNAME.fullmatch(username) is None:
        raise InvalidInputError(
            f"invalid username {excerpt(raw)}: use {USERNAME_RULE}",
            without_value=f"invalid username: use {USERNAME_RULE}",
        )
    return username


def username_from_email(email: str) -> str:
    """The default username: the email's local part, any other character (a quoted local
    part's space, say) replaced by "_". Every valid email gives a valid username."""
    local = unicodedata.normalize("NFC", email.rpartition("@")[0])
    replaced = _NOT_USERNAME_CHARS.sub("_", local)
    candidate = (replaced.strip("_") or replaced)[:USERNAME_MAX_LENGTH]
    if not _USERNAME.fullmatch(candidate):
        raise InvalidInputError(
            f"cannot derive a username from {excerpt(email)} ({USERNAME_RULE}); give one "
            "with --username",
            without_value=f"cannot derive a username from the email ({USERNAME_RULE})",
        )
    return candidate
