"""Settings, resolved in one place: option > process environment > .env file > default.

Nothing here runs at import time; `load_settings()` is called once per command (or once per
application process) and returns an immutable `Settings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from dbtool.backends import DRIVERS, SUPPORTED, backend_for
from dbtool.errors import ConfigError
from dbtool.formats import parse_log_format

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./dbtool.db"
DEFAULT_APPLICATION_NAME = "dbtool"

# Source labels, as shown by `dbtool config`.
SOURCE_OPTION = "option"
SOURCE_ENVIRONMENT = "environment"
SOURCE_DEFAULT = "default"
SOURCE_URL = "DATABASE_URL"


@dataclass(frozen=True)
class Settings:
    """Everything dbtool needs to know to open a database, with where each value came from."""

    url: URL = field(default_factory=lambda: make_url(DEFAULT_DATABASE_URL))
    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 30.0
    pool_recycle: int = -1
    pool_pre_ping: bool = False
    connect_timeout: float = 10.0
    echo: bool = False
    protected: bool = False
    password_min_length: int = 8
    password_hash: str = "argon2"
    lock_timeout: float = 5.0
    pgbouncer: bool = False
    pgbouncer_admin_url: str | None = None
    alembic_config: str | None = None
    alembic_version_table: str | None = None
    models: str | None = None
    seed: str | None = None
    patroni_url: str | None = None
    log_format: str = "text"
    user_model: str | None = None
    user_fields: str | None = None
    # None: the CLI calls itself "dbtool"; applications get their program's name (dbtool.db).
    application_name: str | None = None
    # libpq's sslrootcert, sslcert, sslkey from the URL: files for an SSL context (dbtool.db).
    ssl_rootcert: str | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None
    # Environment variable name -> source label ("option", "environment", ".env file ...").
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    # Names set in the .env file (whether dbtool reads them from there or not).
    dotenv_names: frozenset[str] = field(default_factory=frozenset, compare=False)
    # Setting name -> the ${VAR} references its .env value was expanded from, with where
    # each came from ("DATABASE_PORT from .env file"), for `dbtool config`.
    expansions: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    # Problems worth a warning but not an error (a misspelt DBTOOL_ name, ...).
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    @property
    def password_hash_chosen(self) -> bool:
        """Whether DBTOOL_PASSWORD_HASH was given (or the scheme set by an application),
        rather than left at its default: then outdated hashes become hashes of it."""
        source = self.sources.get("DBTOOL_PASSWORD_HASH", SOURCE_DEFAULT)
        return source != SOURCE_DEFAULT or self.password_hash != "argon2"

    @property
    def pool_capacity(self) -> int:
        """The most connections one process with this configuration can hold open."""
        return self.pool_size + self.max_overflow


@dataclass(frozen=True)
class _Spec:
    attr: str
    env: str
    parse: Callable[[str], Any]
    check: Callable[[Any], bool] = lambda _v: True
    rule: str = ""


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("expected a whole number") from None


def _parse_text(raw: str) -> str:
    return raw.strip()


def _parse_scheme(raw: str) -> str:
    value = raw.strip().lower()
    if value not in PASSWORD_SCHEMES:
        raise ValueError(f"expected one of {', '.join(PASSWORD_SCHEMES)}")
    return value


def parse_seconds(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("expected a finite number of seconds")
    return value


PASSWORD_SCHEMES = ("argon2", "bcrypt")


SETTING_SPECS: tuple[_Spec, ...] = (
    _Spec("pool_size", "DBTOOL_POOL_SIZE", _parse_int, lambda v: v >= 1, "at least 1"),
    _Spec("max_overflow", "DBTOOL_MAX_OVERFLOW", _parse_int, lambda v: v >= 0, "0 or more"),
    _Spec("pool_timeout", "DBTOOL_POOL_TIMEOUT", parse_seconds, lambda v: v > 0, "above 0"),
    _Spec(
        "pool_recycle",
        "DBTOOL_POOL_RECYCLE",
        _parse_int,
        lambda v: v == -1 or v > 0,
        "-1 (never) or above 0",
    ),
    _Spec("pool_pre_ping", "DBTOOL_POOL_PRE_PING", _parse_bool),
    _Spec("connect_timeout", "DBTOOL_CONNECT_TIMEOUT", parse_seconds, lambda v: v > 0, "above 0"),
    _Spec("echo", "DBTOOL_ECHO", _parse_bool),
    _Spec("protected", "DBTOOL_PROTECTED", _parse_bool),
    _Spec(
        "password_min_length",
        "DBTOOL_PASSWORD_MIN_LENGTH",
        _parse_int,
        lambda v: 1 <= v <= 4096,
        "between 1 and 4096",
    ),
    _Spec("password_hash", "DBTOOL_PASSWORD_HASH", _parse_scheme),
    # PostgreSQL's lock_timeout holds milliseconds in an int: at most 2,147,483 s (24 days).
    _Spec(
        "lock_timeout",
        "DBTOOL_LOCK_TIMEOUT",
        parse_seconds,
        lambda v: 0 < v <= 2_147_483,
        "above 0 and at most 2147483 (24 days)",
    ),
    _Spec("pgbouncer", "DBTOOL_PGBOUNCER", _parse_bool),
    _Spec("pgbouncer_admin_url", "DBTOOL_PGBOUNCER_ADMIN_URL", _parse_text),
    _Spec("alembic_config", "DBTOOL_ALEMBIC_CONFIG", _parse_text),
    _Spec(
        "alembic_version_table",
        "DBTOOL_ALEMBIC_VERSION_TABLE",
        _parse_text,
        lambda v: 0 < len(v) <= 127 and v.count(".") <= 1 and all(v.split(".")),
        "a table name, or schema.table",
    ),
    _Spec("models", "DBTOOL_MODELS", _parse_text),
    _Spec("seed", "DBTOOL_SEED", _parse_text),
    _Spec("patroni_url", "DBTOOL_PATRONI_URL", _parse_text),
    _Spec("log_format", "DBTOOL_LOG_FORMAT", parse_log_format),
    _Spec("user_model", "DBTOOL_USER_MODEL", _parse_text),
    _Spec("user_fields", "DBTOOL_USER_FIELDS", _parse_text),
)
URL_ENV = "DATABASE_URL"
# Settings that can also be given as a root option.
OPTION_FLAGS = {URL_ENV: "--url", "DBTOOL_MODELS": "--models"}
ALL_SETTING_NAMES = (URL_ENV, *(spec.env for spec in SETTING_SPECS))


def load_settings(
    *,
    url: str | None = None,
    env_file: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    options: Mapping[str, str | None] | None = None,
) -> Settings:
    """Resolve every setting: option > environment > .env file > default.

    `url` is the --url option; `options` holds other settings given as options, by setting
    name (e.g. {"DBTOOL_MODELS": "app.models:Base"}). An option given but blank is an error
    rather than "unset": `--url "$UNSET"` must not quietly mean another database.
    `env_file` defaults to `.env` in the current directory (ignored when missing); an
    explicitly given file must exist.
    """
    given = {URL_ENV: url, **(options or {})}
    for name, value in given.items():
        if value is not None and not value.strip():
            raise ConfigError(
                f"{OPTION_FLAGS.get(name, name)} is empty: give a value or leave it out"
            )
        if value is not None:
            _text(OPTION_FLAGS.get(name, name), value, SOURCE_OPTION)
    env = os.environ if environ is None else environ
    dotenv_path, dotenv, expansions = _read_dotenv(env_file, env)
    dotenv_label = f".env file ({dotenv_path})"

    def lookup(name: str) -> tuple[str, str] | None:
        # Empty values count as unset, so `DATABASE_URL=` in CI does not mean "no URL".
        if env.get(name, "").strip():
            return _text(name, env[name], SOURCE_ENVIRONMENT), SOURCE_ENVIRONMENT
        if (dotenv.get(name) or "").strip():
            label = dotenv_label + _unset_references(expansions.get(name, ()))
            return _text(name, str(dotenv[name]), label), label
        return None

    sources: dict[str, str] = {}
    if url is not None:
        raw_url, url_source = url, SOURCE_OPTION
    else:
        raw_url, url_source = lookup(URL_ENV) or (DEFAULT_DATABASE_URL, SOURCE_DEFAULT)
    normalised, url_extras = normalize_url(raw_url, url_source)
    sources[URL_ENV] = url_source

    values: dict[str, Any] = {}
    for spec in SETTING_SPECS:
        option = given.get(spec.env)
        found = (option, SOURCE_OPTION) if option is not None else lookup(spec.env)
        if found is None:
            sources[spec.env] = SOURCE_DEFAULT
            continue
        raw, source = found
        try:
            value = spec.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{spec.env}={raw.strip()!r} (from {source}): {exc}") from None
        if not spec.check(value):
            raise ConfigError(f"{spec.env}={raw.strip()!r} (from {source}) must be {spec.rule}")
        values[spec.attr] = value
        sources[spec.env] = source

    # A libpq-style `connect_timeout` in the URL applies unless the setting was given itself.
    if "connect_timeout" in url_extras and sources["DBTOOL_CONNECT_TIMEOUT"] == SOURCE_DEFAULT:
        sources["DBTOOL_CONNECT_TIMEOUT"] = SOURCE_URL
    elif "connect_timeout" in url_extras:
        del url_extras["connect_timeout"]
    warnings = [
        *_unknown_names(env, SOURCE_ENVIRONMENT),
        *_unknown_names(dotenv, dotenv_label),
    ]
    if values.get("models") and url_source == SOURCE_DEFAULT:
        # The first hour's trap: the application's models, dbtool's own default database.
        warnings.append(
            f"DBTOOL_MODELS is set but DATABASE_URL is not: dbtool works on "
            f"{DEFAULT_DATABASE_URL.split('///', 1)[1]}, not your application's database; "
            "set DATABASE_URL (environment or .env) to the URL your application uses"
        )
    return Settings(
        url=normalised,
        sources={name: source.split("; ")[0] for name, source in sources.items()},
        dotenv_names=frozenset(name for name, value in dotenv.items() if value),
        expansions={
            name: pieces
            for name, pieces in expansions.items()
            if sources.get(name, "").startswith(dotenv_label)
        },
        warnings=tuple(warnings),
        **{**url_extras, **values},
    )


# DBTOOL_ names that are not settings but are read elsewhere: by the users commands (only
# from the environment), and (by prefix) by dbtool's own tests and benchmarks, one of each
# per backend (DBTOOL_TEST_<BACKEND>_URL, DBTOOL_REQUIRE_<BACKEND>, ...).
OTHER_NAMES = ("DBTOOL_USER_PASSWORD",)
OTHER_PREFIXES = ("DBTOOL_TEST_", "DBTOOL_REQUIRE_", "DBTOOL_BENCH_")


def _unknown_names(names: Iterable[str], source: str) -> Iterator[str]:
    """A warning for each DBTOOL_ name dbtool does not know, with the nearest one it does."""
    known = [*ALL_SETTING_NAMES, *OTHER_NAMES]
    for name in sorted(names):
        if name.startswith("DBTOOL_") and name not in known and not name.startswith(OTHER_PREFIXES):
            from difflib import get_close_matches

            close = get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            yield f"{name} (from {source}) is not a dbtool setting, and is ignored{hint}"


def _text(name: str, value: str, source: str) -> str:
    """`value`, if it is text a setting can hold (argv and the environment can carry invalid
    UTF-8, which Python keeps as surrogates, and NUL characters)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{name} (from {source}) is not valid UTF-8") from None
    if "\x00" in value:
        raise ConfigError(f"{name} (from {source}) contains a NUL character")
    # Surrounding white space is trimmed where a setting is read; inside, a line break or
    # a tab is a copy-and-paste accident, never part of a URL or a name.
    if any(character in value.strip() for character in "\n\r\t\x0b\x0c"):
        raise ConfigError(f"{name} (from {source}) contains a line break or a tab")
    return value


