"""Where an import's columns come from: --map, --ignore-extra and the --from presets.

An input record (a CSV row, or a JSON object, possibly nested) becomes a record keyed by the
user model's import columns. Without any of these options the file's names must be those
columns, and nothing here runs. A preset knows one system's export, field by field (the
README's "Bring users from Django, Auth0 or Firebase" lists them), in terms of roles (email,
password hash, active, ...), so it lands in whatever columns the configured user model has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dbtool.errors import UsageError
from dbtool.formats import UNUSABLE, Format, Source
from dbtool.models.user_model import UserModel, parse_flag, python_type
from dbtool.transfer.readers import ERROR_KEY, describe_names
from dbtool.users.legacy_hashes import FirebaseHashConfig

MISSING: Any = object()
# Preset roles that are not columns, and the role each one feeds.
FEEDS = {"salt": "password", "blocked": "active", "disabled": "active"}
IGNORED_SHOWN = 30  # ignored names remembered for the report


def lookup(record: dict[str, Any], path: str) -> Any:
    """`record[path]`, or the value at a dotted path (`_id.$oid`); MISSING if absent."""
    if path in record:
        return record[path]
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def _present(value: Any) -> bool:
    return value is not MISSING and value is not None and value != ""


# --- the presets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """One system's export. `fields`: role -> the paths that may hold it, first present
    wins; roles beyond the user model's (Firebase's salt, Auth0's blocked) are for
    `adjust`, which turns the found values into the model's (row problems: ValueError)."""

    source: Source
    fields: dict[str, tuple[str, ...]]
    id_type: type  # the type of the export's ids: kept when the model's id takes them
    adjust: Callable[[dict[str, Any], Preset, FirebaseHashConfig | None], None]
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    default_format: Format | None = None
    assume_utc: bool = False


def _no_password(found: dict[str, Any]) -> None:
    if not _present(found.get("password")):
        found["password"] = UNUSABLE  # an account that cannot log in until set-password


def _invert(found: dict[str, Any], source: str, role: str) -> None:
    value = found.pop(source, MISSING)
    if _present(value):
        flag = value if isinstance(value, bool) else parse_flag(str(value))
        found[role] = not flag


def _adjust_django(found: dict[str, Any], preset: Preset, _: FirebaseHashConfig | None) -> None:
    _no_password(found)  # "!..." (Django's unusable passwords) is stored as it is


def _flatten_dumpdata(record: dict[str, Any]) -> dict[str, Any]:
    """`manage.py dumpdata auth.user` writes {"model", "pk", "fields": {...}}."""
    fields = record.get("fields")
    if isinstance(fields, dict) and "model" in record:
        return {"id": record.get("pk"), **fields}
    return record


def _adjust_auth0(found: dict[str, Any], preset: Preset, _: FirebaseHashConfig | None) -> None:
    _no_password(found)
    _invert(found, "blocked", "active")


def _adjust_firebase(
    found: dict[str, Any], preset: Preset, config: FirebaseHashConfig | None
) -> None:
    password_hash, salt = found.pop("password", MISSING), found.pop("salt", MISSING)
    if _present(password_hash):
        if config is None:
            raise UsageError(
                "Firebase password hashes need the project's hash parameters: pass "
                "--firebase-hash-config FILE (Firebase console: Authentication > Users > ⋮ > "
                "Password hash parameters)"
            )
        found["password"] = config.stored_hash(str(password_hash), str(salt or ""))
    _no_password(found)
    _invert(found, "disabled", "active")
    created = found.get("created")
    if _present(created):  # milliseconds since the epoch, as text or a number
        text = str(created).strip()
        if not text.isdigit() or len(text) > 15:
            raise ValueError("createdAt is not a time in milliseconds")
        found["created"] = datetime.fromtimestamp(int(text) / 1000, UTC).isoformat()


PRESETS = {
    Source.DJANGO: Preset(
        Source.DJANGO,
        {
            "id": ("id", "pk"),
            "email": ("email",),
            "username": ("username",),
            "password": ("password",),
            "active": ("is_active",),
            "superuser": ("is_superuser",),
            "created": ("date_joined",),
        },
        int,
        _adjust_django,
        prepare=_flatten_dumpdata,
        assume_utc=True,  # Django (USE_TZ=True, the default) stores UTC, naive in SQLite
    ),
    Source.AUTH0: Preset(
        Source.AUTH0,
        {
            "id": ("_id.$oid", "user_id"),
            "email": ("email",),
            "username": ("username",),
            "verified": ("email_verified",),
            "password": ("passwordHash",),
            "created": ("created_at", "created_at.$date", "password_set_date.$date"),
            "updated": ("updated_at", "updated_at.$date"),
            "blocked": ("blocked",),
        },
        str,
        _adjust_auth0,
        default_format=Format.JSON,
    ),
    Source.FIREBASE: Preset(
        Source.FIREBASE,
        {
            "id": ("localId",),
            "email": ("email",),
            "verified": ("emailVerified",),
            "password": ("passwordHash",),
            "salt": ("salt",),
            "disabled": ("disabled",),
            "created": ("createdAt",),
        },
        str,
        _adjust_firebase,
        default_format=Format.JSON,
    ),
}


# --- the field map ----------------------------------------------------------------------------


