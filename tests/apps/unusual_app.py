"""Models dbtool cannot guess alone: two tables that look like user tables, and columns
named unconventionally (DBTOOL_USER_MODEL and DBTOOL_USER_FIELDS say which is which)."""

import uuid

from sqlalchemy import Column, Integer, MetaData, String, Table, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Member(Base):
    __tablename__ = "members"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    secret: Mapped[str] = mapped_column("pw_digest", String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    handle: Mapped[str] = mapped_column(String(150), unique=True)


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    hashed_password: Mapped[str] = mapped_column(String(255))


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(100))


# A MetaData with no user table at all: init works, the users commands say what to set.
catalog = MetaData()
products = Table("products", catalog, Column("id", Integer, primary_key=True), Column("name", Text))
