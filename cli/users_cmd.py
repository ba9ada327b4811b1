"""`dbtool users ...`: Typer wiring for user management.

Passwords never come from a plain option (shell history, process lists): a hidden prompt
on a terminal, the first line of stdin with --password-stdin, or DBTOOL_USER_PASSWORD.
"""

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.command import Command, confirm_yes
from cli.errors import DbtoolError, RefusedError, UsageError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from cli.models import User

users_app = typer.Typer(
    help="Manage the users table: add, list, show, update, delete, passwords.",
    no_args_is_help=True,
)

PASSWORD_ENV = "DBTOOL_USER_PASSWORD"
PROMPT_ATTEMPTS = 3

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout.", show_default=False)
]
IdentArgument = Annotated[
    str, typer.Argument(metavar="IDENT", help="The user's email, username or id.")
]
PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input.",
        show_default=False,
    ),
]


class PasswordMismatchError(DbtoolError):
    """Three prompts in a row did not produce a usable password."""


def _read_stdin_line() -> str:
    line = sys.stdin.readline()
    if not line:
        raise UsageError("--password-stdin: standard input is empty")
    return line.removesuffix("\n").removesuffix("\r")


def read_new_password(password_stdin: bool, check: Callable[[str], str | None]) -> str:
    """A new password from stdin, the environment or a confirmed hidden prompt.

    `check` returns why a password is unacceptable (or None); at the prompt the user gets
    another try, elsewhere the caller's policy check rejects it.
    """
    if password_stdin:
        return _read_stdin_line()
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    _require_terminal()
    from cli import output

    for _ in range(PROMPT_ATTEMPTS):
        first = _prompt_hidden("Password")
        problem = check(first)
        if problem is not None:
            output.error(problem)
            continue
        if _prompt_hidden("Password (again)") == first:
            return first
        output.error("the passwords do not match")
    raise PasswordMismatchError(f"no password set after {PROMPT_ATTEMPTS} attempts")


def read_password(password_stdin: bool) -> str:
    """A password to check: from stdin or one hidden prompt."""
    if password_stdin:
        return _read_stdin_line()
    _require_terminal()
    return _prompt_hidden("Password")


def _require_terminal() -> None:
    from cli import output

    if not output.stdin_is_terminal():
        raise UsageError(
            f"no password given and no terminal to ask on: use --password-stdin "
            f"or set {PASSWORD_ENV}"
        )


def _prompt_hidden(text: str) -> str:
    from cli.errors import CancelledError

    try:
        return str(typer.prompt(text, hide_input=True, err=True))
    except (typer.Abort, EOFError, KeyboardInterrupt):
        raise CancelledError("cancelled, nothing was changed") from None


def _render_user(user: "User", as_json: bool, extra: dict[str, Any] | None = None) -> None:
    from cli import output
    from cli.users import public_fields

    fields = public_fields(user)
    if as_json:
        output.print_json({**fields, **(extra or {})})
    else:
        output.print_table(("Field", "Value"), fields.items())


def _describe(user: "User") -> str:
    roles = [
        role
        for role, present in (("superuser", user.is_superuser), ("inactive", not user.is_active))
        if present
    ]
    suffix = f", {', '.join(roles)}" if roles else ""
    return f"{user.email} (username {user.username}{suffix})"


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The new user's email address.")],
    username: Annotated[
        str | None,
        typer.Option(
            "--username",
            metavar="NAME",
            help="Username (default: the email's local part).",
            show_default=False,
        ),
    ] = None,
    superuser: Annotated[
        bool, typer.Option("--superuser", help="Make the user a superuser.", show_default=False)
    ] = False,
    inactive: Annotated[
        bool,
        typer.Option("--inactive", help="Create the user deactivated.", show_default=False),
    ] = False,
    if_not_exists: Annotated[
        bool,
        typer.Option(
            "--if-not-exists",
            help="Succeed without changes when a user with this email exists.",
            show_default=False,
        ),
    ] = False,
    password_stdin: PasswordStdinOption = False,
    as_json: JsonOption = False,
) -> None:
    """Create a user. The password comes from a hidden prompt, --password-stdin or
    DBTOOL_USER_PASSWORD.

    CI bootstrap: dbtool users add admin@example.com --superuser --if-not-exists
    --password-stdin <<< "$ADMIN_PASSWORD"
    """
    from cli import output, passwords, users
    from cli.errors import ConflictError
    from cli.validation import normalize_email, normalize_username, username_from_email

    with Command(ctx) as cmd:
        # Validate what needs no database first, so a typo costs no prompt or connection.
        normalised = normalize_email(email)
        name = normalize_username(username) if username else username_from_email(normalised)
        min_length = cmd.settings.password_min_length

        def policy(candidate: str) -> str | None:
            return passwords.policy_violation(
                candidate, min_length=min_length, email=normalised, username=name
            )

        password = read_new_password(password_stdin, policy)

        async def add(session: "AsyncSession") -> "tuple[User, bool]":
            try:
                user = await users.add_user(
                    session,
                    email=normalised,
                    username=name,
                    password=password,
                    is_superuser=superuser,
                    is_active=not inactive,
                    min_password_length=min_length,
                )
                return user, True
            except ConflictError:
                existing = await users.find_user(session, normalised)
                if if_not_exists and existing is not None:
                    return existing, False
                raise

        user, created = cmd.in_session(add)

    if as_json:
        _render_user(user, True, {"created": created})
    elif created:
        output.success(f"Created user {_describe(user)}")
    else:
        output.success(f"User {user.email} already exists, unchanged")


