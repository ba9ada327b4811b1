"""Validation and normalisation of emails and usernames, shared by every way users arrive."""

from __future__ import annotations

import re
import unicodedata

from cli.errors import InvalidInputError
from cli.models import USERNAME_MAX_LENGTH

USERNAME_MIN_LENGTH = 3
USERNAME_RULE = (
    f"{USERNAME_MIN_LENGTH}-{USERNAME_MAX_LENGTH} characters of letters, digits, '.', '_', '-'"
)


def normalize_email(raw: str) -> str:
    """The email as stored: validated (syntax only, no DNS), normalised, lower case."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validated = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInputError(f"invalid email address {raw!r}: {exc}") from None
    return validated.normalized.lower()


def _username_char_ok(char: str) -> bool:
    return char.isalnum() or char in "._-"


def normalize_username(raw: str) -> str:
    """The username as stored (Unicode NFC), or InvalidInputError naming the rule."""
    username = unicodedata.normalize("NFC", raw.strip())
    if not (
        USERNAME_MIN_LENGTH <= len(username) <= USERNAME_MAX_LENGTH
        and all(_username_char_ok(char) for char in username)
    ):
        raise InvalidInputError(f"invalid username {raw!r}: use {USERNAME_RULE}")
    return username


def username_from_email(email: str) -> str:
    """The default username: the email's local part, with disallowed characters replaced."""
    local = unicodedata.normalize("NFC", email.rpartition("@")[0])
    candidate = "".join(char if _username_char_ok(char) else "_" for char in local)
    candidate = re.sub(r"_+", "_", candidate).strip("_")[:USERNAME_MAX_LENGTH]
    if len(candidate) < USERNAME_MIN_LENGTH:
        raise InvalidInputError(
            f"cannot derive a username from {email!r} ({USERNAME_RULE}); pass --username"
        )
    return candidate
