"""`dbtool users ...`: Typer wiring for user management.

Passwords never come from a plain option (shell history, process lists): a hidden prompt
on a terminal, the first line of stdin with --password-stdin, or DBTOOL_USER_PASSWORD.
"""

import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from dbtool.commands.options import (
    MAX_COUNT,
    TEXT,
    JsonOption,
    flag,
    register,
    whole_number,
)
from dbtool.commands.runtime import Command, confirm_yes
from dbtool.errors import DbtoolError, FileError, RefusedError, UsageError
from dbtool.formats import Format, OnConflict, Source

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from dbtool.models.user_model import UserModel
    from dbtool.transfer.importing import ImportReport
    from dbtool.transfer.mapping import FieldMap
    from dbtool.users.service import UserRecord

users_app = typer.Typer(
    name="users",
    help="Manage users: add, list, show, update, delete, set-password, check-password, "
    "import, export.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    add_completion=False,  # completion is installed from the root command
)

PASSWORD_ENV = "DBTOOL_USER_PASSWORD"


def users_command(name: str, *example_lines: str) -> Callable[[Callable[..., Any]], Any]:
    return register(users_app, name, *example_lines)


PROMPT_ATTEMPTS = 3

IdentArgument = Annotated[
    str, typer.Argument(metavar="IDENT", click_type=TEXT, help="The user's email, username or id.")
]
PasswordStdinOption = Annotated[
    bool,
    flag("--password-stdin", help="Read the password from the first line of standard input."),
]

ActiveOption = Annotated[bool, flag("--active", help="Only active users.")]
InactiveOption = Annotated[bool, flag("--inactive", help="Only inactive users.")]
SuperuserFilterOption = Annotated[bool, flag("--superuser", help="Only superusers.")]
NoPasswordOption = Annotated[
    bool,
    flag(
        "--no-password",
        help="Only users without a usable password (imported without one: they cannot log "
        "in until set-password).",
    ),
]


def either(yes: bool, no: bool, names: str) -> bool | None:
    """A pair of opposite flags: True, False, or None for neither; both is a usage error
    (rather than the last one silently winning)."""
    if yes and no:
        raise UsageError(f"choose one of {names}")
    return True if yes else False if no else None


SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="COLUMN=VALUE",
        help="Set another column of the user model (repeatable), e.g. --set full_name='Ada "
        "Lovelace'; the value is converted through the column's type.",
        show_default=False,
    ),
]
SearchOption = Annotated[
    str | None,
    typer.Option(
        "--search",
        metavar="TEXT",
        help="Only users whose email or username contains TEXT (any case).",
        show_default=False,
    ),
]


class PasswordMismatchError(DbtoolError):
    """Three prompts in a row did not produce a usable password."""


def _read_stdin_line() -> str:
    try:
        line = sys.stdin.readline()
    except UnicodeDecodeError:
        raise UsageError("--password-stdin: standard input is not valid UTF-8 text") from None
    if not line:
        raise UsageError("--password-stdin: standard input is empty")
    return line.removesuffix("\n").removesuffix("\r")


def read_new_password(
    cmd: Command, password_stdin: bool, check: Callable[[str], str | None]
) -> str:
    """A new password from stdin, the environment or a confirmed hidden prompt.

    `check` returns why a password is unacceptable (or None); at the prompt the user gets
    another try, elsewhere the caller's policy check rejects it.
    """
    given = _given_password(cmd, password_stdin)
    if given is not None:
        return given
    from dbtool.render import console as output

    prompt = f"Password (at least {cmd.settings.password_min_length} characters)"
    for _ in range(PROMPT_ATTEMPTS):
        first = _prompt_hidden(prompt)
        problem = check(first)
        if problem is not None:
            output.error(problem)
            continue
        if _prompt_hidden("Password (again)") == first:
            return first
        output.error("the passwords do not match")
    raise PasswordMismatchError(f"no password set after {PROMPT_ATTEMPTS} attempts")


def read_password(cmd: Command, password_stdin: bool) -> str:
    """A password to check: from stdin, the environment, or one hidden prompt."""
    given = _given_password(cmd, password_stdin)
    return given if given is not None else _prompt_hidden("Password")


def _given_password(cmd: Command, password_stdin: bool) -> str | None:
    """The password from --password-stdin or DBTOOL_USER_PASSWORD; None when it is for the
    prompt to ask (on a terminal), else a usage error saying how to give one."""
    if password_stdin:
        return _read_stdin_line()
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    from dbtool.render import console as output

    if output.stdin_is_terminal():
        return None
    if PASSWORD_ENV in cmd.settings.dotenv_names:
        raise UsageError(
            f"no password given: {PASSWORD_ENV} is in the .env file, but dbtool reads it from "
            "the process environment only (a settings file that sits in the project is no "
            "place for a user's password); export it, or use --password-stdin"
        )
    raise UsageError(
        f"no password given and no terminal to ask on: use --password-stdin or set {PASSWORD_ENV}"
    )


def _prompt_hidden(text: str) -> str:
    from dbtool.errors import CancelledError

    try:
        return str(typer.prompt(text, hide_input=True, err=True))
    except (typer.Abort, EOFError, KeyboardInterrupt):
        raise CancelledError("cancelled, nothing was changed") from None


