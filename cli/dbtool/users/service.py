"""The user service: every operation on the users table, with a session passed in.

Usable from applications as well as from the CLI:

    async with db.session() as session:
        user = await add_user(session, email="ada@example.com", password=secret)

The table is the configured user model (DBTOOL_MODELS / DBTOOL_USER_MODEL, or the built-in
`users`); a session made by `Database.session()` carries its settings and models, and
`model=` names another one explicitly (`dbtool.models.user_model.user_model_for(MyUser)`).
Statements are SQLAlchemy Core on the model's table, so any mapped class works, whatever its
constructor, and users come back as `UserRecord`s.

Functions raise DbtoolError subclasses (ConflictError, NotFoundError, InvalidInputError);
they never print, prompt or exit. Hashing runs in a worker thread so an application's event
loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, delete, func, insert, literal, or_, select, true, tuple_, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dbtool.backends import backend_for
from dbtool.backends.errors import unique_violation_columns
from dbtool.config import Settings
from dbtool.errors import ConflictError, InvalidInputError, NotFoundError, UsageError
from dbtool.formats import UNUSABLE
from dbtool.models.user_model import FLAG_DEFAULTS, UserModel, check_length, convert, load_models
from dbtool.users.validation import normalize_email, normalize_username, username_from_email


@dataclass(frozen=True)
class UserRecord(Mapping[str, Any]):
    """One user as read from the table: its columns by name, with the roles as properties.

    A Mapping of the columns that were selected (the hash only where it was needed); the
    `repr` never shows the hash.
    """

    model: UserModel
    data: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def _role(self, role: str, default: Any = None) -> Any:
        column = self.model.role(role)
        return default if column is None else self.data.get(column.name, default)

    @property
    def id(self) -> Any:
        return self.data[self.model.id.name]

    @property
    def email(self) -> str:
        return str(self.data[self.model.email.name])

    @property
    def username(self) -> str | None:
        value = self._role("username")
        return None if value is None else str(value)

    @property
    def is_active(self) -> bool:
        """True for models without an active column: nothing marks such users inactive."""
        return bool(self._role("active", True))

    @property
    def is_superuser(self) -> bool:
        return bool(self._role("superuser", False))

    @property
    def is_verified(self) -> bool | None:
        value = self._role("verified")
        return None if value is None else bool(value)

    @property
    def hashed_password(self) -> str | None:
        value = self.data.get(self.model.password.name)
        return None if value is None else str(value)

    def public(self) -> dict[str, Any]:
        """The user as shown anywhere: every selected column but the hash."""
        return {name: self.data[name] for name in self.model.public_names if name in self.data}

    def __repr__(self) -> str:
        return f"UserRecord({self.model.name}, id={self.id!s}, email={self.email!r})"


@dataclass(frozen=True)
class UserFilter:
    """The selection shared by `users list` and `users export`."""

    active: bool | None = None
    superuser: bool | None = None
    search: str | None = None
    usable_password: bool | None = None  # False: accounts that cannot log in (imported so)


def _resolve(session: AsyncSession, model: UserModel | None) -> tuple[UserModel, Settings]:
    """The model and settings in use: those of the Database that made the session (see
    `Database.session`), else the built-in model and default settings."""
    from dbtool.db import database_of

    db = database_of(session)
    settings = db.settings if db is not None else Settings()
    if model is None:
        model = db.user_model if db is not None else load_models().user
    return model, settings


def _now() -> datetime:
    return datetime.now(UTC)


# --- reading ----------------------------------------------------------------------------------


def _record(model: UserModel, row: Any) -> UserRecord:
    return UserRecord(model, model.as_read(dict(row._mapping)))


def _columns(model: UserModel, *, with_hash: bool) -> list[Any]:
    return list(model.table.columns) if with_hash else model.public_columns


def stored_email(model: UserModel, raw: str) -> str:
    """`raw` validated and normalised as `model` stores emails: all lower case for the
    built-in model, else as the application's own code (pydantic's EmailStr) stores them,
    the domain lower case and the local part as typed."""
    return normalize_email(raw, lower_case=model.lowercase_emails)


def email_matches(model: UserModel, email: str) -> Any:
    """Rows whose email is `email` in any letter case, compared as fastapi-users'
    `get_by_email` compares (the database's lower() on both sides, so that both sides fold
    case alike whatever the column's collation). The built-in model stores emails lower
    case, so there an exact comparison says the same and its index serves it."""
    email = email.strip()
    if model.lowercase_emails:
        return model.email == email.lower()
    return func.lower(model.email) == func.lower(literal(email, type_=model.email.type))


def ident_condition(model: UserModel, ident: str) -> Any:
    """Rows whose id, email (as given: see `find_user` for other letter cases) or username
    is `ident`. Usernames are matched exactly, as Django's login matches them."""
    ident = ident.strip()
    conditions = []
    if "@" in ident:
        conditions.append(model.email == (ident.lower() if model.lowercase_emails else ident))
    if model.username is not None:
        conditions.append(model.username == ident)
    id_value = model.parse_id(ident)
    if id_value is not None:
        conditions.append(model.id == id_value)
    return or_(*conditions) if conditions else ~true()


def _best_match(model: UserModel, ident: str, rows: list[Any]) -> Any | None:
    """Of the rows matching `ident` exactly, the one matched by id, else email, else username."""
    ident = ident.strip()
    id_value = model.parse_id(ident)
    email = ident.lower() if model.lowercase_emails else ident
    for role, wanted in ((model.id, id_value), (model.email, email)):
        for row in rows:
            if wanted is not None and row._mapping[role.name] == wanted:
                return row
    return rows[0] if rows else None


# How many stored spellings an ambiguity error lists.
_SPELLINGS_LISTED = 5


def _ambiguous(model: UserModel, email: str, spellings: list[str]) -> ConflictError:
    listed = ", ".join(repr(s) for s in spellings[:_SPELLINGS_LISTED])
    more = "" if len(spellings) <= _SPELLINGS_LISTED else ", ..."
    return ConflictError(
        f"several users of {model.name} have the email {email.strip()!r} in different letter "
        f"case ({listed}{more}): give the exact stored spelling or the id"
    )


def _storable(text: str) -> bool:
    """Whether `text` is something a database can hold and compare (PostgreSQL refuses a
    NUL character in text; invalid UTF-8, kept by Python as surrogates, cannot be sent)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def find_user(
    session: AsyncSession,
    ident: str,
    *,
    model: UserModel | None = None,
    with_hash: bool = False,
) -> UserRecord | None:
    """The user whose id, email or username is `ident` (an id match wins, then the email);
    None for an `ident` no user can have (a NUL character, text that is not valid UTF-8),
    which is never sent to the database: its driver would raise instead of not finding.

    An email matches in any letter case. The exact stored spelling wins; when several
    users hold the email in other spellings only (rows an application wrote under a
    case-sensitive unique index), it is a ConflictError listing them, never a guess."""
    model, _ = _resolve(session, model)
    if not _storable(ident):
        return None
    columns = _columns(model, with_hash=with_hash)
    rows = list(await session.execute(select(*columns).where(ident_condition(model, ident))))
    if not rows and "@" in ident and not model.lowercase_emails:
        # The exact comparison above is the one an index serves; this one reads the table
        # (as fastapi-users' login does), so it runs only when the exact spelling is not there.
        found = await session.execute(
            select(*columns)
            .where(email_matches(model, ident))
            .order_by(model.email)
            .limit(_SPELLINGS_LISTED + 1)
        )
        rows = list(found)
        if len(rows) > 1:
            raise _ambiguous(model, ident, [row._mapping[model.email.name] for row in rows])
    match = _best_match(model, ident, rows)
    return None if match is None else _record(model, match)


async def get_user(
    session: AsyncSession, ident: str, *, model: UserModel | None = None, with_hash: bool = False
) -> UserRecord:
    user = await find_user(session, ident, model=model, with_hash=with_hash)
    if user is None:
        model, _ = _resolve(session, model)
        how = "email, username or id" if model.username is not None else "email or id"
        raise NotFoundError(f"no user matches {ident!r} (by {how})")
    return user


def filtered(query: Select[Any], selection: UserFilter, model: UserModel) -> Select[Any]:
    """`query` narrowed to `selection`, in the order users are listed."""
    if selection.active is not None:
        column = model.requires("active", "--active/--inactive")
        query = query.where(column.is_(selection.active))
    if selection.superuser is not None:
        query = query.where(model.requires("superuser", "--superuser").is_(selection.superuser))
    if selection.search:
        text = selection.search
        matches = [model.email.icontains(text, autoescape=True)]
        if model.username is not None:
            matches.append(model.username.icontains(text, autoescape=True))
        query = query.where(or_(*matches))
    if selection.usable_password is not None:
        hashed = model.password
        unusable = or_(hashed.is_(None), hashed == "", hashed.startswith(UNUSABLE))
        query = query.where(~unusable if selection.usable_password else unusable)
    return query.order_by(*list_order(model))


def list_order(model: UserModel) -> list[Any]:
    """The order users are listed and exported in: oldest first where an index of the user
    table leads with its (NOT NULL) creation time, as the built-in model's does; otherwise
    by primary key. Either way an index serves it, so a page costs the same whatever the
    table's size, and the id breaks ties so that keyset pages (`after_condition`) are exact."""
    created = model.created
    indexed = {next(iter(index.columns), None) for index in model.table.indexes}
    if created is not None and not created.nullable and created in indexed:
        return [created, model.id]
    return [model.id]


def after_condition(model: UserModel, key: tuple[Any, ...]) -> Any:
    """Users after the one whose list-order values are `key` (see `list_key`): a keyset
    page, which an index serves without reading the users before it (unlike OFFSET)."""
    order = list_order(model)
    values = [literal(value, type_=column.type) for column, value in zip(order, key, strict=True)]
    return tuple_(*order) > tuple_(*values)


async def list_key(
    session: AsyncSession, ident: str, *, model: UserModel | None = None
) -> tuple[Any, ...]:
    """The list-order values of the user `ident` names (email, username or id)."""
    model, _ = _resolve(session, model)
    user = await get_user(session, ident, model=model)
    return tuple(user.data[column.name] for column in list_order(model))


async def list_users(
    session: AsyncSession,
    selection: UserFilter = UserFilter(),
    *,
    limit: int | None = 50,
    offset: int = 0,
    after: str | None = None,
    model: UserModel | None = None,
) -> list[UserRecord]:
    """A page of users in list order: `offset` skips that many; `after` (an email, username
    or id) starts after that user, without reading the users before it."""
    model, _ = _resolve(session, model)
    query = filtered(select(*model.public_columns), selection, model).offset(offset)
    if after is not None:
        query = query.where(after_condition(model, await list_key(session, after, model=model)))
    if limit is not None:
        query = query.limit(limit)
    return [_record(model, row) for row in await session.execute(query)]


async def stream_users(
    session: AsyncSession,
    selection: UserFilter = UserFilter(),
    *,
    model: UserModel | None = None,
    with_hash: bool = False,
    chunk: int = 1000,
) -> AsyncGenerator[UserRecord, None]:
    """Every selected user in list order, fetched `chunk` rows at a time (memory stays
    flat, whatever the table's size)."""
    model, _ = _resolve(session, model)
    query = filtered(select(*_columns(model, with_hash=with_hash)), selection, model)
    result = await session.stream(query.execution_options(yield_per=chunk))
    async for row in result:
        yield _record(model, row)


async def count_users(
    session: AsyncSession, selection: UserFilter = UserFilter(), *, model: UserModel | None = None
) -> int:
    model, _ = _resolve(session, model)
    query = filtered(select(model.id), selection, model).order_by(None)
    return int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)