@users_app.command("list")
def users_list(
    ctx: typer.Context,
    active: Annotated[
        bool | None,
        typer.Option(
            "--active/--inactive",
            help="Only active, or only inactive, users.",
            show_default=False,
        ),
    ] = None,
    superuser: Annotated[
        bool, typer.Option("--superuser", help="Only superusers.", show_default=False)
    ] = False,
    search: Annotated[
        str | None,
        typer.Option(
            "--search",
            metavar="TEXT",
            help="Only users whose email or username contains TEXT (any case).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many users.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many users.")] = 0,
    as_json: JsonOption = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Print CSV on stdout.", show_default=False)
    ] = False,
) -> None:
    """List users, oldest first (a table; --json or --csv for scripts)."""
    from cli import output, users
    from cli.models import PUBLIC_USER_FIELDS

    selection = users.UserFilter(active=active, superuser=superuser or None, search=search)
    with Command(ctx) as cmd:
        if as_json and as_csv:
            raise UsageError("choose one of --json and --csv")
        found = cmd.in_session(
            lambda session: users.list_users(session, selection, limit=limit, offset=offset)
        )
    rows = [[getattr(user, name) for name in PUBLIC_USER_FIELDS] for user in found]
    if as_json:
        output.print_json([users.public_fields(user) for user in found])
    elif as_csv:
        output.print_csv(PUBLIC_USER_FIELDS, rows)
    else:
        output.print_table(PUBLIC_USER_FIELDS, rows)
        output.note(f"{len(found)} user(s)")


@users_app.command("show")
def users_show(ctx: typer.Context, ident: IdentArgument, as_json: JsonOption = False) -> None:
    """Show one user."""
    from cli import users

    with Command(ctx) as cmd:
        user = cmd.in_session(lambda session: users.get_user(session, ident))
    _render_user(user, as_json)


@users_app.command("set-password")
def users_set_password(
    ctx: typer.Context, ident: IdentArgument, password_stdin: PasswordStdinOption = False
) -> None:
    """Set a user's password (same sources and policy as `users add`)."""
    from cli import output, passwords, users

    with Command(ctx) as cmd:
        min_length = cmd.settings.password_min_length
        # An unknown user fails before any prompt.
        user = cmd.in_session(lambda session: users.get_user(session, ident))

        def policy(candidate: str) -> str | None:
            return passwords.policy_violation(
                candidate, min_length=min_length, email=user.email, username=user.username
            )

        password = read_new_password(password_stdin, policy)
        user = cmd.in_session(
            lambda session: users.set_password(
                session, str(user.id), password, min_password_length=min_length
            )
        )
    output.success(f"Password changed for {user.email}")


@users_app.command("check-password")
def users_check_password(
    ctx: typer.Context, ident: IdentArgument, password_stdin: PasswordStdinOption = False
) -> None:
    """Check a password against the stored hash: exit 0 when it matches, 1 when not."""
    from cli import output, users

    with Command(ctx) as cmd:
        user = cmd.in_session(lambda session: users.get_user(session, ident))
        password = read_password(password_stdin)
        user, matches = cmd.in_session(
            lambda session: users.check_password(session, str(user.id), password)
        )
    if not user.is_active:
        output.warning(f"{user.email} is inactive")
    if not matches:
        output.error(f"the password does not match for {user.email}")
        raise typer.Exit(1)
    output.success(f"The password matches for {user.email}")


@users_app.command("update")
def users_update(
    ctx: typer.Context,
    ident: IdentArgument,
    email: Annotated[
        str | None,
        typer.Option("--email", metavar="EMAIL", help="New email.", show_default=False),
    ] = None,
    username: Annotated[
        str | None,
        typer.Option("--username", metavar="NAME", help="New username.", show_default=False),
    ] = None,
    active: Annotated[
        bool | None,
        typer.Option("--active/--inactive", help="Activate or deactivate.", show_default=False),
    ] = None,
    superuser: Annotated[
        bool | None,
        typer.Option(
            "--superuser/--no-superuser",
            help="Grant or revoke superuser.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a user's email, username, active or superuser flag."""
    from cli import output, users

    with Command(ctx) as cmd:
        user, changed = cmd.in_session(
            lambda session: users.update_user(
                session,
                ident,
                email=email,
                username=username,
                is_active=active,
                is_superuser=superuser,
            )
        )
    if as_json:
        _render_user(user, True, {"changed": changed})
    elif changed:
        output.success(f"Updated {_describe(user)}")
    else:
        output.note(f"No changes: {_describe(user)} already has these values")


@users_app.command("delete")
def users_delete(
    ctx: typer.Context,
    ident: IdentArgument,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.", show_default=False)
    ] = False,
) -> None:
    """Delete a user (asks first on a terminal; --yes without one)."""
    from cli import output, users

    with Command(ctx) as cmd:
        user = cmd.in_session(lambda session: users.get_user(session, ident))
        if not yes:
            if not output.stdin_is_terminal():
                raise RefusedError("not confirmed: pass --yes to delete without a terminal")
            confirm_yes(f"Delete user {_describe(user)}?")
        cmd.in_session(lambda session: users.delete_user(session, str(user.id)))
    output.success(f"Deleted user {_describe(user)}")
