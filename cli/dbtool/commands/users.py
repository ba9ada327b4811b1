"""`dbtool users ...`: Typer wiring for user management.

Passwords never come from a plain option (shell history, process lists): a hidden prompt
on a terminal, the first line of stdin with --password-stdin, or DBTOOL_USER_PASSWORD.
"""

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbtool.commands import transfer
from dbtool.commands.options import (
    MAX_COUNT,
    TEXT,
    ActiveOption,
    InactiveOption,
    JsonOption,
    NoPasswordOption,
    SearchOption,
    SuperuserFilterOption,
    WaitOption,
    either,
    flag,
    register,
    user_filter,
    whole_number,
)
from dbtool.commands.runtime import Command, confirm_yes
from dbtool.errors import DbtoolError, RefusedError, UsageError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from dbtool.models.user_model import UserModel
    from dbtool.users.service import Total, UserRecord

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
    wait: WaitOption = 0.0,
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
    from dbtool.users.validation import normalize_username, username_from_email

    with Command(ctx) as cmd:
        # Validate what needs no database first, so a typo costs no prompt or connection.
        model = cmd.models.user
        normalised = users.stored_email(model, email)
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

        attempts = 0

        async def add(session: "AsyncSession") -> "tuple[UserRecord, bool]":
            nonlocal attempts
            attempts += 1
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
                if (
                    attempts > 1
                    and existing is not None
                    and await _ours(session, normalised, password)
                ):
                    # An earlier attempt's COMMIT reached the server before the connection
                    # went (a failover): the user is the one this command made.
                    return existing, True
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


async def _ours(session: "AsyncSession", email: str, password: str) -> bool:
    """Whether the user with `email` has `password`: after a cut-off attempt, the row this
    very command wrote (its password was chosen a moment ago, for this user)."""
    from dbtool.errors import NotFoundError
    from dbtool.users import service as users

    try:
        return (await users.check_password(session, email, password)).matches
    except NotFoundError:
        return False


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
    exact: Annotated[
        bool,
        flag(
            "--exact",
            help="Count every matching user for the total, however many (on a "
            "large table the total is otherwise estimated, or bounded with a filter).",
        ),
    ] = False,
    as_json: JsonOption = False,
    as_csv: Annotated[bool, flag("--csv", help="Print CSV on stdout.")] = False,
    wait: WaitOption = 0.0,
) -> None:
    """List users: a table that fits the terminal (tab-separated when piped), --json or
    --csv. Shows the first 50 and says how many there are.

    On a table of 100,000 users or more (by the planner's statistics) the total is the
    planner's estimate ("about 1,000,000"), or with a filter "more than 10,000", so that a
    page costs the same at any size; --exact counts them all, and so does --json --count.

    Users come oldest first (by primary key for a user model without an index on its
    creation time); `--after` the last user of a page gives the next page at the same speed
    at any depth."""
    from dbtool.render import console as output
    from dbtool.users import service as users

    limit_or_all = None if everything or limit == 0 else limit
    last = None  # the id of the last user shown (for the next page's --after)
    more = False  # a user comes after the page
    with Command(ctx) as cmd:
        if as_json and as_csv:
            raise UsageError("choose one of --json and --csv")
        if after is not None and limit_or_all is None:
            raise UsageError("--after goes with a page (--limit N), not with --all or --limit 0")
        selection = user_filter(
            active=active,
            inactive=inactive,
            superuser=superuser,
            search=search,
            no_password=no_password,
        )
        model = cmd.models.user
        columns = model.public_names
        if limit_or_all is None:
            shown = _stream_all(cmd, selection, columns, as_json=as_json, as_csv=as_csv,
                                count=count)  # fmt: skip
            total = users.Total(shown)
        else:

            async def page(session: "AsyncSession") -> "tuple[list[UserRecord], Total, bool]":
                # One user more than the page: whether a next page exists, without a guess.
                found = await users.list_users(
                    session, selection, limit=limit_or_all + 1, offset=offset, after=after
                )
                beyond = len(found) > limit_or_all
                found = found[:limit_or_all]
                # A page that ends the list: its total needs no count(*).
                if not beyond and (found or not offset) and not after:
                    return found, users.Total(offset + len(found)), beyond
                counted_all = exact or (as_json and count)
                total = await users.total_users(session, selection, exact=counted_all)
                return found, total, beyond

            found, total, more = cmd.in_session(page, readonly=True)
            cmd.note_standby()
            shown = len(found)
            last = found[-1].id if found else None
            rows = [[user.get(name) for name in columns] for user in found]
            if as_json:
                listed = [user.public() for user in found]
                output.print_json({"total": total.count, "users": listed} if count else listed)
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
    of = total.describe()
    if after is not None and not shown:
        output.note(f"no users after {after}: that was the last of {of}", wrap=True)
    elif after is not None:
        output.note(f"showing {shown:,} after {after} of {of} users", wrap=True)
    elif shown < total.count and shown:
        output.note(
            f"showing {offset + 1:,}-{offset + shown:,} of {of} users "
            "(use --limit / --offset, or --all)",
            wrap=True,
        )
    elif shown < total.count:
        output.note(f"no users after the first {offset:,}: there are {of}")
    else:
        output.note(f"{of} {'user' if total.count == 1 else 'users'}")
    if total.kind != "exact":
        output.note(f"the total is {'estimated' if total.kind == 'estimate' else 'bounded'}: "
                    "--exact counts every user")  # fmt: skip
    if last is not None and more:
        # On a line of its own, never folded: the id is there to be copied.
        output.note(f"next page: --after {last}")