# Above this many matching users, `users list` says "more than ..." rather than counting
# every one (on a large table with a filter; without one, the planner's estimate serves).
COUNT_BOUND = 10_000


@dataclass(frozen=True)
class Total:
    """How many users a selection has: `exact`, the planner's `estimate` (a large table,
    no filter), or `at_least` (a filter on a large table: counted up to a bound)."""

    count: int
    kind: str = "exact"

    def describe(self) -> str:
        if self.kind == "estimate":
            return f"about {self.count:,}"
        if self.kind == "at_least":
            return f"more than {self.count - 1:,}"
        return f"{self.count:,}"


async def total_users(
    session: AsyncSession,
    selection: UserFilter = UserFilter(),
    *,
    model: UserModel | None = None,
    exact: bool = False,
) -> Total:
    """How many users `selection` has, at a cost that does not grow with the table: exact
    below ESTIMATE_FROM rows (by the planner's statistics) or when `exact`; above, the
    planner's estimate without a filter, else a count that stops past COUNT_BOUND."""
    from dbtool.backends import backend_for
    from dbtool.schema.tables import ESTIMATE_FROM

    model, _ = _resolve(session, model)
    if not exact:
        conn = await session.connection()
        quoted = conn.dialect.identifier_preparer.format_table(model.table)
        guess = await backend_for(conn.dialect.name).estimated_rows(conn, quoted)
        if guess is not None and guess >= ESTIMATE_FROM:
            if selection == UserFilter():
                return Total(int(guess), "estimate")
            query = filtered(select(model.id), selection, model).order_by(None)
            bounded = select(func.count()).select_from(query.limit(COUNT_BOUND + 1).subquery())
            found = int(await session.scalar(bounded) or 0)
            return Total(found, "at_least" if found > COUNT_BOUND else "exact")
    return Total(await count_users(session, selection, model=model))


