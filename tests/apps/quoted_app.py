"""A user table whose names need quoting: a mixed-case table with a space in its schema
(PostgreSQL; SQLite has no schemas), mixed-case columns and a serial integer id. Every
statement dbtool writes, COPY included, must quote them."""

import os

from sqlalchemy import Boolean, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = os.environ.get("QUOTED_APP_SCHEMA") or None


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


class AppUser(Base):
    __tablename__ = "AppUser"

    id: Mapped[int] = mapped_column("ID", Integer, primary_key=True)
    email: Mapped[str] = mapped_column("Email", String(320), unique=True)
    hashed_password: Mapped[str] = mapped_column("PasswordHash", String(1024))
    is_active: Mapped[bool] = mapped_column("IsActive", Boolean, default=True)