def _policy(cmd: Command, **identity: str | None) -> Callable[[str], str | None]:
    """The password policy of the command's settings, for checking at the prompt."""
    from dbtool.users import passwords

    settings = cmd.settings

    def problem(candidate: str) -> str | None:
        return passwords.policy_violation(
            candidate,
            min_length=settings.password_min_length,
            scheme=settings.password_hash,
            **identity,
        )

    return problem


def _render_user(user: "UserRecord", as_json: bool, extra: dict[str, Any] | None = None) -> None:
    from dbtool.render import console as output

    fields = user.public()
    if as_json:
        output.print_json({**fields, **(extra or {})})
    else:
        output.print_pairs(fields.items())


def _describe(user: "UserRecord") -> str:
    roles = [
        role
        for role, present in (("superuser", user.is_superuser), ("inactive", not user.is_active))
        if present
    ]
    details = ([f"username {user.username}"] if user.username is not None else []) + roles
    return f"{user.email} ({', '.join(details)})" if details else user.email


def parse_assignments(assignments: list[str] | None) -> dict[str, str]:
    """--set NAME=VALUE pairs; a malformed one is a usage error naming it."""
    values: dict[str, str] = {}
    for assignment in assignments or []:
        name, sep, value = assignment.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set {assignment!r}: expected COLUMN=VALUE")
        values[name.strip()] = value
    return values


def _ask_required(model: "UserModel", given: dict[str, Any]) -> dict[str, Any]:
    """Values for the model's required columns that --set left out: asked on a terminal
    (like Django's REQUIRED_FIELDS), else one error naming them all."""
    from dbtool.errors import InvalidInputError
    from dbtool.models.user_model import convert
    from dbtool.render import console as output
    from dbtool.users.service import missing_required

    missing = missing_required(model, given)
    if not missing:
        return given
    if not output.stdin_is_terminal():
        raise UsageError(
            f"the user model {model.name} requires {', '.join(missing)}: give "
            + " ".join(f"--set {name}=VALUE" for name in missing)
        )
    answers = dict(given)
    for name in missing:
        column = model.table.columns[name]
        for _ in range(PROMPT_ATTEMPTS):
            raw = _prompt(name)
            try:
                answers[name] = convert(column, raw)
                break
            except InvalidInputError as exc:
                output.error(exc.message)
        else:
            raise UsageError(f"no valid value for {name} after {PROMPT_ATTEMPTS} attempts")
    return answers


def _prompt(text: str) -> str:
    from dbtool.errors import CancelledError

    try:
        return str(typer.prompt(text, err=True))
    except (typer.Abort, EOFError, KeyboardInterrupt):
        raise CancelledError("cancelled, nothing was changed") from None


@users_command(
    "add",
    "dbtool users add ada@example.com",
    "dbtool users add admin@example.com --superuser --if-not-exists --password-stdin < pw.txt",
    'dbtool users add grace@example.com --username grace --set full_name="Grace Hopper"',
)
def users_add(
    ctx: typer.Context,
    email: Annotated[
        str, typer.Argument(metavar="EMAIL", click_type=TEXT, help="The new user's email address.")
    ],
    username: Annotated[
        str | None,
        typer.Option(
            "--username",
            metavar="NAME",
            help="Username (default: the email's local part).",
            show_default=False,
        ),
    ] = None,
    superuser: Annotated[bool, flag("--superuser", help="Make the user a superuser.")] = False,
    inactive: Annotated[
        bool,
        flag("--inactive", help="Create the user deactivated."),
    ] = False,
    verified: Annotated[
        bool,
        flag(
            "--verified",
            help="Mark the email as verified (models with a verified column, e.g. "
            "fastapi-users' is_verified).",
        ),
    ] = False,
    assignments: SetOption = None,
    if_not_exists: Annotated[
        bool,
        flag("--if-not-exists", help="Succeed without changes when a user with this email exists."),
    ] = False,
    password_stdin: PasswordStdinOption = False,
    as_json: JsonOption = False,
) -> None:
    """Create a user.

    The password comes from a hidden prompt, --password-stdin or DBTOOL_USER_PASSWORD.
    Required columns of the user model that dbtool does not know are given with --set (on
    a terminal, dbtool asks for the missing ones).
    """
    from dbtool.errors import ConflictError, InvalidInputError
    from dbtool.render import console as output
    from dbtool.users import service as users
    from dbtool.users.validation import normalize_email, normalize_username, username_from_email

    with Command(ctx) as cmd:
        # Validate what needs no database first, so a typo costs no prompt or connection.
        model = cmd.models.user
        normalised = normalize_email(email)
        if model.username is None:
            if username:
                raise InvalidInputError(
                    f"--username does not apply: the user model {model.name} has no username column"
                )
            name = None
        else:
            name = normalize_username(username) if username else username_from_email(normalised)
        values = _ask_required(model, users.convert_values(model, parse_assignments(assignments)))
        cmd.database(write=True)  # a standby is refused before any prompt
        policy = _policy(cmd, email=normalised, username=name)
        password = read_new_password(cmd, password_stdin, policy)

        async def add(session: "AsyncSession") -> "tuple[UserRecord, bool]":
            try:
                user = await users.add_user(
                    session,
                    email=normalised,
                    username=name,
                    password=password,
                    is_superuser=superuser,
                    is_active=not inactive,
                    is_verified=True if verified else None,
                    values=values,
                )
                return user, True
            except ConflictError as exc:
                existing = await users.find_user(session, normalised)
                if if_not_exists and existing is not None:
                    return existing, False
                if model.username is not None and existing is None and not username:
                    # The username derived from the email is taken: say how to choose one.
                    raise ConflictError(f"{exc.message}; choose another with --username") from None
                raise

        user, created = cmd.in_session(add)

    if as_json:
        _render_user(user, True, {"created": created})
    elif created:
        output.success(f"Created user {_describe(user)}")
    else:
        output.success(f"User {user.email} already exists, unchanged")


