"""The models dbtool works on: the application's own (DBTOOL_MODELS) or the built-in ones.

Everything that depends on the shape of the schema goes through the two values resolved
here, once per command (or once per `Database` in an application):

- `Models`: the metadata whose tables `init`, `drop`, `reset` and `info` manage;
- `UserModel`: the table the users commands work on, with the column that plays each role
  (email, password hash, username, active, ...), found by convention and overridable with
  DBTOOL_USER_FIELDS, and the required columns dbtool does not know (`full_name`, ...).

A role the table lacks (no username, no timestamps) is simply None: the services and the
output leave it out, instead of branching per application shape.
"""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Annotated, Any, get_args, get_origin

from sqlalchemy import Column, MetaData, Table, TypeDecorator
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import NoInspectionAvailable
from sqlalchemy.orm import Mapper

from dbtool.errors import ConfigError, InvalidInputError
from dbtool.formats import excerpt

MODELS_ENV = "DBTOOL_MODELS"
USER_MODEL_ENV = "DBTOOL_USER_MODEL"
USER_FIELDS_ENV = "DBTOOL_USER_FIELDS"
BUILTIN = "built-in"

# Column names that play each role, first match wins; DBTOOL_USER_FIELDS overrides them.
ROLE_CANDIDATES: dict[str, tuple[str, ...]] = {
    "email": ("email", "email_address"),
    "password": ("hashed_password", "password_hash", "password"),
    "username": ("username",),
    "active": ("is_active", "active"),
    "superuser": ("is_superuser", "superuser"),
    "verified": ("is_verified", "verified", "email_verified"),
    "created": ("created_at", "date_joined", "created"),
    "updated": ("updated_at", "modified_at", "updated"),
}
ROLES = tuple(ROLE_CANDIDATES)
REQUIRED_ROLES = ("email", "password")
FLAG_ROLES = ("active", "superuser", "verified")
TIMESTAMP_ROLES = ("created", "updated")
# What a new user gets when the command line says nothing about a flag.
FLAG_DEFAULTS = {"active": True, "superuser": False, "verified": False}


# --- values from text -------------------------------------------------------------------------

_TRUE = ("1", "true", "yes", "on", "t", "y")
_FALSE = ("0", "false", "no", "off", "f", "n")


FLAG_WORDS = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}


def parse_flag(raw: str) -> bool:
    flag = FLAG_WORDS.get(raw)  # "true", "false" as written: no new strings for them
    if flag is None:
        flag = FLAG_WORDS.get(raw.strip().lower())
    if flag is None:
        raise ValueError("expected true or false")
    return flag


def python_type(column: Column[Any]) -> type:
    """The Python type a column holds (str when SQLAlchemy cannot tell)."""
    return _python_type(column.type)


def _python_type(column_type: Any) -> type:
    try:
        found: Any = column_type.python_type
    except NotImplementedError:
        found = object
    if found is object and isinstance(column_type, TypeDecorator):
        return _python_type(column_type.impl_instance)  # a decorator that does not say
    while get_origin(found) is Annotated:  # pydantic's UUID4 is Annotated[UUID, ...]
        found = get_args(found)[0]
    return found if isinstance(found, type) and found is not object else str


def keeps_time_zone(column: Column[Any]) -> bool:
    """True for a timestamp column declared with a time zone (DateTime(timezone=True))."""
    column_type: Any = column.type
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    return bool(getattr(column_type, "timezone", False))


class NaiveTimeError(ValueError):
    """A timestamp without a time zone, for a column that keeps one."""


def _utc(value: datetime, *, assume_utc: bool, naive_column: bool) -> datetime:
    """`value` in UTC; for a column without time zone, as a naive UTC time."""
    if value.tzinfo is UTC and not naive_column:  # already (the common case: +00:00)
        return value
    if value.tzinfo is None:
        if naive_column:
            return value
        if not assume_utc:
            raise NaiveTimeError("needs a time zone (e.g. +00:00)")
        value = value.replace(tzinfo=UTC)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    return utc.replace(tzinfo=None) if naive_column else utc


