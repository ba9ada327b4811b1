"""`dbtool check`: where the database and the models disagree, in plain words.

Alembic's `compare_metadata` (the engine behind `alembic revision --autogenerate`) finds the
differences; this module only names them. Alembic is imported on use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dbtool.db import Database
from dbtool.schema.tables import created_here, find_version_table

# The kinds of schema item a models' ddl_if() can keep from being created.
_CONDITIONAL = ("index", "unique_constraint", "foreign_key_constraint")


@dataclass(frozen=True)
class Difference:
    """One disagreement. `kind` is one of KINDS; `table` and `name` say where."""

    kind: str
    table: str
    name: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


KINDS = (
    "missing_table",
    "extra_table",
    "missing_column",
    "extra_column",
    "missing_index",
    "extra_index",
    "missing_unique",
    "extra_unique",
    "missing_foreign_key",
    "extra_foreign_key",
    "type",
    "nullable",
    "server_default",
    "comment",
)
IN_MODELS = "is in the models but not in the database"
IN_DATABASE = "is in the database but not in the models"


# What `dbtool init` adds to a database: tables, and the indexes existing tables lack. It
# never alters or removes anything that exists.
INIT_MAKES = ("missing_table", "missing_index")


def remedy(found: list[Difference], *, migrations_pending: bool) -> str:
    """What to do about `found`, in words: `dbtool init` only where it can do it all."""
    if all(difference.kind in INIT_MAKES for difference in found):
        return "run `dbtool init`"
    if migrations_pending:
        return "run `dbtool init` to migrate, then create a migration for what remains"
    return (
        "create a migration (alembic revision --autogenerate): `dbtool init` only adds "
        "missing tables and indexes, it never changes existing ones"
    )


def _columns(constraint: Any) -> str:
    return ", ".join(column.name for column in constraint.columns)


def _describe(diff: Any, dialect: Any) -> Difference:
    """A Difference for one of compare_metadata's tuples."""
    op = diff[0]
    if op in ("add_table", "remove_table"):
        table = diff[1]
        missing = op == "add_table"
        return Difference(
            "missing_table" if missing else "extra_table",
            table.fullname,
            None,
            f"table {table.fullname} {IN_MODELS if missing else IN_DATABASE}",
        )
    if op in ("add_column", "remove_column"):
        _, schema, table, column = diff
        missing = op == "add_column"
        where = f"{schema}.{table}" if schema else table
        return Difference(
            "missing_column" if missing else "extra_column",
            where,
            column.name,
            f"column {where}.{column.name} {IN_MODELS if missing else IN_DATABASE}",
        )
    if op in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        item = diff[1]
        missing = op.startswith("add")
        what, kind = ("index", "index") if op.endswith("index") else ("unique constraint", "unique")
        table = item.table.fullname
        return Difference(
            f"{'missing' if missing else 'extra'}_{kind}",
            table,
            item.name,
            f"{what} {item.name or ''} on {table} ({_columns(item)}) "
            f"{IN_MODELS if missing else IN_DATABASE}".replace("  ", " "),
        )
    if op in ("add_fk", "remove_fk"):
        key = diff[1]
        missing = op == "add_fk"
        table = key.parent.fullname
        target = key.referred_table.fullname
        return Difference(
            f"{'missing' if missing else 'extra'}_foreign_key",
            table,
            key.name,
            f"foreign key {table} ({_columns(key)}) -> {target} "
            f"{IN_MODELS if missing else IN_DATABASE}",
        )
    # ("modify_type" | "modify_nullable" | "modify_default" | "modify_comment",
    #  schema, table, column, existing_kw, in the database, in the models)
    _, schema, table, column, _kw, existing, wanted = diff
    where = f"{schema}.{table}" if schema else table
    if op == "modify_type":
        before, after = existing.compile(dialect=dialect), wanted.compile(dialect=dialect)
        detail = f"type {before} in the database, {after} in the models"
        kind = "type"
    elif op == "modify_nullable":
        words = {True: "NULL allowed", False: "NOT NULL"}
        detail = f"{words[bool(existing)]} in the database, {words[bool(wanted)]} in the models"
        kind = "nullable"
    elif op == "modify_default":
        detail = (
            f"server default {_default(existing)} in the database, {_default(wanted)} in the models"
        )
        kind = "server_default"
    else:
        detail = f"comment {existing!r} in the database, {wanted!r} in the models"
        kind = "comment"
    return Difference(kind, where, column, f"column {where}.{column}: {detail}")


def _default(value: Any) -> str:
    if value is None:
        return "none"
    text = getattr(value, "arg", value)
    return repr(str(getattr(text, "text", text)))


async def differences(db: Database) -> list[Difference]:
    """Every difference between the configured models and the database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    metadata = db.models.metadata
    # The schemas the models use (None: the default one), and only those: without
    # include_schemas a table of another schema would always look missing.
    schemas = {table.schema for table in metadata.tables.values()} | {None}

    def in_models_schemas(name: str | None, kind: str, _parents: Any) -> bool:
        return kind != "schema" or name in schemas

    def compare(sync: Any) -> list[Difference]:
        def made_here(item: Any, _name: Any, kind: str, reflected: bool, _other: Any) -> bool:
            # An index or constraint of the models this dialect does not create (ddl_if) is
            # not missing; the database's own are compared as they are.
            return reflected or kind not in _CONDITIONAL or created_here(item, sync)

        version = find_version_table(sync, db.models, db.settings.alembic_version_table)
        opts = {"compare_type": True, "compare_server_default": True, "include_schemas": True,
                "include_name": in_models_schemas, "include_object": made_here,
                **version.alembic_opts()}  # fmt: skip
        context = MigrationContext.configure(sync, opts=opts)
        found: list[Difference] = []
        for diff in compare_metadata(context, metadata):
            # Column changes come as a list of tuples, the rest one tuple each.
            for item in diff if isinstance(diff, list) else [diff]:
                found.append(_describe(item, sync.dialect))
        return found

    async with db.reading() as conn:
        return await conn.run_sync(compare)