DEFAULT_LIMIT = 50


@users_command(
    "list",
    "dbtool users list",
    "dbtool users list --search example.com --inactive",
    "dbtool users list --all --csv > users.csv",
    "dbtool users list --json --count | jq .total",
    "dbtool users list --limit 100 --after ada@example.com",
)
def users_list(
    ctx: typer.Context,
    active: ActiveOption = False,
    inactive: InactiveOption = False,
    superuser: SuperuserFilterOption = False,
    search: SearchOption = None,
    no_password: NoPasswordOption = False,
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            metavar="N",
            callback=whole_number(0, MAX_COUNT),
            help=f"At most N users (default {DEFAULT_LIMIT}; 0: all, like --all).",
            show_default=False,
        ),
    ] = DEFAULT_LIMIT,
    offset: Annotated[
        int,
        typer.Option(
            "--offset",
            metavar="N",
            callback=whole_number(0, MAX_COUNT),
            help="Skip the first N users.",
            show_default=False,
        ),
    ] = 0,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            metavar="USER",
            click_type=TEXT,
            help="Start after this user (email, username or id; the last one of the previous "
            "page): fast at any depth, where --offset reads the users it skips.",
            show_default=False,
        ),
    ] = None,
    everything: Annotated[
        bool,
        flag("--all", help="Every user, streamed (no limit)."),
    ] = False,
    count: Annotated[
        bool,
        typer.Option(
            "--count",
            help='With --json: an object with "total" (how many users match) and "users", '
            "instead of the bare list.",
            show_default=False,
        ),
    ] = False,
    as_json: JsonOption = False,
    as_csv: Annotated[bool, flag("--csv", help="Print CSV on stdout.")] = False,
) -> None:
    """List users: a table that fits the terminal (tab-separated when piped), --json or
    --csv. Shows the first 50 and says how many there are.

    Users come oldest first (by primary key for a user model without an index on its
    creation time); `--after` the last user of a page gives the next page at the same speed
    at any depth."""
    from dbtool.render import console as output
    from dbtool.users import service as users

    limit_or_all = None if everything or limit == 0 else limit
    last = None  # the id of the last user shown (for the next page's --after)
    with Command(ctx) as cmd:
        if as_json and as_csv:
            raise UsageError("choose one of --json and --csv")
        if after is not None and limit_or_all is None:
            raise UsageError("--after goes with a page (--limit N), not with --all or --limit 0")
        selection = users.UserFilter(
            active=either(active, inactive, "--active and --inactive"),
            superuser=superuser or None,
            search=search,
            usable_password=False if no_password else None,
        )
        model = cmd.models.user
        columns = model.public_names
        if limit_or_all is None:
            shown = _stream_all(cmd, selection, columns, as_json=as_json, as_csv=as_csv,
                                count=count)  # fmt: skip
            total = shown
        else:

            async def page(session: "AsyncSession") -> "tuple[list[UserRecord], int]":
                found = await users.list_users(
                    session, selection, limit=limit_or_all, offset=offset, after=after
                )
                # A page that is not full ends the list: its total needs no count(*).
                if len(found) < (limit_or_all or 0) and (found or not offset) and not after:
                    return found, offset + len(found)
                return found, await users.count_users(session, selection)

            found, total = cmd.in_session(page, readonly=True)
            cmd.note_standby()
            shown = len(found)
            last = found[-1].id if found else None
            rows = [[user.get(name) for name in columns] for user in found]
            if as_json:
                listed = [user.public() for user in found]
                output.print_json({"total": total, "users": listed} if count else listed)
            elif as_csv:
                output.print_csv(columns, rows)
            else:
                left_out = output.print_table(
                    columns, rows, keep=_list_keep(model), optional=_list_optional(model)
                )
                if left_out:
                    output.note(
                        f"not shown at this width: {', '.join(left_out)} (--json shows all)",
                        wrap=True,
                    )
    if after is not None and not shown:
        output.note(f"no users after {after}: that was the last of {total:,}", wrap=True)
    elif after is not None:
        output.note(f"showing {shown:,} after {after} of {total:,} users", wrap=True)
    elif shown < total and shown:
        output.note(
            f"showing {offset + 1:,}-{offset + shown:,} of {total:,} users "
            "(use --limit / --offset, or --all)",
            wrap=True,
        )
    elif shown < total:
        output.note(f"no users after the first {offset:,}: there are {total:,}")
    else:
        output.note(f"{total:,} {'user' if total == 1 else 'users'}")
    if last is not None and shown == limit_or_all and (after is not None or shown < total):
        # On a line of its own, never folded: the id is there to be copied.
        output.note(f"next page: --after {last}")