def converter(
    column: Column[Any],
    *,
    assume_utc: bool = False,
    integers: tuple[int, int] = (-(2**63), 2**63 - 1),
) -> Callable[[Any], Any]:
    """A function turning a text (or JSON) value into what `column` stores, raising
    ValueError with a short reason (the caller names the column). `integers`: the whole
    numbers the column holds on its database (the backend's `integer_range`)."""
    kind = python_type(column)
    length = getattr(column.type, "length", None)

    if issubclass(kind, bool):

        def to_bool(value: Any) -> bool:
            if value.__class__ is str:  # every CSV value: "true" and "false" looked up as they are
                flag = FLAG_WORDS.get(value)
                return parse_flag(value) if flag is None else flag
            if isinstance(value, bool):
                return value
            if isinstance(value, str):
                return parse_flag(value)
            raise ValueError("expected true or false")

        return to_bool
    if issubclass(kind, int):
        low, high = integers

        def to_int(value: Any) -> int:
            if isinstance(value, bool):
                raise ValueError("expected a whole number")
            if isinstance(value, int):
                number = value
            else:
                text = str(value).strip()
                if not text.lstrip("+-").isdigit() or len(text) > 30:
                    raise ValueError("expected a whole number")
                number = int(text)
            if not low <= number <= high:
                raise ValueError(f"is out of the column's range ({low:,} to {high:,})")
            return number

        return to_int
    if issubclass(kind, float | Decimal):

        def to_number(value: Any) -> Any:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            try:
                number = Decimal(str(value).strip())
            except InvalidOperation:
                raise ValueError("expected a number") from None
            if not number.is_finite():
                raise ValueError("expected a finite number")
            return float(number) if issubclass(kind, float) else number

        return to_number
    if issubclass(kind, uuid.UUID):

        def to_uuid(value: Any) -> uuid.UUID:
            if isinstance(value, uuid.UUID):
                return value
            try:
                return uuid.UUID(str(value).strip())
            except ValueError:
                raise ValueError("is not a UUID") from None

        return to_uuid
    if issubclass(kind, datetime):
        naive_column = not keeps_time_zone(column)

        def to_datetime(value: Any) -> datetime:
            if isinstance(value, datetime):
                parsed = value
            else:
                try:
                    text = value.strip() if value.__class__ is str else str(value).strip()
                    parsed = datetime.fromisoformat(text)
                except ValueError:
                    raise ValueError("is not an ISO 8601 timestamp") from None
            if parsed.tzinfo is UTC and not naive_column:  # the common case, without a call
                return parsed
            return _utc(parsed, assume_utc=assume_utc, naive_column=naive_column)

        return to_datetime
    if issubclass(kind, date):

        def to_date(value: Any) -> date:
            try:
                return date.fromisoformat(str(value).strip())
            except ValueError:
                raise ValueError("is not an ISO 8601 date (YYYY-MM-DD)") from None

        return to_date
    if issubclass(kind, Enum):
        members = {str(member.value): member for member in kind} | {m.name: m for m in kind}

        def to_enum(value: Any) -> Enum:
            found = members.get(str(value).strip())
            if found is None:
                raise ValueError(f"must be one of {', '.join(sorted(members))}")
            return found

        return to_enum
    if issubclass(kind, dict | list):
        import json

        def to_json(value: Any) -> Any:
            if isinstance(value, dict | list):
                return value
            try:
                return json.loads(str(value))
            except ValueError:
                raise ValueError("is not valid JSON") from None

        return to_json
    enum_values = getattr(column.type, "enums", None)  # a string Enum column

    def to_text(raw: Any) -> str:
        if isinstance(raw, str):
            value = raw
        elif isinstance(raw, bool | int | float):
            value = str(raw).lower() if isinstance(raw, bool) else str(raw)
        else:
            raise ValueError("must be text")
        if length is not None and len(value) > length:
            raise ValueError(f"is longer than the column allows ({length} characters)")
        if "\x00" in value:
            raise ValueError("must not contain a NUL character")
        if enum_values and value not in enum_values:
            raise ValueError(f"must be one of {', '.join(enum_values)}")
        return value

    return to_text


def convert(column: Column[Any], value: Any, *, assume_utc: bool = False) -> Any:
    """`value` as `column` stores it, or InvalidInputError naming the column."""
    try:
        return converter(column, assume_utc=assume_utc)(value)
    except ValueError as exc:
        raise InvalidInputError(f"{column.name}={excerpt(value)}: {column.name} {exc}") from None


