"""Two tables that reference each other (a team's captain is a person of a team): no
order loads them one at a time."""

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Team(Base):
    __tablename__ = "team"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    captain_id: Mapped[int | None] = mapped_column(
        ForeignKey("person.id", use_alter=True, name="team_captain")
    )


class Person(Base):
    __tablename__ = "person"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id"))


class DeferrableBase(DeclarativeBase):
    """The same cycle with DEFERRABLE foreign keys: where the database lets them wait for
    the commit (PostgreSQL), a load inserts the tables one after the other."""


class Club(DeferrableBase):
    __tablename__ = "club"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    captain_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", use_alter=True, name="club_captain", deferrable=True)
    )


class Member(DeferrableBase):
    __tablename__ = "member"

    id: Mapped[int] = mapped_column(primary_key=True)
    club_id: Mapped[int | None] = mapped_column(ForeignKey("club.id", deferrable=True))