def _list_keep(model: "UserModel") -> list[str]:
    return [model.id.name, model.email.name]


def _list_optional(model: "UserModel") -> list[str]:
    """The other columns, most useful first: they are left out first on a narrow terminal."""
    ordered = [model.username, model.active, model.superuser, model.verified, model.created]
    rest = [c for c in model.public_columns if c not in {*ordered, model.updated, model.id,
                                                         model.email}]  # fmt: skip
    names = [c.name for c in (*ordered, *rest, model.updated) if c is not None]
    return [name for name in names if name not in _list_keep(model)]


def _stream_all(
    cmd: Command,
    selection: Any,
    columns: list[str],
    *,
    as_json: bool,
    as_csv: bool,
    count: bool,
) -> int:
    """`users list --all`: every user, written as they are fetched (a chunk at a time on
    a terminal, so the table fits without holding everything)."""
    import csv
    import json

    from dbtool.formats import csv_value, json_default
    from dbtool.render import console as output
    from dbtool.users import service as users

    model = cmd.models.user
    db = cmd.database()
    chunk: list[list[Any]] = []
    written = 0
    out = sys.stdout
    writer = csv.writer(out, lineterminator="\n") if as_csv else None

    def flush_table() -> None:
        output.print_table(columns, chunk, keep=_list_keep(model), optional=_list_optional(model))
        chunk.clear()

    async def stream() -> int:
        nonlocal written
        if writer is not None:
            writer.writerow(columns)
        if as_json:
            out.write('{\n  "users": [' if count else "[")
        async with db.session(readonly=True) as session:
            async for user in users.stream_users(session, selection, model=model):
                if as_json:
                    text = json.dumps(user.public(), default=json_default, ensure_ascii=False,
                                      indent=2)  # fmt: skip
                    indent = "    " if count else "  "
                    out.write(("," if written else "") + "\n" + indent
                              + text.replace("\n", "\n" + indent))  # fmt: skip
                elif writer is not None:
                    writer.writerow([csv_value(user.get(name)) for name in columns])
                else:
                    chunk.append([user.get(name) for name in columns])
                    if len(chunk) == 1000:
                        flush_table()
                written += 1
        if as_json:
            end = ("\n  " if written else "") + "]"
            out.write(f'{end},\n  "total": {written}\n}}\n' if count else end + "\n")
        elif writer is None and (chunk or not written):
            flush_table()
        out.flush()
        return written

    return cmd.run(stream())


@users_command(
    "show",
    "dbtool users show ada@example.com",
    "dbtool users show 2f1c7a58-9d41-4f3c-9a53-1f3c7e1f2a10 --json",
)
def users_show(ctx: typer.Context, ident: IdentArgument, as_json: JsonOption = False) -> None:
    """Show one user (and, on a terminal, the kind of password hash they have)."""
    from dbtool.render import console as output
    from dbtool.users import passwords
    from dbtool.users import service as users

    with Command(ctx) as cmd:
        cmd.note_standby()
        user = cmd.in_session(
            lambda session: users.get_user(session, ident, with_hash=True), readonly=True
        )
    if as_json:
        _render_user(user, as_json)
    else:
        hashed = ("password", passwords.describe_hash(user.hashed_password))
        output.print_pairs([*user.public().items(), hashed])


@users_command(
    "set-password",
    "dbtool users set-password ada@example.com",
    'printf %s "$NEW_PASSWORD" | dbtool users set-password ada --password-stdin',
)
def users_set_password(
    ctx: typer.Context, ident: IdentArgument, password_stdin: PasswordStdinOption = False
) -> None:
    """Set a user's password (same sources and policy as `users add`)."""
    from dbtool.render import console as output
    from dbtool.users import service as users

    with Command(ctx) as cmd:
        # A standby, or an unknown user, fails before any prompt.
        cmd.database(write=True)
        user = cmd.in_session(lambda session: users.get_user(session, ident), readonly=True)
        policy = _policy(cmd, email=user.email, username=user.username)
        password = read_new_password(cmd, password_stdin, policy)
        user = cmd.in_session(lambda session: users.set_password(session, str(user.id), password))
    output.success(f"Password changed for {user.email}")


@users_command(
    "check-password",
    "dbtool users check-password ada@example.com",
    "dbtool users check-password ada --password-stdin < password.txt && echo ok",
)
def users_check_password(
    ctx: typer.Context, ident: IdentArgument, password_stdin: PasswordStdinOption = False
) -> None:
    """Check a password against the stored hash: exit 0 when it matches, 1 when not."""
    from dbtool.render import console as output
    from dbtool.users import passwords
    from dbtool.users import service as users

    with Command(ctx) as cmd:
        user = cmd.in_session(lambda session: users.get_user(session, ident), readonly=True)
        password = read_password(cmd, password_stdin)
        role = cmd.run(cmd.database().server_role())
        standby = role is not None and role.standby
        user, matches = cmd.in_session(
            lambda session: users.check_password(
                session, str(user.id), password, upgrade=not standby
            ),
            readonly=standby,
        )
    if role is not None and role.standby:
        output.note(f"checked on a {role.describe()}: an outdated hash is not upgraded there")
    if not user.is_active:
        output.warning(f"{user.email} is inactive")
    if not matches and not passwords.is_usable(user.hashed_password):
        output.error(
            f"{user.email} has no usable password (imported without one): set one with "
            "dbtool users set-password"
        )
        raise typer.Exit(1)
    if not matches:
        output.error(f"the password does not match for {user.email}")
        raise typer.Exit(1)
    output.success(f"The password matches for {user.email}")