# --- writing ----------------------------------------------------------------------------------


def convert_values(model: UserModel, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Values for other columns (`--set NAME=VALUE`), converted through each column's type."""
    converted: dict[str, Any] = {}
    for name, raw in (values or {}).items():
        column = model.column(name)
        if column is model.password:
            raise InvalidInputError(
                f"{name} is the password hash: set the password with the password options"
            )
        converted[column.name] = convert(column, raw)
    return converted


def missing_required(model: UserModel, given: Mapping[str, Any]) -> list[str]:
    """Required columns dbtool cannot fill that `given` leaves empty."""
    return [column.name for column in model.required if given.get(column.name) is None]


async def _conflict(
    session: AsyncSession, model: UserModel, exc: IntegrityError, values: Mapping[str, Any]
) -> ConflictError:
    """Name the taken value. When both email and username are taken, the constraint that
    fired first differs by backend, so the email (the user's identity) is reported first."""
    columns = unique_violation_columns(exc, backend_for(session.get_bind().dialect.name))
    if columns is None:
        raise exc
    columns = key_columns(model.table, columns)
    name = next((c for c in columns if c in values), columns[0] if columns else None)
    email = model.email.name
    if name != email and email in values:
        taken = await session.scalar(select(model.id).where(model.email == values[email]))
        name = email if taken is not None else name
    if name is None or name not in values:
        return ConflictError("a user with these values already exists")
    return ConflictError(f"a user with {name} {values[name]!r} already exists")


def key_columns(table: Any, names: list[str]) -> list[str]:
    """`names` as columns: a database that names the violated key rather than its columns
    (MySQL) gives a constraint's or an index's name, which the table knows."""
    keys = {
        key.name: [column.name for column in key.columns]
        for key in (*table.constraints, *table.indexes)
        if isinstance(key.name, str)
    }
    return [column for name in names for column in keys.get(name, [name])]


async def _refuse_case_variant(
    session: AsyncSession, model: UserModel, email: str, *, other_than: Any = None
) -> None:
    """ConflictError naming the stored spelling when another user has `email` in some
    letter case: an application's unique index may compare case, its login does not (two
    such rows lock both people out of fastapi-users). An exact duplicate is left to the
    unique index, which also catches concurrent inserts."""
    if model.lowercase_emails:
        return  # every spelling is stored lower case: the unique index sees the variants
    query = select(model.email).where(email_matches(model, email))
    if other_than is not None:
        query = query.where(model.id != other_than)
    # The spellings compared here, not in SQL: a column whose collation ignores case
    # (MySQL's default) finds the variant equal to the email given.
    found = await session.scalars(query.limit(_SPELLINGS_LISTED + 1))
    taken = next((stored for stored in found if stored != email), None)
    if taken is not None:
        raise ConflictError(
            f"a user with email {taken!r} already exists (emails are compared without "
            "regard to letter case)"
        )


async def _hash(password: str, settings: Settings) -> str:
    from dbtool.users import passwords

    return await asyncio.to_thread(passwords.hash_password, password, settings.password_hash)


def _policy(
    password: str,
    settings: Settings,
    min_length: int | None,
    **identity: str | None,
) -> None:
    from dbtool.users import passwords

    passwords.check_policy(
        password,
        min_length=settings.password_min_length if min_length is None else min_length,
        scheme=settings.password_hash,
        **identity,
    )


def _flag_values(model: UserModel, **flags: bool | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for role, wanted in flags.items():
        column = model.role(role)
        if column is None:
            if wanted:  # asking for something the model cannot store
                raise InvalidInputError(
                    f"the user model {model.name} has no {role} column, so it cannot be set"
                )
            continue
        if wanted is not None:
            values[column.name] = wanted
    return values


async def add_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    username: str | None = None,
    is_superuser: bool = False,
    is_active: bool = True,
    is_verified: bool | None = None,
    values: Mapping[str, Any] | None = None,
    min_password_length: int | None = None,
    model: UserModel | None = None,
) -> UserRecord:
    """Validate, hash and insert a user. A duplicate email or username is a ConflictError,
    detected by the unique constraints at insert time (no check-then-insert race).

    `values` fills other columns by name (converted through their types); required columns
    the model has and dbtool does not know must be among them.
    """
    model, settings = _resolve(session, model)
    email = stored_email(model, email)
    check_length(model.email, email)
    await _refuse_case_variant(session, model, email)
    row: dict[str, Any] = {model.email.name: email}
    if model.username is not None:
        name = normalize_username(username) if username else username_from_email(email)
        check_length(model.username, name)
        row[model.username.name] = name
    elif username:
        raise InvalidInputError(f"the user model {model.name} has no username column")
    row |= _flag_values(
        model,
        active=is_active if model.active is not None or not is_active else None,
        superuser=is_superuser if model.superuser is not None or is_superuser else None,
        verified=is_verified,
    )
    for role, default in FLAG_DEFAULTS.items():
        column = model.role(role)
        if column is not None and column.default is None and column.name not in row:
            row[column.name] = default
    now = _now()
    for column in (model.created, model.updated):
        if column is not None and column.default is None and column.server_default is None:
            row[column.name] = now
    if model.generate_id:
        row[model.id.name] = uuid.uuid4()
    for column in model.generated:
        row[column.name] = uuid.uuid4()
    row |= convert_values(model, values)
    missing = missing_required(model, row)
    if missing:
        raise InvalidInputError(
            f"the user model {model.name} requires {', '.join(missing)}: give "
            + " ".join(f"--set {name}=VALUE" for name in missing)
        )
    _policy(
        password,
        settings,
        min_password_length,
        email=email,
        username=row.get(model.username.name) if model.username is not None else None,
    )
    row[model.password.name] = await _hash(password, settings)
    try:
        async with session.begin_nested():  # a savepoint: a conflict leaves the session usable
            result: Any = await session.execute(insert(model.table).values(row))
            key = result.inserted_primary_key  # a CursorResult's
            created = await _reread(session, model, row.get(model.id.name, _key_of(model, key)))
    except IntegrityError as exc:
        raise await _conflict(session, model, exc, row) from None
    return created


def _key_of(model: UserModel, key: Any) -> Any:
    """The id in an INSERT's primary key (of a composite key, the id's part)."""
    columns = list(model.table.primary_key.columns)
    return key[columns.index(model.id)] if key is not None else None


async def _reread(session: AsyncSession, model: UserModel, id_value: Any) -> UserRecord:
    """The row as stored (server defaults, triggers and the database's own conversions
    included), read by its id in the same transaction: every database can, where not all
    of them return rows from an INSERT or UPDATE."""
    row = (await session.execute(select(*model.public_columns).where(model.id == id_value))).one()
    return _record(model, row)


async def _write(
    session: AsyncSession, model: UserModel, user: UserRecord, changes: dict[str, Any]
) -> UserRecord:
    """Apply `changes` to `user` in a savepoint; conflicts as in add_user."""
    if (
        model.updated is not None
        and model.updated.onupdate is None
        and model.updated.name not in changes
    ):
        changes[model.updated.name] = _now()
    statement = update(model.table).where(model.id == user.id).values(changes)
    new_id = changes.get(model.id.name, user.id)
    try:
        async with session.begin_nested():
            await session.execute(statement)
            written = await _reread(session, model, new_id)
    except IntegrityError as exc:
        raise await _conflict(session, model, exc, changes) from None
    return written


async def set_password(
    session: AsyncSession,
    ident: str,
    password: str,
    *,
    min_password_length: int | None = None,
    model: UserModel | None = None,
) -> UserRecord:
    model, settings = _resolve(session, model)
    user = await get_user(session, ident, model=model)
    _policy(password, settings, min_password_length, email=user.email, username=user.username)
    return await _write(
        session, model, user, {model.password.name: await _hash(password, settings)}
    )


@dataclass(frozen=True)
class PasswordCheck:
    """What `check_password` found: whether the password matches, and whether the stored
    hash is outdated (another scheme, older parameters, another system's), and, with
    `upgrade`, the scheme it was replaced with."""

    user: UserRecord
    matches: bool
    outdated: bool = False
    replaced_by: str | None = None  # "argon2" / "bcrypt": the hash was rewritten


async def check_password(
    session: AsyncSession,
    ident: str,
    password: str,
    *,
    model: UserModel | None = None,
    upgrade: bool = False,
) -> PasswordCheck:
    """Whether `password` is the user's, for administrators: an unknown user is
    NotFoundError, an inactive one still matches, an account without a usable password
    never does, a hash out of bounds is HashRefusedError. A check writes nothing: only with
    `upgrade` does a match against an outdated hash store a new one, of a scheme the
    application's own login can verify (`passwords.upgrade_scheme`). Login code wants
    `authenticate` instead."""
    from dbtool.users import passwords

    model, settings = _resolve(session, model)
    user = await get_user(session, ident, model=model, with_hash=True)
    stored = user.hashed_password or ""
    if not passwords.is_usable(stored):
        return PasswordCheck(user, False)  # imported without a password: nothing can match
    scheme = passwords.upgrade_scheme(
        stored, settings.password_hash, chosen=settings.password_hash_chosen
    )
    matches, new_hash = await asyncio.to_thread(passwords.verify_password, password, stored, scheme)
    if not matches or new_hash is None:
        return PasswordCheck(user, matches)
    if not upgrade:
        return PasswordCheck(user, True, outdated=True)
    user = await _write(session, model, user, {model.password.name: new_hash})
    return PasswordCheck(user, True, outdated=True, replaced_by=scheme)


_dummy_hashes: dict[str, str] = {}


def _dummy_hash(scheme: str) -> str:
    """A hash of the configured scheme and parameters, verified when there is no user (or
    no usable hash), so that a failed login costs what a successful one costs."""
    from dbtool.users import passwords

    if scheme not in _dummy_hashes:
        _dummy_hashes[scheme] = passwords.hash_password("dbtool: no such user", scheme)
    return _dummy_hashes[scheme]


async def authenticate(
    session: AsyncSession, ident: str, password: str, *, model: UserModel | None = None
) -> UserRecord | None:
    """The user whose email, username or id is `ident`, if `password` is theirs and they
    are active; else None. For login paths:

    - it takes the same time whether or not the user exists (a hash of the same cost is
      checked either way), so response times do not tell which accounts exist;
    - an inactive user, an account without a usable password (imported without one), or a
      stored hash dbtool would not verify (unknown format, out of the bounds in
      dbtool.users.passwords), is a failure, never an exception;
    - the email matches in any letter case; when several accounts hold it in spellings
      other than the one given, none of them logs in by it (the exact spelling or the
      username still does);
    - a match against an outdated hash stores a new one, of the configured scheme, or of
      the stored hash's own family (bcrypt) when DBTOOL_PASSWORD_HASH was not set, so the
      application's other login code can still verify it (`passwords.upgrade_scheme`).
    """
    from dbtool.users import passwords

    model, settings = _resolve(session, model)
    dummy = await asyncio.to_thread(_dummy_hash, settings.password_hash)  # once per process
    try:
        user = await find_user(session, ident, model=model, with_hash=True)
    except ConflictError:
        user = None  # several accounts answer to this spelling: none of them logs in by it
    stored = user.hashed_password if user is not None else None
    if not passwords.is_usable(stored) or passwords.hash_problem(stored or "") is not None:
        await asyncio.to_thread(passwords.verify_password, password, dummy, settings.password_hash)
        return None
    assert stored is not None
    scheme = passwords.upgrade_scheme(
        stored, settings.password_hash, chosen=settings.password_hash_chosen
    )
    matches, new_hash = await asyncio.to_thread(passwords.verify_password, password, stored, scheme)
    if user is None or not matches or not user.is_active:
        return None
    if new_hash is not None:
        try:
            user = await _write(session, model, user, {model.password.name: new_hash})
        except DBAPIError as exc:
            # A read-only standby: log in, upgrade another time.
            if not backend_for(session.get_bind().dialect.name).is_read_only(exc):
                raise
    return user


async def update_user(
    session: AsyncSession,
    ident: str,
    *,
    email: str | None = None,
    username: str | None = None,
    is_active: bool | None = None,
    is_superuser: bool | None = None,
    is_verified: bool | None = None,
    values: Mapping[str, Any] | None = None,
    model: UserModel | None = None,
) -> tuple[UserRecord, bool]:
    """Apply the given changes; (user, whether anything changed). Conflicts as in add_user."""
    model, _ = _resolve(session, model)
    changes: dict[str, Any] = {}
    if email is not None:
        changes[model.email.name] = stored_email(model, email)
        check_length(model.email, changes[model.email.name])
    if username is not None:
        column = model.requires("username", "--username")
        changes[column.name] = normalize_username(username)
        check_length(column, changes[column.name])
    for role, wanted, option in (
        ("active", is_active, "--active/--inactive"),
        ("superuser", is_superuser, "--superuser/--no-superuser"),
        ("verified", is_verified, "--verified/--unverified"),
    ):
        if wanted is not None:
            changes[model.requires(role, option).name] = wanted
    changes |= convert_values(model, values)
    if not changes:
        raise UsageError("nothing to update: give at least one of the options")
    for name, value in changes.items():
        if value is None and name in {column.name for column in model.required}:
            raise InvalidInputError(f"{name} cannot be empty: the user model requires it")
    user = await get_user(session, ident, model=model)
    changes = {name: value for name, value in changes.items() if user.get(name) != value}
    if not changes:
        return user, False
    if model.email.name in changes:
        await _refuse_case_variant(session, model, changes[model.email.name], other_than=user.id)
    return await _write(session, model, user, changes), True


async def delete_user(
    session: AsyncSession, ident: str, *, model: UserModel | None = None
) -> UserRecord:
    model, _ = _resolve(session, model)
    user = await get_user(session, ident, model=model)
    await session.execute(delete(model.table).where(model.id == user.id))
    return user
