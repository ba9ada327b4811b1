"""Models across PostgreSQL schemas, with a mixed-case table name: what `info`, `init` and
`drop` must find exactly where the models put it (and nowhere else)."""

from sqlalchemy import Column, Integer, MetaData, String, Table

metadata = MetaData()

Table("things", metadata, Column("id", Integer, primary_key=True), Column("name", String(50)))
Table(
    "entries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("note", String(200)),
    schema="audit",
)
Table("MixedCase", metadata, Column("id", Integer, primary_key=True))