@users_command(
    "update",
    "dbtool users update ada@example.com --inactive",
    "dbtool users update ada --email ada@new.example --superuser",
    'dbtool users update ada --set full_name="Ada King"',
)
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
    activate: Annotated[bool, flag("--active", help="Activate the user.")] = False,
    deactivate: Annotated[bool, flag("--inactive", help="Deactivate the user.")] = False,
    grant: Annotated[bool, flag("--superuser", help="Make the user a superuser.")] = False,
    revoke: Annotated[bool, flag("--no-superuser", help="Revoke superuser.")] = False,
    verify: Annotated[
        bool,
        flag("--verified", help="Mark the email verified (models with a verified column)."),
    ] = False,
    unverify: Annotated[
        bool,
        flag("--unverified", help="Mark the email unverified."),
    ] = False,
    assignments: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a user's email, username, flags or other columns (--set)."""
    from dbtool.render import console as output
    from dbtool.users import service as users

    with Command(ctx) as cmd:
        values = parse_assignments(assignments)
        active = either(activate, deactivate, "--active and --inactive")
        superuser = either(grant, revoke, "--superuser and --no-superuser")
        verified = either(verify, unverify, "--verified and --unverified")
        cmd.database(write=True)
        user, changed = cmd.in_session(
            lambda session: users.update_user(
                session,
                ident,
                email=email,
                username=username,
                is_active=active,
                is_superuser=superuser,
                is_verified=verified,
                values=values,
            )
        )
    if as_json:
        _render_user(user, True, {"changed": changed})
    elif changed:
        output.success(f"Updated {_describe(user)}")
    else:
        output.note(f"No changes: {_describe(user)} already has these values")