def parse_maps(items: Iterable[str]) -> list[tuple[str, str]]:
    """`--map SOURCE=TARGET` options as (source, target) pairs."""
    pairs = []
    for item in items:
        source, separator, target = item.rpartition("=")
        if not separator or not source.strip() or not target.strip():
            raise UsageError(f"--map {item!r}: expected SOURCE=COLUMN, e.g. --map mail=email")
        pairs.append((source.strip(), target.strip()))
    return pairs


@dataclass
class FieldMap:
    """Turns input records into records of the import columns (`columns`)."""

    model: UserModel
    columns: tuple[str, ...]
    preset: Preset | None = None
    maps: list[tuple[str, str]] = field(default_factory=list)
    ignore_extra: bool = False
    firebase: FirebaseHashConfig | None = None
    ignored: set[str] = field(default_factory=set)  # extra names seen (up to IGNORED_SHOWN)
    notes: list[str] = field(default_factory=list)  # what the user should know before
    # Rows the preset gave an unusable password, having none in the file (reported after).
    without_password: int = 0

    def __post_init__(self) -> None:
        targets = [target for _, target in self.maps]
        for source, target in self.maps:
            if target not in self.columns:
                raise UsageError(
                    f"--map {source}={target}: {target} is not an import column of "
                    f"{self.model.name} (columns: {', '.join(self.columns)})"
                )
        repeated = sorted({target for target in targets if targets.count(target) > 1})
        if repeated:
            raise UsageError(f"--map gives {', '.join(repeated)} more than once")
        self.role_columns = {role: column.name for role, column in self.model.roles()}
        self.role_columns["id"] = self.model.id.name
        if self.preset is not None and not self._keeps_ids():
            del self.role_columns["id"]
            self.notes.append(
                f"the export's ids are not kept: {self.model.name}.{self.model.id.name} "
                f"holds {python_type(self.model.id).__name__} values, so new ids are made"
            )
        # Top-level names the map reads (anything else is an extra column), and of those,
        # the ones a preset reads for a role this model does not have (reported as ignored).
        paths = [source for source, _ in self.maps]
        unused: list[str] = []
        if self.preset is not None:
            for role, role_paths in self.preset.fields.items():
                paths += role_paths
                if FEEDS.get(role, role) not in self.role_columns:
                    unused += role_paths
        self.consumed = {*paths, *(path.split(".")[0] for path in paths)}
        self.unused = {path.split(".")[0] for path in unused} - {
            source.split(".")[0] for source, _ in self.maps
        }
        self.identity = [name for name in self.columns if name not in set(targets)]
        self.email_sources = [source for source, target in self.maps if target == "email"]

    def _keeps_ids(self) -> bool:
        assert self.preset is not None
        kind = python_type(self.model.id)
        return issubclass(kind, str) or (
            issubclass(kind, int) and issubclass(self.preset.id_type, int)
        )

    @property
    def skips_extra(self) -> bool:
        return self.ignore_extra or self.preset is not None

    def check_names(self, names: list[str], *, where: str, is_header: bool) -> None:
        """Extra names are a UsageError (exit 2) unless they are to be ignored."""
        extra = [
            name
            for name in names
            if name in self.unused or (name not in self.consumed and name not in self.identity)
        ]
        if not extra:
            return
        if not self.skips_extra:
            allowed = sorted({*self.identity, *(source for source, _ in self.maps)})
            raise UsageError(
                f"unknown column(s) in {where}: {describe_names(extra)} (allowed: "
                f"{', '.join(allowed)}; map others with --map SOURCE=COLUMN, or drop them "
                "with --ignore-extra)"
            )
        for name in extra:
            if len(self.ignored) >= IGNORED_SHOWN:
                break
            self.ignored.add(name)

    def has_email(self, header: list[str]) -> bool:
        email = self.model.email.name
        sources = [*self.email_sources]
        if self.preset is not None and "email" in self.role_columns:
            sources += self.preset.fields["email"]
        if email in self.identity:
            sources.append(email)
        return any(source in header or source.split(".")[0] in header for source in sources)

    def prepare(self, record: dict[str, Any]) -> dict[str, Any]:
        if self.preset is not None and self.preset.prepare is not None:
            return self.preset.prepare(record)
        return record

    def apply(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record keyed by import columns; a record holding only ERROR_KEY when one of
        its values cannot be converted (a row error, like any other)."""
        out: dict[str, Any] = {}
        preset = self.preset
        if preset is not None:
            found: dict[str, Any] = {}
            for role, paths in preset.fields.items():
                for path in paths:
                    value = lookup(record, path)
                    if _present(value):
                        found[role] = value
                        break
                else:
                    # The system's own field is absent, the model's column is there (a
                    # dbtool export read with --from django, say): the file's value is
                    # taken, never dropped for the preset's default.
                    own = self.role_columns.get(role)
                    if own is not None and _present(record.get(own)):
                        found[role] = record[own]
            given_password = _present(found.get("password"))
            try:
                preset.adjust(found, preset, self.firebase)
            except ValueError as exc:
                return {ERROR_KEY: str(exc)}
            if not given_password and found.get("password") == UNUSABLE:
                self.without_password += 1
            for role, value in found.items():
                column = self.role_columns.get(role)
                if column is not None:
                    out[column] = value
        for name in self.identity:
            if name in record and name not in self.consumed and name not in out:
                out[name] = record[name]
        for source, target in self.maps:
            value = lookup(record, source)
            if value is not MISSING:
                out[target] = value
        return out