def check_length(column: Column[Any], value: str) -> None:
    """InvalidInputError when `value` does not fit the text column (PostgreSQL would refuse
    it with a database error, SQLite would keep it whatever the declared length)."""
    length = getattr(column.type, "length", None)
    if length is not None and len(value) > length:
        raise InvalidInputError(
            f"{column.name} is longer than the column allows ({length} characters)"
        )


# --- the user model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UserModel:
    """The users table and the column that plays each role in it."""

    table: Table
    name: str  # for messages: the mapped class's name, or the table's
    id: Column[Any]
    email: Column[Any]
    password: Column[Any]
    username: Column[Any] | None = None
    active: Column[Any] | None = None
    superuser: Column[Any] | None = None
    verified: Column[Any] | None = None
    created: Column[Any] | None = None
    updated: Column[Any] | None = None
    # NOT NULL columns without any default that dbtool does not fill itself.
    required: tuple[Column[Any], ...] = ()
    # The id is generated here (uuid4) when the model gives it no default of its own.
    generate_id: bool = False
    # Other primary-key columns generated here alike (a composite key's UUID column whose
    # only default is a dataclass default_factory, as FastAPI-boilerplate's `uuid`).
    generated: tuple[Column[Any], ...] = ()
    # None for a bare table; the mapped class of an application's (or the built-in) model.
    mapped_class: type | None = field(default=None, compare=False)
    # New emails stored all lower case (the built-in model), or as email-validator and so
    # pydantic's EmailStr normalise them: the domain lower case, the local part as typed
    # (an application's model, whose own code stores them so). Lookups ignore case either way.
    lowercase_emails: bool = False

    @property
    def table_name(self) -> str:
        return self.table.name

    def role(self, name: str) -> Column[Any] | None:
        column: Column[Any] | None = getattr(self, name)
        return column

    def roles(self) -> Iterator[tuple[str, Column[Any]]]:
        for name in ROLES:
            column = self.role(name)
            if column is not None:
                yield name, column

    @property
    def public_columns(self) -> list[Column[Any]]:
        """What list/show/export print: every column but the password hash."""
        return [column for column in self.table.columns if column is not self.password]

    @property
    def public_names(self) -> list[str]:
        return [column.name for column in self.public_columns]

    @property
    def zoned_timestamps(self) -> tuple[str, ...]:
        """Timestamp columns with a time zone, which SQLite hands back without one."""
        return tuple(
            column.name
            for column in self.table.columns
            if issubclass(python_type(column), datetime) and keeps_time_zone(column)
        )

    def as_read(self, values: dict[str, Any]) -> dict[str, Any]:
        """A row as read: zoned timestamps that came back naive (SQLite stores no zone;
        what dbtool and CURRENT_TIMESTAMP store there is UTC) marked as UTC."""
        for name in self.zoned_timestamps:
            value = values.get(name)
            if isinstance(value, datetime) and value.tzinfo is None:
                values[name] = value.replace(tzinfo=UTC)
        return values

    def column(self, name: str) -> Column[Any]:
        """The column called `name`, or InvalidInputError listing what exists."""
        found = self.table.columns.get(name)
        if found is None:
            raise InvalidInputError(
                f"the user model {self.name} has no column {name!r} "
                f"(columns: {', '.join(self.table.columns.keys())})"
            )
        return found

    def requires(self, role: str, option: str) -> Column[Any]:
        """The column for `role`, or an error saying that `option` does not apply here."""
        column = self.role(role)
        if column is None:
            raise InvalidInputError(
                f"{option} does not apply: the user model {self.name} has no {role} column"
            )
        return column

    def parse_id(self, text: str) -> Any:
        """`text` as a value of the id column, or None if it cannot be one."""
        try:
            return converter(self.id)(text)
        except ValueError:
            return None

    @classmethod
    def from_table(
        cls,
        table: Table,
        *,
        name: str | None = None,
        overrides: Mapping[str, str | None] | None = None,
        mapper: Mapper[Any] | None = None,
        lowercase_emails: bool = False,
    ) -> UserModel:
        """Find each role's column (overrides first, then the conventional names)."""
        overrides = dict(overrides or {})
        label = name or table.name
        id_column = _id_column(table, label)
        roles: dict[str, Column[Any] | None] = {}
        for role, candidates in ROLE_CANDIDATES.items():
            if role in overrides:
                wanted = overrides[role]
                roles[role] = _resolve_column(table, mapper, wanted, role) if wanted else None
            else:
                roles[role] = next(
                    (table.columns[c] for c in candidates if c in table.columns), None
                )
        for role in REQUIRED_ROLES:
            if roles[role] is None:
                names = ", ".join(ROLE_CANDIDATES[role])
                raise ConfigError(
                    f"the user model {label} has no {role} column (looked for {names}); "
                    f"name it with {USER_FIELDS_ENV}, e.g. {role}=my_column"
                )
        _refuse_shared_columns(label, roles)
        filled = {column for column in roles.values() if column is not None}
        generate_id = _generated_here(id_column)
        if generate_id:
            filled.add(id_column)
        generated = tuple(
            column
            for column in table.primary_key.columns
            if column is not id_column and _generated_here(column)
        )
        filled.update(generated)
        required = tuple(
            column
            for column in table.columns
            if column not in filled and _needs_a_value(column, table)
        )
        return cls(
            table=table,
            name=label,
            id=id_column,
            mapped_class=mapper.class_ if mapper is not None else None,
            required=required,
            generate_id=generate_id,
            generated=generated,
            lowercase_emails=lowercase_emails,
            **roles,  # type: ignore[arg-type]
        )