@users_command(
    "delete",
    "dbtool users delete ada@example.com",
    "dbtool users delete ada --yes",
)
def users_delete(
    ctx: typer.Context,
    ident: IdentArgument,
    yes: Annotated[bool, flag("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a user (asks first on a terminal; --yes without one)."""
    from dbtool.render import console as output
    from dbtool.users import service as users

    with Command(ctx) as cmd:
        cmd.database(write=True)
        user = cmd.in_session(lambda session: users.get_user(session, ident), readonly=True)
        if not yes:
            if not output.stdin_is_terminal():
                raise RefusedError("not confirmed: pass --yes to delete without a terminal")
            confirm_yes(f"Delete user {_describe(user)}?")
        cmd.in_session(lambda session: users.delete_user(session, str(user.id)))
    output.success(f"Deleted user {_describe(user)}")


def _count_lines(path: str) -> int | None:
    """Rows in a regular file (for the progress bar's total and ETA); None for stdin."""
    if path == "-":
        return None
    with open(path, "rb") as stream:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))


@users_command(
    "import",
    "dbtool users import users.csv",
    "dbtool users import users.jsonl --on-conflict skip",
    "dbtool users import - --format csv < users.csv",
    "dbtool users import big.csv --skip-invalid --rejects rejected.csv --json",
    "dbtool users import auth_user.csv --from django",
    "dbtool users import users.json --from firebase --firebase-hash-config hash_config.txt",
    "dbtool users import people.csv --map mail=email --map pw_hash=hashed_password --ignore-extra",
)
def users_import(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            click_type=TEXT,
            help="CSV with a header row, JSON Lines, or a JSON array; - for stdin.",
        ),
    ],
    fmt: Annotated[
        Format | None,
        typer.Option(
            "--format",
            help="csv, jsonl or json (default: from the file extension; a .json file holding "
            "JSON Lines is read as such).",
        ),
    ] = None,
    source: Annotated[
        Source | None,
        typer.Option(
            "--from",
            help="Read another system's export as it comes: django (auth_user as CSV, or "
            "dumpdata), auth0 (the password-hash export), firebase (auth:export --format=json). "
            "Their columns are mapped, their hashes kept until the first login.",
            show_default=False,
        ),
    ] = None,
    maps: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            metavar="SOURCE=COLUMN",
            click_type=TEXT,
            help="Read COLUMN from the file's SOURCE field (repeatable); a dotted path reaches "
            "into JSON objects (_id.$oid).",
            show_default=False,
        ),
    ] = None,
    ignore_extra: Annotated[
        bool,
        flag("--ignore-extra", help="Drop columns that are not the user table's (listed)."),
    ] = False,
    assume_utc: Annotated[
        bool,
        flag("--assume-utc", help="Read timestamps without a time zone as UTC."),
    ] = False,
    firebase_hash_config: Annotated[
        Path | None,
        typer.Option(
            "--firebase-hash-config",
            metavar="FILE",
            help="With --from firebase: the project's password hash parameters, as the "
            "console shows them (its hash_config block) or as JSON.",
            show_default=False,
        ),
    ] = None,
    on_conflict: Annotated[
        OnConflict,
        typer.Option(
            "--on-conflict",
            help="fail: import nothing if an email or username is taken (or repeated in the "
            "file); skip: leave existing users as they are; update: overwrite existing users "
            "(matched by email) with the file's values.",
        ),
    ] = OnConflict.FAIL,
    skip_invalid: Annotated[
        bool,
        flag("--skip-invalid", help="Import the valid rows even if some are invalid."),
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            metavar="FILE",
            help="Write the invalid rows here, with their line number and reason "
            "(plain passwords redacted).",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            metavar="N",
            callback=whole_number(1, 1_000_000),
            help="Rows read, hashed and sent at a time.",
        ),
    ] = 5000,
    as_json: JsonOption = False,
) -> None:
    """Import users from CSV, JSON Lines or a JSON array: all or nothing, in one transaction.

    Columns: the user table's (email required; for the built-in model id, email, username,
    hashed_password, is_active, is_superuser, created_at, updated_at, as `users export`
    writes them), plus password for plain-text passwords, hashed here. Each row needs a
    password or a hash: Argon2, bcrypt, Django's (pbkdf2_sha256, argon2, bcrypt_sha256, ...)
    or Firebase's; other systems' hashes are replaced by Argon2id at the first successful
    check. --from, --map and --ignore-extra read files with other columns.
    """
    from dbtool.render import console as output
    from dbtool.transfer import importing as transfer

    with Command(ctx) as cmd:
        model = cmd.models.user
        fields = transfer.import_fields(model)
        field_map = _field_map(
            model, fields, source, maps or [], ignore_extra, firebase_hash_config
        )
        preset = field_map.preset if field_map is not None else None
        chosen = transfer.detect_format(
            file, fmt, default=preset.default_format if preset is not None else None
        )
        if source is Source.FIREBASE and chosen is Format.CSV:
            raise UsageError(
                "Firebase's CSV export has no header line: export JSON instead "
                "(firebase auth:export users.json --format=json)"
            )
        if rejects is not None:
            others = {"the input file": Path(file)} if file != "-" else {}
            _refuse_to_overwrite(cmd, rejects, "--rejects", others)
        for note in field_map.notes if field_map is not None else []:
            output.note(note)
        with (
            _open_input(file) as (source_stream, bytes_read),
            _rejects_writer(rejects, chosen, fields) as on_reject,
            _import_progress(file, chosen, bytes_read) as on_progress,
        ):
            db = cmd.database(write=True)
            name = "standard input" if file == "-" else file
            try:
                report = cmd.run(
                    transfer.import_users(
                        db,
                        transfer.read_records(
                            source_stream,
                            chosen,
                            fields,
                            required=(model.email.name,),
                            name=name,
                            fields=field_map,
                        ),
                        on_conflict=on_conflict,
                        skip_invalid=skip_invalid,
                        batch_size=batch_size,
                        on_reject=on_reject,
                        on_progress=on_progress,
                        assume_utc=assume_utc or (preset is not None and preset.assume_utc),
                    )
                )
            except (transfer.ImportRejectedError, transfer.ImportConflictError) as exc:
                _report_import_problems(exc.report)
                raise
    _report_import_problems(report)
    ignored = sorted(field_map.ignored) if field_map is not None else []
    if as_json:
        output.print_json({**report.summary(), **({"ignored": ignored} if field_map else {})})
        return
    if ignored:
        output.note(f"Ignored columns not in {model.name}: {', '.join(ignored)}")
    output.success(
        f"Imported {report.rows:,} rows in {report.seconds:.1f}s: {report.inserted:,} "
        f"inserted, {report.updated:,} updated, {report.skipped:,} skipped, "
        f"{report.rejected:,} rejected"
    )


def _field_map(
    model: "UserModel",
    fields: tuple[str, ...],
    source: Source | None,
    maps: list[str],
    ignore_extra: bool,
    firebase_hash_config: Path | None,
) -> "FieldMap | None":
    """How the file's columns become the import columns (None: they already are)."""
    if source is None and not maps and not ignore_extra:
        if firebase_hash_config is not None:
            raise UsageError("--firebase-hash-config goes with --from firebase")
        return None
    from dbtool.transfer.mapping import PRESETS, FieldMap, parse_maps
    from dbtool.users.legacy_hashes import parse_firebase_config

    preset = PRESETS[source] if source is not None else None
    firebase = None
    if firebase_hash_config is not None:
        if preset is None or preset.source is not Source.FIREBASE:
            raise UsageError("--firebase-hash-config goes with --from firebase")
        try:
            text = firebase_hash_config.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise FileError(f"cannot read {firebase_hash_config}: {reason}") from None
        firebase = parse_firebase_config(text, str(firebase_hash_config))
    return FieldMap(
        model,
        fields,
        preset=preset,
        maps=parse_maps(maps),
        ignore_extra=ignore_extra,
        firebase=firebase,
    )


