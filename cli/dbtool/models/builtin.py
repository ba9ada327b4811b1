"""The tool's tables, as typed SQLAlchemy 2 declarative models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Index, MetaData, String, Uuid
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Explicit constraint names, so a unique violation can be told apart on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}

EMAIL_MAX_LENGTH = 320
USERNAME_MAX_LENGTH = 150  # as Django's
HASH_MAX_LENGTH = 255


# Timestamps with their zone; MySQL's DATETIME has none (dbtool stores UTC there) and
# keeps no fraction of a second unless told to: microseconds, as the other databases keep.
TIMESTAMP = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def utcnow() -> datetime:
    """Evaluated per row (passed as a callable), never once at import time."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"
    # The list order (oldest first), so that `users list`, its pages and exports read an
    # index instead of sorting the whole table.
    __table_args__ = (Index("ix_users_created_at_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # Stored normalised and lower case, so uniqueness is case-insensitive.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), unique=True)
    hashed_password: Mapped[str] = mapped_column(String(HASH_MAX_LENGTH))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    # Plain types only, so that Alembic's autogenerate renders them without extra imports.
    # Timestamps are UTC: dbtool writes UTC, and marks SQLite's zone-less values as UTC when
    # it reads them (dbtool.models.user_model.UserModel.as_read).
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TIMESTAMP, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:  # never shows the hash
        return f"User(id={self.id!s}, email={self.email!r}, username={self.username!r})"
