"""The user service: every operation on the users table, with a session passed in.

Usable from applications as well as from the CLI:

    async with db.session() as session:
        user = await add_user(session, email="ada@example.com", password=secret)

Functions raise DbtoolError subclasses (ConflictError, NotFoundError, InvalidInputError);
they never print, prompt or exit. Hashing runs in a worker thread so an application's event
loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cli import passwords
from cli.errors import ConflictError, NotFoundError, UsageError
from cli.models import PUBLIC_USER_FIELDS, User
from cli.validation import normalize_email, normalize_username, username_from_email

# Which unique constraint a violation came from: PostgreSQL names it, SQLite names the column.
_UNIQUE_FIELDS = {
    "uq_users_email": "email",
    "uq_users_username": "username",
    "users.email": "email",
    "users.username": "username",
}


@dataclass(frozen=True)
class UserFilter:
    """The selection shared by `users list` and `users export`."""

    active: bool | None = None
    superuser: bool | None = None
    search: str | None = None


def public_fields(user: User) -> dict[str, Any]:
    """The user as shown anywhere: never the hash."""
    return {name: getattr(user, name) for name in PUBLIC_USER_FIELDS}


def conflicting_field(exc: IntegrityError) -> str | None:
    """ "email" or "username" when `exc` is a unique violation on that column, else None."""
    cause = exc.driver_exception
    name = getattr(cause, "constraint_name", None)
    if name in _UNIQUE_FIELDS:
        return _UNIQUE_FIELDS[name]
    message = str(cause)
    if getattr(cause, "sqlite_errorname", "") == "SQLITE_CONSTRAINT_UNIQUE":
        for key, field in _UNIQUE_FIELDS.items():
            if message.endswith(key):
                return field
    return None


async def _conflict(
    session: AsyncSession, exc: IntegrityError, values: dict[str, Any]
) -> ConflictError:
    """Name the taken value. When both email and username are taken, the constraint that
    fired first differs by backend, so the email (the user's identity) is reported first."""
    field = conflicting_field(exc)
    if field is None:
        raise exc
    if field != "email" and "email" in values:
        taken = await session.scalar(select(User.id).where(User.email == values["email"]))
        field = "email" if taken is not None else field
    return ConflictError(f"a user with {field} {values[field]!r} already exists")


async def _hash(password: str) -> str:
    return await asyncio.to_thread(passwords.hash_password, password)


async def add_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    username: str | None = None,
    is_superuser: bool = False,
    is_active: bool = True,
    min_password_length: int = passwords.DEFAULT_MIN_LENGTH,
) -> User:
    """Validate, hash and insert a user. A duplicate email or username is a ConflictError,
    detected by the unique constraints at insert time (no check-then-insert race)."""
    email = normalize_email(email)
    username = normalize_username(username) if username else username_from_email(email)
    passwords.check_policy(password, min_length=min_password_length, email=email, username=username)
    user = User(
        email=email,
        username=username,
        hashed_password=await _hash(password),
        is_superuser=is_superuser,
        is_active=is_active,
    )
    try:
        async with session.begin_nested():  # a savepoint: a conflict leaves the session usable
            session.add(user)
    except IntegrityError as exc:
        raise await _conflict(session, exc, {"email": email, "username": username}) from None
    return user


def _ident_condition(ident: str) -> Any:
    ident = ident.strip()
    if "@" in ident:
        return User.email == ident.lower()
    try:
        return or_(User.id == uuid.UUID(ident), User.username == ident)
    except ValueError:
        return User.username == ident


async def find_user(session: AsyncSession, ident: str) -> User | None:
    """The user whose email, username or id is `ident` (an id match wins)."""
    users = (await session.scalars(select(User).where(_ident_condition(ident)))).all()
    if len(users) > 1:  # a username that happens to look like another user's id
        users = [user for user in users if str(user.id) == ident.strip().lower()]
    return users[0] if users else None


async def get_user(session: AsyncSession, ident: str) -> User:
    user = await find_user(session, ident)
    if user is None:
        raise NotFoundError(f"no user matches {ident!r} (by email, username or id)")
    return user


def filtered(query: Select[User], selection: UserFilter) -> Select[User]:
    if selection.active is not None:
        query = query.where(User.is_active.is_(selection.active))
    if selection.superuser is not None:
        query = query.where(User.is_superuser.is_(selection.superuser))
    if selection.search:
        text = selection.search
        query = query.where(
            or_(
                User.email.icontains(text, autoescape=True),
                User.username.icontains(text, autoescape=True),
            )
        )
    return query.order_by(User.created_at, User.id)


async def list_users(
    session: AsyncSession,
    selection: UserFilter = UserFilter(),
    *,
    limit: int | None = 50,
    offset: int = 0,
) -> list[User]:
    query = filtered(select(User), selection).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list((await session.scalars(query)).all())


async def set_password(
    session: AsyncSession,
    ident: str,
    password: str,
    *,
    min_password_length: int = passwords.DEFAULT_MIN_LENGTH,
) -> User:
    user = await get_user(session, ident)
    passwords.check_policy(
        password, min_length=min_password_length, email=user.email, username=user.username
    )
    user.hashed_password = await _hash(password)
    await session.flush()
    return user


async def check_password(session: AsyncSession, ident: str, password: str) -> tuple[User, bool]:
    """(user, matches). A match against an outdated hash (bcrypt) stores an Argon2 one."""
    user = await get_user(session, ident)
    matches, new_hash = await asyncio.to_thread(
        passwords.verify_password, password, user.hashed_password
    )
    if matches and new_hash is not None:
        user.hashed_password = new_hash
        await session.flush()
    return user, matches


async def update_user(
    session: AsyncSession,
    ident: str,
    *,
    email: str | None = None,
    username: str | None = None,
    is_active: bool | None = None,
    is_superuser: bool | None = None,
) -> tuple[User, bool]:
    """Apply the given changes; (user, whether anything changed). Conflicts as in add_user."""
    changes: dict[str, Any] = {}
    if email is not None:
        changes["email"] = normalize_email(email)
    if username is not None:
        changes["username"] = normalize_username(username)
    if is_active is not None:
        changes["is_active"] = is_active
    if is_superuser is not None:
        changes["is_superuser"] = is_superuser
    if not changes:
        raise UsageError("nothing to update: give at least one of the options")
    user = await get_user(session, ident)
    changes = {key: value for key, value in changes.items() if getattr(user, key) != value}
    if not changes:
        return user, False
    try:
        async with session.begin_nested():
            for key, value in changes.items():
                setattr(user, key, value)
    except IntegrityError as exc:
        raise await _conflict(session, exc, changes) from None
    # onupdate set updated_at in the database round trip; read it back for the caller.
    await session.refresh(user)
    return user, True


async def delete_user(session: AsyncSession, ident: str) -> User:
    user = await get_user(session, ident)
    await session.delete(user)
    await session.flush()
    return user