def _list_keep(model: "UserModel") -> list[str]:
    """The columns a narrow terminal still shows whole: the email, and a short id (a UUID
    is 36 characters: at 80 columns it would push out whether users are active)."""
    short_id = model.id.type.python_type is int if _has_python_type(model.id) else False
    return [model.id.name, model.email.name] if short_id else [model.email.name]


def _has_python_type(column: Any) -> bool:
    try:
        column.type.python_type  # noqa: B018 (raises for types without one)
    except NotImplementedError:
        return False
    return True


def _list_optional(model: "UserModel") -> list[str]:
    """The other columns, most useful first: they are left out first on a narrow terminal
    (a long id after the flags: `--after` and `users show` take the email as well)."""
    ordered = [model.username, model.active, model.superuser, model.id, model.verified,
               model.created]  # fmt: skip
    rest = [c for c in model.public_columns if c not in {*ordered, model.updated, model.email}]
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
    from dbtool.transfer.files import OutputStartedError
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
        if written:  # a lost connection cut it off after rows were shown
            raise OutputStartedError(
                "the connection to the database was lost after part of the list was written: "
                "run the command again"
            )
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

    return cmd.attempt(stream)


@users_command(
    "show",
    "dbtool users show ada@example.com",
    "dbtool users show 2f1c7a58-9d41-4f3c-9a53-1f3c7e1f2a10 --json",
)
def users_show(
    ctx: typer.Context, ident: IdentArgument, wait: WaitOption = 0.0, as_json: JsonOption = False
) -> None:
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
    ctx: typer.Context,
    ident: IdentArgument,
    password_stdin: PasswordStdinOption = False,
    wait: WaitOption = 0.0,
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
    "dbtool users check-password ada@example.com --upgrade",
)
def users_check_password(
    ctx: typer.Context,
    ident: IdentArgument,
    password_stdin: PasswordStdinOption = False,
    upgrade: Annotated[
        bool,
        flag(
            "--upgrade",
            help="When the password matches an outdated hash (another scheme, older "
            "parameters, another system's), replace it: by one of DBTOOL_PASSWORD_HASH if "
            "set, else of the same family for bcrypt (the application's login may verify "
            "nothing else), else Argon2id. Without it, a check writes nothing.",
        ),
    ] = False,
    wait: WaitOption = 0.0,
) -> None:
    """Check a password against the stored hash: exit 0 when it matches, 1 when not. It
    only reads, unless --upgrade is given."""
    from dbtool.render import console as output
    from dbtool.users import passwords
    from dbtool.users import service as users

    with Command(ctx) as cmd:
        cmd.database(write=upgrade)  # --upgrade writes: a standby is refused first
        user = cmd.in_session(lambda session: users.get_user(session, ident), readonly=True)
        password = read_password(cmd, password_stdin)
        found = cmd.in_session(
            lambda session: users.check_password(session, str(user.id), password, upgrade=upgrade),
            readonly=not upgrade,
        )
    user = found.user
    if not user.is_active:
        output.warning(f"{user.email} is inactive")
    if not found.matches and not passwords.is_usable(user.hashed_password):
        output.error(
            f"{user.email} has no usable password (imported without one): set one with "
            "dbtool users set-password"
        )
        raise typer.Exit(1)
    if not found.matches:
        output.error(f"the password does not match for {user.email}")
        raise typer.Exit(1)
    output.success(f"The password matches for {user.email}")
    if found.replaced_by is not None:
        output.success(
            f"Replaced its outdated hash with a new {passwords.SCHEME_NAMES[found.replaced_by]} "
            "hash (--upgrade)"
        )
    elif found.outdated:
        output.note(
            f"its hash ({passwords.describe_hash(user.hashed_password)}) is outdated; "
            "--upgrade replaces it (nothing was written)"
        )


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
    wait: WaitOption = 0.0,
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
    wait: WaitOption = 0.0,
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


# import and export are the group's too (dbtool.commands.transfer).
users_app.registered_commands.extend(transfer.app.registered_commands)