@contextmanager
def _open_input(path: str) -> Iterator[tuple[IO[str], Callable[[], int]]]:
    """The import's input for the csv and json modules, and how many bytes were read so far.
    A BOM at the start is skipped, and invalid UTF-8 is kept (as surrogates) for the reader
    to report by line."""
    if path == "-":
        binary = getattr(sys.stdin, "buffer", None)
        if binary is None:  # a text-only stdin (some embedders): read as it is
            yield sys.stdin, lambda: 0
            return
    else:
        try:
            binary = open(path, "rb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise FileError(f"cannot read {path}: {exc.strerror or exc}") from None
    counted = _Counted(binary)
    text = io.TextIOWrapper(
        io.BufferedReader(counted), encoding="utf-8-sig", errors="surrogateescape", newline=""
    )
    try:
        yield text, lambda: counted.count
    finally:
        text.close()
        if path != "-":
            binary.close()


class GuardedStream:
    """A text stream whose write failures (disk full, ...) are a FileError naming the file
    (exit 1), not an OSError that could pass for a lost connection."""

    def __init__(self, stream: IO[str], name: str) -> None:
        self.stream, self.name = stream, name

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise FileError(f"cannot write {self.name}: {exc.strerror or exc}") from None

    def write(self, text: str) -> int:
        with self._guarded():
            return self.stream.write(text)

    def write_bytes(self, data: bytes) -> None:
        """UTF-8 text already encoded (COPY's output), written past the text layer where the
        stream has a binary one: decoding it only to encode it again would cost more than
        the rest of an export."""
        binary = getattr(self.stream, "buffer", None)
        if binary is None:
            self.write(data.decode("utf-8"))
            return
        self.flush()  # what was written as text goes first
        with self._guarded():
            binary.write(data)

    def flush(self) -> None:
        with self._guarded():
            self.stream.flush()


def _private_file(path: Path) -> IO[str]:
    """`path` opened for writing, readable by its owner only (0600): rejects and exports
    can hold password hashes."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # an existing file keeps its mode otherwise
    except OSError as exc:
        raise FileError(f"cannot write {path}: {exc.strerror or exc}") from None
    return os.fdopen(descriptor, "w", encoding="utf-8", newline="")


def _refuse_to_overwrite(cmd: Command, path: Path, option: str, others: dict[str, Path]) -> None:
    """Exit 2, before anything is touched, when `path` is a file that must not be
    overwritten: the import's input, or the SQLite database in use (or its -wal, -shm,
    -journal files): the backend says which files hold it."""
    from dbtool.backends import backend_for

    url = cmd.settings.url
    protected = {**others, **backend_for(url).database_files(url)}
    target = path.resolve()
    for what, other in protected.items():
        same = target == other.resolve() or (
            target.exists() and other.exists() and os.path.samefile(target, other)
        )
        if same:
            raise UsageError(f"{option} {path} is {what}: choose another file")


def _report_import_problems(report: "ImportReport") -> None:
    """The first invalid rows and conflicts, one per line on stderr."""
    from dbtool.render import console as output

    for rejection in report.rejections:
        output.note(f"line {rejection.line}: {rejection.reason}")
    if report.rejected > len(report.rejections):
        output.note(f"... and {report.rejected - len(report.rejections):,} more invalid rows")
    for conflict in report.conflicts:
        output.note(f"conflict: {conflict}")


@contextmanager
def _rejects_writer(
    path: Path | None, fmt: Format, fields: tuple[str, ...]
) -> Iterator[Callable[[Any], None] | None]:
    """Write rejected rows (line, reason, then the row, plain passwords redacted)."""
    if path is None:
        yield None
        return
    import csv
    import json

    plain = fields[-1]  # import_fields ends with the plain-password column
    with _private_file(path) as opened:
        stream = GuardedStream(opened, str(path))
        writer = csv.writer(stream, lineterminator="\n") if fmt is Format.CSV else None
        if writer is not None:
            writer.writerow(["line", "reason", *fields])

        def write(rejection: Any) -> None:
            row = {
                key: ("(redacted)" if key == plain and value else value)
                for key, value in rejection.record.items()
                if key in fields
            }
            if writer is not None:
                values = [row.get(name) or "" for name in fields]
                writer.writerow([rejection.line, rejection.reason, *values])
            else:
                record = {"line": rejection.line, "reason": rejection.reason, **row}
                stream.write(json.dumps(record, ensure_ascii=False) + "\n")

        yield write


@contextmanager
def _import_progress(
    path: str, fmt: Format, bytes_read: Callable[[], int]
) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr when it is a terminal; nothing otherwise. From a file: rows
    of the total, with a bar and ETA; from stdin, whose size nobody knows: rows and bytes."""
    from dbtool.render import console as output

    if not output.stderr_is_terminal():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    # A JSON document's lines are not its records: it shows bytes read, as stdin does.
    lines = None if fmt is Format.JSON else _count_lines(path)
    total = None if lines is None else max(lines - (1 if fmt is Format.CSV else 0), 0)
    columns: list[Any] = [TextColumn("importing")]
    if total is not None:
        columns += [BarColumn(), TextColumn("{task.percentage:>3.0f}%")]
    columns += [
        TextColumn("{task.fields[done]} · {task.fields[rate]} rows/s · elapsed"),
        TimeElapsedColumn(),
    ]
    if total is not None:
        from rich.progress import TimeRemainingColumn

        columns += [TextColumn("· ETA"), TimeRemainingColumn()]

    def done(rows: int) -> str:
        if total is not None:
            return f"{rows:,} of {total:,} rows"
        return f"{rows:,} rows · {bytes_read() / 1e6:,.1f} MB read"

    with Progress(*columns, console=output.err_console(), transient=True) as progress:
        # The total shows from the start: the first batch can take a while (plain passwords
        # are hashed at about ten a second per core).
        task = progress.add_task("import", total=total, done=done(0), rate="-")
        started = time.perf_counter()

        def update(rows: int) -> None:
            rate = rows / max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=rows, done=done(rows), rate=f"{rate:,.0f}")

        yield update