def _read_dotenv(
    env_file: Path | str | None, environ: Mapping[str, str]
) -> tuple[Path, dict[str, str | None], dict[str, tuple[str, ...]]]:
    """The .env file's values as the application's own python-dotenv reads them (its
    `load_dotenv()` defaults): `${VAR}` and `${VAR:-default}` expanded from the environment
    first, then the file's earlier lines; a bare `$` is literal. Also, for each value that
    had references, where each came from."""
    path = Path(env_file) if env_file is not None else Path.cwd() / ".env"
    if not path.is_file():
        if env_file is not None:
            raise ConfigError(f"--env-file {path}: no such file")
        return path, {}, {}
    from dotenv import dotenv_values  # only when there is a file to read

    try:
        raw = dotenv_values(path, interpolate=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return (path, *_expand(raw, environ))


# How `dbtool config` and errors say where an expanded reference's value came from.
_FROM_ENVIRONMENT, _FROM_DOTENV, _UNSET = "from the environment", "from .env", "not set"


def _expand(
    raw: Mapping[str, str | None], environ: Mapping[str, str]
) -> tuple[dict[str, str | None], dict[str, tuple[str, ...]]]:
    """python-dotenv's own expansion (`resolve_variables`, override=False), applied to
    `environ` rather than os.environ, noting the source of each reference."""
    from dotenv.variables import Variable, parse_variables

    values: dict[str, str | None] = {}
    pieces: dict[str, tuple[str, ...]] = {}

    def origin(reference: Variable) -> str:
        if reference.name in environ:
            return _FROM_ENVIRONMENT
        if values.get(reference.name) is not None:
            return _FROM_DOTENV
        return f"{_UNSET} (its default used)" if reference.default is not None else _UNSET

    for name, value in raw.items():
        if value is None:
            values[name] = None
            continue
        atoms = list(parse_variables(value))
        references = [atom for atom in atoms if isinstance(atom, Variable)]
        if references:
            pieces[name] = tuple(f"${{{ref.name}}} {origin(ref)}" for ref in references)
        scope: dict[str, str | None] = {**values, **environ}
        values[name] = "".join(atom.resolve(scope) for atom in atoms)
    return values, pieces


def _unset_references(pieces: Iterable[str]) -> str:
    """ "; ${DATABASE_PORT} is not set" for the references of a value that expanded to
    nothing: the likely cause of whatever is wrong with it."""
    unset = [piece.split(" ", 1)[0] for piece in pieces if piece.endswith(_UNSET)]
    return f"; {', '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set" if unset else ""


def str_url(url: str | URL) -> str:
    return url if isinstance(url, str) else url.render_as_string(hide_password=False)


def mask_url(url: str | URL) -> str:
    """The URL as it may be shown anywhere: password replaced by ***."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return "<unparsable URL>"
    return parsed.render_as_string(hide_password=True)


def normalize_url(raw: str, source: str) -> tuple[URL, dict[str, Any]]:
    """Parse and normalise a database URL to an async driver dbtool supports.

    Returns the URL and any settings carried in its query string (application name,
    connect timeout) that must not be passed to the driver as-is. Raises ConfigError,
    whose message never contains the raw URL (it may hold a password).
    """
    where = f"{URL_ENV} (from {source})"
    _text(URL_ENV, raw, source)
    try:
        url = make_url(_libpq_hosts(raw.strip()))
    except ArgumentError:
        raise ConfigError(
            f"{where} is not a valid database URL; expected e.g. "
            "postgresql://user:password@host:5432/dbname or sqlite:///path/to/file.db"
        ) from None
    except ValueError as exc:  # a port that is not a number, or none after the colon
        why = "its port is not a number" if "int()" in str(exc) else str(exc)
        raise ConfigError(f"{where} is not a valid database URL: {why}") from None

    # %00 decodes to NUL (SQLAlchemy 2.1 decodes the database part too, 2.0 does not).
    if "%00" in raw or any("\x00" in (part or "") for part in (url.password, url.database)):
        raise ConfigError(f"{where} contains a NUL character (%00)")
    driver = DRIVERS.get(url.drivername)
    if driver is None:
        raise ConfigError(
            f"{where} uses unsupported driver {url.drivername!r}; dbtool supports {SUPPORTED}"
        )
    url = url.set(drivername=driver)
    return backend_for(url).normalize_url(url, where)


# scheme://[userinfo@]h1[:p1],h2[:p2]/...: libpq's multi-host form, which make_url cannot read.
_LIBPQ_HOSTS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^@/?#]*@)?"
    r"(?P<hosts>[^/?#]*,[^/?#]*)(?P<path>/[^?#]*)?(?:\?(?P<query>[^#]*))?"
)


def _libpq_hosts(raw: str) -> str:
    """libpq's `postgresql://u@h1:5432,h2:5433/db?x=y` as SQLAlchemy's
    `postgresql://u@/db?host=h1:5432&host=h2:5433&x=y`; any other URL unchanged."""
    found = _LIBPQ_HOSTS.fullmatch(raw)
    if found is None:
        return raw
    hosts = "&".join(f"host={host.strip()}" for host in found["hosts"].split(",") if host)
    query = f"{hosts}&{found['query']}" if found["query"] else hosts
    return f"{found['scheme']}{found['userinfo'] or ''}{found['path'] or '/'}?{query}"


def describe_settings(settings: Settings) -> list[tuple[str, Any, str]]:
    """(name, value, source) for every setting; the URL comes with its password masked, and
    a value expanded from ${VAR} references in .env says where each reference came from."""
    rows: list[tuple[str, Any, str]] = [(URL_ENV, settings.masked_url, _source(settings, URL_ENV))]
    for spec in SETTING_SPECS:
        rows.append((spec.env, getattr(settings, spec.attr), _source(settings, spec.env)))
    return rows


def _source(settings: Settings, name: str) -> str:
    source = settings.sources.get(name, SOURCE_DEFAULT)
    pieces = settings.expansions.get(name)
    return f"{source}, expanding {', '.join(pieces)}" if pieces else source