def _id_column(table: Table, label: str) -> Column[Any]:
    """The column that tells users apart: the primary key; of a composite one (FastAPI-
    boilerplate's `id` and `uuid`), the column that is unique on its own, `id` first, then
    the auto-numbered one."""
    primary = list(table.primary_key.columns)
    if len(primary) == 1:
        return primary[0]
    if not primary:
        raise ConfigError(f"the user model {label} has no primary key")
    alone = [column for column in primary if _unique_alone(column, table)]
    if not alone:
        names = ", ".join(column.name for column in primary)
        raise ConfigError(
            f"the user model {label} has a composite primary key ({names}) and none of its "
            "columns is unique on its own: dbtool addresses a user by one column that tells "
            "users apart (declare one of them unique=True)"
        )
    named_id = [column for column in alone if column.name == "id"]
    numbered = [column for column in alone if column is table.autoincrement_column]
    return (named_id or numbered or alone)[0]


def _unique_alone(column: Column[Any], table: Table) -> bool:
    """Whether `column` by itself is unique: unique=True, or a unique constraint or index
    of that one column."""
    from sqlalchemy import UniqueConstraint

    if column.unique:
        return True
    alone = [list(c.columns) for c in table.constraints if isinstance(c, UniqueConstraint)]
    alone += [list(index.columns) for index in table.indexes if index.unique]
    return [column] in alone


def _refuse_shared_columns(label: str, roles: dict[str, Column[Any] | None]) -> None:
    """Each role its own column: `password=email` would show every hash as an email, and
    `superuser=is_active` make an active user of every superuser."""
    by_column: dict[str, list[str]] = {}
    for role, column in roles.items():
        if column is not None:
            by_column.setdefault(column.key, []).append(role)
    for column_name, shared in by_column.items():
        if len(shared) > 1:
            raise ConfigError(
                f"{USER_FIELDS_ENV}: the {' and '.join(shared)} roles of {label} are both "
                f"column {column_name}; each role needs a column of its own"
            )


def _resolve_column(
    table: Table, mapper: Mapper[Any] | None, wanted: str, role: str
) -> Column[Any]:
    if wanted in table.columns:
        return table.columns[wanted]
    if mapper is not None and wanted in mapper.columns:
        column = mapper.columns[wanted]
        if isinstance(column, Column) and column.table is table:
            return column
    raise ConfigError(
        f"{USER_FIELDS_ENV}: {role}={wanted} is not a column of {table.name} "
        f"(columns: {', '.join(table.columns.keys())})"
    )


def _has_default(column: Column[Any]) -> bool:
    return column.default is not None or column.server_default is not None


