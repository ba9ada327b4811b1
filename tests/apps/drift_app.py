"""Models with one of everything `dbtool check` compares: tables, columns, an index, a named
unique constraint, a NOT NULL column, a server default and a foreign key."""

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "things"
    __table_args__ = (
        UniqueConstraint("code", name="uq_things_code"),
        Index("ix_things_name", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    code: Mapped[str] = mapped_column(String(10))
    label: Mapped[str] = mapped_column(String(30))
    score: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), server_default="new")


class Other(Base):
    __tablename__ = "others"

    id: Mapped[int] = mapped_column(primary_key=True)
    thing_id: Mapped[int | None] = mapped_column(ForeignKey("things.id"))
