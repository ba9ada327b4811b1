"""Indexes built after the load: an import into an empty table drops the table's secondary
indexes and unique constraints, loads, and creates them again, as pg_restore does.

Maintaining a B-tree row by row is most of the server's work in a bulk load (a million
users: about 8.9 s with the indexes in place, 2.7 s without them plus 1.8 s to build them).

Why no one sees the table without its indexes: everything happens inside the import's one
transaction, after `LOCK TABLE ... IN ACCESS EXCLUSIVE MODE NOWAIT` (taken only if no other
session holds any lock on the table, else the normal path), which every other session's
read or write of the table waits for until the commit; and DROP and CREATE are
transactional: a rollback, a lost connection or Ctrl-C leaves the table as it was.

Kept in place (maintained row by row): the primary key, and any index that something else
needs or that its definition does not carry whole: one a foreign key references, one the
table is clustered on or whose rows identify replicas, an index with a comment, in another
tablespace, not valid, or backing an exclusion constraint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from dbtool.backends.base import IndexConflictError, IndexRebuildError

# The table's indexes, each as (name as SQL, name, CREATE INDEX, constraint, its definition).
_INDEXES = """
SELECT i.indexrelid::regclass::text, c.relname, pg_get_indexdef(i.indexrelid),
    con.conname, pg_get_constraintdef(con.oid)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
    AND con.contype IN ('p', 'u', 'x')
WHERE i.indrelid = $1::regclass
"""
_DROPPABLE = (
    _INDEXES
    + """
  AND (SELECT relkind FROM pg_class WHERE oid = $1::regclass) = 'r'
  AND i.indisvalid AND i.indisready AND i.indislive
  AND NOT i.indisclustered AND NOT i.indisreplident
  AND c.reltablespace = 0
  AND obj_description(i.indexrelid, 'pg_class') IS NULL
  AND (con.oid IS NULL OR (con.contype IN ('p', 'u')
       AND obj_description(con.oid, 'pg_constraint') IS NULL))
  AND NOT EXISTS (
      SELECT FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = i.indexrelid)
  AND NOT EXISTS (
      SELECT FROM pg_depend d WHERE d.refobjid = i.indexrelid AND d.deptype = 'n')
ORDER BY c.relname
"""
)
_OWNED = "SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = $1::regclass"
_DEFINITIONS = _INDEXES + " AND c.relname = ANY($2::text[]) ORDER BY c.relname"


@dataclass(frozen=True)
class _Index:
    reference: str  # its name as SQL, schema-qualified where the search path needs it
    name: str
    definition: str  # CREATE [UNIQUE] INDEX ...
    constraint: str | None  # the unique constraint it backs
    constraint_definition: str | None  # UNIQUE (email) ...


class DroppedIndexes:
    """The indexes dropped for the load, built again by `rebuild`."""

    def __init__(self, raw: Any, quoted: str, indexes: list[_Index]) -> None:
        self.raw, self.quoted, self.indexes = raw, quoted, indexes

    @property
    def count(self) -> int:
        return len(self.indexes)

    async def rebuild(self) -> None:
        """Build each index again, then check it against what it was."""
        from asyncpg.exceptions import UniqueViolationError

        raw, quoted = self.raw, self.quoted
        try:
            for index in self.indexes:
                if index.constraint is not None:
                    await raw.execute(
                        f"ALTER TABLE {quoted} ADD CONSTRAINT {_name(index.constraint)} "
                        f"{index.constraint_definition}"
                    )
                else:
                    await raw.execute(index.definition)
        except UniqueViolationError as exc:
            raise IndexConflictError(f"a unique index could not be built again: {exc}") from None
        names = [index.name for index in self.indexes]
        rebuilt = [_Index(*row) for row in await raw.fetch(_DEFINITIONS, quoted, names)]
        if rebuilt != self.indexes:
            raise IndexRebuildError(
                "the table's indexes did not come back as they were after the load; "
                "nothing was imported"
            )


async def drop_indexes_for_load(
    conn: AsyncConnection, table: Table, quoted: str
) -> DroppedIndexes | None:
    """Inside the import's transaction: where `table` is empty and no other session uses it,
    its droppable indexes dropped (None where it is not, or there are none). Nothing is
    built again if the transaction ends otherwise than by `rebuild`: its rollback brings
    them back."""
    from asyncpg.exceptions import InsufficientPrivilegeError, LockNotAvailableError

    raw: Any = (await conn.get_raw_connection()).driver_connection
    if await raw.fetchval(f"SELECT EXISTS (SELECT FROM {quoted})"):
        return None
    if not await raw.fetchval(_OWNED, quoted):
        return None  # only its owner may drop its indexes: the normal path
    await raw.execute("SAVEPOINT dbtool_lock")
    try:
        await raw.execute(f"LOCK TABLE {quoted} IN ACCESS EXCLUSIVE MODE NOWAIT")
    except (LockNotAvailableError, InsufficientPrivilegeError):  # in use: the normal path
        await raw.execute("ROLLBACK TO SAVEPOINT dbtool_lock")
        return None
    await raw.execute("RELEASE SAVEPOINT dbtool_lock")
    if await raw.fetchval(f"SELECT EXISTS (SELECT FROM {quoted})"):  # filled meanwhile
        return None
    indexes = [_Index(*row) for row in await raw.fetch(_DROPPABLE, quoted)]
    for index in indexes:
        if index.constraint is not None:
            await raw.execute(f"ALTER TABLE {quoted} DROP CONSTRAINT {_name(index.constraint)}")
        else:
            await raw.execute(f"DROP INDEX {index.reference}")
    return DroppedIndexes(raw, quoted, indexes) if indexes else None


def _name(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