def _generated_here(column: Column[Any]) -> bool:
    """A UUID primary key with no default anywhere: dbtool makes one (uuid4)."""
    return (
        not _has_default(column)
        and column.table.autoincrement_column is not column
        and issubclass(python_type(column), uuid.UUID)
    )


def _needs_a_value(column: Column[Any], table: Table) -> bool:
    return (
        not column.nullable
        and not _has_default(column)
        and table.autoincrement_column is not column
        and column.computed is None
        and column.identity is None
    )


def parse_fields(raw: str | None) -> dict[str, str | None]:
    """DBTOOL_USER_FIELDS: "password=password_hash,superuser=is_admin,username=" (an empty
    value says the model has no such column)."""
    if not raw:
        return {}
    overrides: dict[str, str | None] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        role, sep, column = part.partition("=")
        role = role.strip()
        if not sep or role not in ROLE_CANDIDATES:
            raise ConfigError(
                f"{USER_FIELDS_ENV}: {part.strip()!r} is not ROLE=COLUMN "
                f"(roles: {', '.join(ROLES)})"
            )
        if role in REQUIRED_ROLES and not column.strip():
            raise ConfigError(f"{USER_FIELDS_ENV}: the {role} column cannot be left out")
        if role in overrides:
            raise ConfigError(f"{USER_FIELDS_ENV}: the {role} role is given more than once")
        overrides[role] = column.strip() or None
    return overrides


# --- loading the application's models --------------------------------------------------------


@dataclass
class Models:
    """The metadata dbtool manages and, resolved when first asked for, the user model."""

    metadata: MetaData
    source: str  # "built-in", or the DBTOOL_MODELS value
    _user_spec: str | None = None
    _fields: dict[str, str | None] = field(default_factory=dict)
    _mappers: tuple[Mapper[Any], ...] = ()
    _user: UserModel | None = None

    @property
    def tables(self) -> list[Table]:
        """Every table, parents before the tables that reference them."""
        return list(self.metadata.sorted_tables)

    @property
    def classes(self) -> list[type[Any]]:
        """The mapped classes of the models (none for tables declared without a class)."""
        return [mapper.class_ for mapper in self._mappers]

    @property
    def user(self) -> UserModel:
        """The user model, or ConfigError (exit 2) saying how to name it."""
        if self._user is None:
            self._user = self._resolve_user()
        return self._user

    @property
    def user_or_none(self) -> UserModel | None:
        """The user model where the models have one that can be told, else None (fixtures
        of models without users, or with several candidates, need none)."""
        try:
            return self.user
        except ConfigError:
            return None

    def _resolve_user(self) -> UserModel:
        if self._user_spec:
            target = import_object(self._user_spec, USER_MODEL_ENV)
            return user_model_for(target, overrides=self._fields)
        email_names = set(ROLE_CANDIDATES["email"]) | {self._fields.get("email") or ""}
        hash_names = set(ROLE_CANDIDATES["password"]) | {self._fields.get("password") or ""}
        candidates = [
            table
            for table in self.tables
            if email_names & set(table.columns.keys()) and hash_names & set(table.columns.keys())
        ]
        names = {mapper.local_table: mapper for mapper in self._mappers}
        if len(candidates) == 1:
            table = candidates[0]
            mapper = names.get(table)
            return UserModel.from_table(
                table,
                name=mapper.class_.__name__ if mapper is not None else None,
                overrides=self._fields,
                mapper=mapper,
            )
        described = ", ".join(
            f"{names[t].class_.__name__} (table {t.name})" if t in names else t.name
            for t in candidates
        )
        if not candidates:
            raise ConfigError(
                f"no user table in {MODELS_ENV}={self.source}: none has both an email and a "
                f"password-hash column; set {USER_MODEL_ENV}=module:Class (and "
                f"{USER_FIELDS_ENV} for unusual column names)"
            )
        raise ConfigError(
            f"several user tables in {MODELS_ENV}={self.source}: {described}; "
            f"choose one with {USER_MODEL_ENV}=module:Class"
        )


