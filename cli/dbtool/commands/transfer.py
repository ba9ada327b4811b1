"""`dbtool users import` and `dbtool users export`: users to and from CSV, JSON Lines or
one JSON array, and from other systems' exports. Typer wiring only: the files are
`dbtool.transfer.files`', the work `dbtool.transfer`'s."""

import contextlib
import os
import sys
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from dbtool.commands.options import (
    TEXT,
    ActiveOption,
    InactiveOption,
    JsonOption,
    NoPasswordOption,
    SearchOption,
    SuperuserFilterOption,
    WaitOption,
    flag,
    register,
    user_filter,
    whole_number,
)
from dbtool.commands.runtime import Command
from dbtool.errors import DatabaseUnavailableError, FileError, UsageError
from dbtool.formats import Format, OnConflict, Source
from dbtool.render.live import import_progress
from dbtool.render.reports import report_import_problems
from dbtool.transfer.files import (
    GuardedStream,
    from_the_start,
    open_input,
    rejects_writer,
    replace_when_done,
)
from dbtool.wording import counted

if TYPE_CHECKING:
    from dbtool.models.user_model import UserModel
    from dbtool.transfer.mapping import FieldMap

# The group's commands are added to `dbtool users` (dbtool.commands.users).
app = typer.Typer()
users_command = partial(register, app)


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
    wait: WaitOption = 0.0,
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
            contextlib.ExitStack() as reopened,
            open_input(file) as (source_stream, bytes_read),
            rejects_writer(
                rejects, chosen, fields, transfer.plain_password_key(model)
            ) as on_reject,
            import_progress(file, chosen, bytes_read) as on_progress,
        ):
            db = cmd.database(write=True)
            name = "standard input" if file == "-" else file

            def records(stream: IO[str]) -> Iterable[tuple[int, dict[str, Any]]]:
                return transfer.read_records(
                    stream, chosen, fields, required=(model.email.name,), name=name,
                    fields=field_map,
                )  # fmt: skip

            def again() -> Iterable[tuple[int, dict[str, Any]]]:
                """The file read from its start once more (a pipe or standard input cannot
                be)."""
                stream, _ = reopened.enter_context(open_input(file))
                return records(stream)

            try:
                report = cmd.run(
                    transfer.import_users(
                        db,
                        records(source_stream),
                        again=again if file != "-" and Path(file).is_file() else None,
                        on_conflict=on_conflict,
                        skip_invalid=skip_invalid,
                        batch_size=batch_size,
                        on_reject=on_reject,
                        on_progress=on_progress,
                        assume_utc=assume_utc or (preset is not None and preset.assume_utc),
                    )
                )
            except (transfer.ImportRejectedError, transfer.ImportConflictError) as exc:
                report_import_problems(exc.report)
                raise
            except Exception as exc:
                from dbtool.backends.errors import connection_error

                lost = connection_error(exc, cmd.settings)
                if lost is None or cmd.wait <= 0:
                    raise
                # Its input is read as it goes (stdin, a pipe): not run again by itself.
                raise DatabaseUnavailableError(
                    f"{lost.message}; the import was rolled back, and --wait does not run it "
                    "again by itself (its input is read once): run it again"
                ) from exc
    report_import_problems(report)
    ignored = sorted(field_map.ignored) if field_map is not None else []
    if as_json:
        output.print_json({**report.summary(), **({"ignored": ignored} if field_map else {})})
        return
    if ignored:
        output.note(f"Ignored columns not in {model.name}: {', '.join(ignored)}")
    if field_map is not None and field_map.without_password:
        count = field_map.without_password
        output.note(
            f"{count:,} {'row has' if count == 1 else 'rows have'} no password in the file: "
            "stored as unusable (!), an account that cannot log in until `dbtool users "
            "set-password`"
        )
    output.success(
        f"Imported {counted(report.rows, 'row')} in {report.seconds:.1f}s: {report.inserted:,} "
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
    wait: WaitOption = 0.0,
) -> None:
    """Export users as CSV, JSON Lines or one JSON array, streaming (the same filters as
    `users list`)."""
    from dbtool.render import console as output
    from dbtool.transfer import exporting
    from dbtool.transfer.readers import detect_format

    with Command(ctx) as cmd:
        selection = user_filter(
            active=active,
            inactive=inactive,
            superuser=superuser,
            search=search,
            no_password=no_password,
        )
        chosen = detect_format(output_path, fmt, default=Format.CSV)
        model = cmd.models.user
        columns = exporting.export_columns(model, include_hashes)

        def export(stream: Any) -> int:
            rewind = from_the_start(stream)

            async def step() -> int:
                rewind()  # run again after a lost connection: the output starts over
                async with cmd.db.session(readonly=True) as session:
                    return await exporting.export_users(
                        session, selection, model=model, columns=columns, fmt=chosen,
                        stream=stream,
                    )  # fmt: skip

            return cmd.attempt(step)

        if output_path not in (None, "-"):
            _refuse_to_overwrite(cmd, Path(output_path), "-o", {})
        cmd.note_standby()
        if output_path in (None, "-"):
            stdout = GuardedStream(sys.stdout, "standard output")
            count = export(stdout)
            stdout.flush()
        else:
            with replace_when_done(Path(output_path)) as stream:
                count = export(stream)
    where = "stdout" if output_path in (None, "-") else output_path
    output.note(f"Exported {count:,} {'user' if count == 1 else 'users'} to {where}")