class _Counted(io.RawIOBase):
    """A binary stream that counts the bytes read through it (for the progress of stdin);
    closing it leaves the stream it reads from open.

    From a pipe or a terminal it returns what has arrived instead of waiting for a full
    buffer, and it waits for input in short slices: the import reads on the event loop's
    thread, where Ctrl-C only cancels the command's task, which a blocked read would never
    notice."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.count = raw, 0
        self.fd = _stream_fd(raw)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.fd is not None:
            _wait_for_input(self.fd)
        read = getattr(self.raw, "read1", self.raw.read)
        data = read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


def _stream_fd(raw: IO[bytes]) -> int | None:
    """The file descriptor of a pipe, terminal or socket; None for a regular file (always
    readable) or a stream without one."""
    import stat

    try:
        fd = raw.fileno()
        return None if stat.S_ISREG(os.fstat(fd).st_mode) else fd
    except (AttributeError, OSError, ValueError):
        return None


def _wait_for_input(fd: int) -> None:
    """Until `fd` has input or its end; CancelledError once the command is interrupted."""
    import asyncio
    import select

    while not select.select([fd], [], [], 0.2)[0]:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no event loop: nothing can cancel the read
            continue
        if task is not None and task.cancelling():
            raise asyncio.CancelledError


@users_command(
    "export",
    "dbtool users export -o users.csv",
    "dbtool users export --include-hashes --format jsonl > all.jsonl",
    "dbtool users export --inactive --search @example.com -o inactive.csv",
)
def users_export(
    ctx: typer.Context,
    output_path: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write here instead of stdout (replaced only once the export is complete).",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        Format | None,
        typer.Option(
            "--format",
            help="csv, jsonl or json (one array) (default: from -o's extension, else csv).",
        ),
    ] = None,
    include_hashes: Annotated[
        bool,
        flag(
            "--include-hashes",
            help="Include hashed_password (needed to import the users elsewhere).",
        ),
    ] = False,
    active: ActiveOption = False,
    inactive: InactiveOption = False,
    superuser: SuperuserFilterOption = False,
    search: SearchOption = None,
    no_password: NoPasswordOption = False,
) -> None:
    """Export users as CSV, JSON Lines or one JSON array, streaming (the same filters as
    `users list`)."""
    from dbtool.render import console as output
    from dbtool.transfer import exporting
    from dbtool.transfer.readers import detect_format
    from dbtool.users.service import UserFilter

    with Command(ctx) as cmd:
        selection = UserFilter(
            active=either(active, inactive, "--active and --inactive"),
            superuser=superuser or None,
            search=search,
            usable_password=False if no_password else None,
        )
        chosen = detect_format(output_path, fmt, default=Format.CSV)
        model = cmd.models.user
        columns = exporting.export_columns(model, include_hashes)

        async def export(stream: Any) -> int:
            async with cmd.db.session(readonly=True) as session:
                return await exporting.export_users(
                    session, selection, model=model, columns=columns, fmt=chosen, stream=stream
                )

        if output_path not in (None, "-"):
            _refuse_to_overwrite(cmd, Path(output_path), "-o", {})
        cmd.note_standby()
        if output_path in (None, "-"):
            stdout = GuardedStream(sys.stdout, "standard output")
            count = cmd.run(export(stdout))
            stdout.flush()
        else:
            with _replace_when_done(Path(output_path)) as stream:
                count = cmd.run(export(stream))
    where = "stdout" if output_path in (None, "-") else output_path
    output.note(f"Exported {count:,} {'user' if count == 1 else 'users'} to {where}")


@contextmanager
def _written(opened: IO[str], name: str) -> Iterator[GuardedStream]:
    """Write through a GuardedStream and close the file; a failure to write, flush or close
    is one FileError (the close after a failed write is not allowed to hide it)."""
    stream = GuardedStream(opened, name)
    try:
        yield stream
        stream.flush()
    except BaseException:
        with suppress(OSError):
            opened.close()
        raise
    try:
        opened.close()
    except OSError as exc:
        raise FileError(f"cannot write {name}: {exc.strerror or exc}") from None


@contextmanager
def _replace_when_done(path: Path) -> Iterator[Any]:
    """Write to a temporary file beside `path`, renamed over it only on success: an
    interrupted export never leaves a half-written file."""
    import tempfile

    if path.is_dir():
        raise FileError(f"cannot write {path}: it is a directory")
    if path.exists() and not path.is_file():
        # A device or a pipe (/dev/stdout, a FIFO): written in place; renaming a file over
        # it would replace the device node itself.
        try:
            opened = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise FileError(f"cannot write {path}: {exc.strerror or exc}") from None
        with _written(opened, str(path)) as stream:
            yield stream
        return
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.")
    except OSError as exc:
        raise FileError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with _written(os.fdopen(handle, "w", encoding="utf-8", newline=""), str(path)) as stream:
            yield stream
        try:
            os.replace(temporary, path)
        except OSError as exc:
            raise FileError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