def user_model_for(target: Any, *, overrides: Mapping[str, str | None] | None = None) -> UserModel:
    """The UserModel for a mapped class (or a Table): `user_model_for(app.models.User)`."""
    if isinstance(target, Table):
        return UserModel.from_table(target, overrides=overrides)
    try:
        mapper = sa_inspect(target)
    except NoInspectionAvailable:
        mapper = None
    if not isinstance(mapper, Mapper) or not isinstance(mapper.local_table, Table):
        raise ConfigError(
            f"{USER_MODEL_ENV}: {_describe(target)} is not a mapped class (a model class "
            "with a table)"
        )
    return UserModel.from_table(
        mapper.local_table, name=mapper.class_.__name__, overrides=overrides, mapper=mapper
    )


def _describe(value: Any) -> str:
    """`'User' (a class)`, `'engine' (an AsyncEngine)`: what a setting pointed at, in
    words; never a metaclass's name (DeclarativeAttributeIntercept means nothing to users)."""
    import types

    if isinstance(value, type):
        return f"{value.__qualname__!r} (a class)"
    if isinstance(value, types.ModuleType):
        return f"{value.__name__!r} (a module)"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__qualname__!r} (a function)"
    kind = type(value).__name__
    return f"an object of type {kind}"


def import_object(spec: str, setting: str) -> Any:
    """`package.module:attribute` imported from the current directory (as uvicorn does)."""
    module_name, sep, attribute = spec.strip().partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{setting}={spec!r} must look like package.module:attribute")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the application's own code: anything can happen there
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(
            f"{setting}: cannot import {module_name} ({type(exc).__name__}: {first})"
        ) from None
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigError(f"{setting}: {module_name} has no attribute {attribute!r}") from None
    return value


def _metadata_of(value: Any, spec: str) -> tuple[MetaData, tuple[Mapper[Any], ...]]:
    """The MetaData behind a declarative base, SQLModel, or a MetaData itself."""
    if isinstance(value, MetaData):
        return value, ()
    try:
        mapped = isinstance(sa_inspect(value), Mapper)
    except NoInspectionAvailable:
        mapped = False
    if mapped:
        raise ConfigError(
            f"{MODELS_ENV}={spec}: {_describe(value)} is a mapped class; give its declarative "
            f"base (or its metadata) here, and the user class as {USER_MODEL_ENV}"
        )
    metadata = getattr(value, "metadata", None)
    if isinstance(metadata, MetaData):
        registry = getattr(value, "registry", None)
        mappers = tuple(getattr(registry, "mappers", ()) or ())
        return metadata, mappers
    raise ConfigError(
        f"{MODELS_ENV}={spec}: {_describe(value)} is not a declarative base class, a "
        "MetaData or SQLModel"
    )


_cache: dict[tuple[str | None, str | None, str | None], Models] = {}


def load_models(
    models: str | None = None, user_model: str | None = None, user_fields: str | None = None
) -> Models:
    """The Models for these settings (DBTOOL_MODELS, DBTOOL_USER_MODEL, DBTOOL_USER_FIELDS);
    the built-in ones when none is set. Cached: an application's modules import once."""
    key = (models or None, user_model or None, user_fields or None)
    if key not in _cache:
        _cache[key] = _load(*key)
    return _cache[key]


def _load(models: str | None, user_model: str | None, user_fields: str | None) -> Models:
    fields = parse_fields(user_fields)
    if models:
        metadata, mappers = _metadata_of(import_object(models, MODELS_ENV), models)
        loaded = Models(metadata, models, user_model, fields, mappers)
        if not metadata.tables:
            raise ConfigError(
                f"{MODELS_ENV}={models} has no tables: import the modules that define "
                "them in that module (or point at the one that does)"
            )
        return loaded
    if user_model:
        # The user model alone says where the models are: its class's metadata.
        target = import_object(user_model, USER_MODEL_ENV)
        user = user_model_for(target, overrides=fields)
        assert user.table.metadata is not None
        return Models(user.table.metadata, user_model, user_model, fields, _user=user)
    from dbtool.models.builtin import Base, User

    mapper = sa_inspect(User)
    return Models(
        Base.metadata,
        BUILTIN,
        None,
        fields,
        (mapper,),
        _user=UserModel.from_table(
            User.__table__,  # type: ignore[arg-type]
            name="User",
            overrides=fields,
            mapper=mapper,
            lowercase_emails=True,
        ),
    )
