"""`dbtool dump`, `load` and `seed`: fixtures for every table of the models. Typer wiring
only; the work is `dbtool.fixtures`'."""

import sys
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from dbtool.commands.options import TEXT, JsonOption, WaitOption, flag, register
from dbtool.commands.runtime import Command
from dbtool.errors import UsageError
from dbtool.formats import Format, OnConflict
from dbtool.wording import counted

app = typer.Typer()
command = partial(register, app)


@command(
    "dump",
    "dbtool dump > fixtures.jsonl",
    "dbtool dump role plan -o reference.json",
    "dbtool dump --format csv -o fixtures/",
    "dbtool dump --where \"user:email LIKE '%@example.com'\" --related -o demo.jsonl",
)
def dump(
    ctx: typer.Context,
    tables: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[TABLE]...",
            click_type=TEXT,
            help="Tables of the models to dump (default: all of them).",
            show_default=False,
        ),
    ] = None,
    output_path: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE|FOLDER",
            help="Write here (a file, replaced only once the dump is complete; a folder for "
            "--format csv) instead of stdout.",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        Format | None,
        typer.Option(
            "--format",
            help="jsonl (one row per line), json (one array) or csv (one file per table, "
            "into a folder) (default: from -o's extension, else jsonl).",
        ),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            metavar="TABLE:CONDITION",
            help="Only the rows of TABLE for which the SQL CONDITION holds.",
            show_default=False,
        ),
    ] = None,
    related: Annotated[
        bool,
        flag(
            "--related",
            help="With --where: the rows of the tables that reference the rows kept (through "
            "foreign keys, transitively) are only those that reference them.",
        ),
    ] = False,
    with_hashes: Annotated[
        bool,
        flag(
            "--with-hashes",
            help="Keep the password hashes and other secret columns (named like password, "
            "secret, token, api_key), which are left out by default.",
        ),
    ] = False,
    wait: WaitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Write the models' tables as fixtures: rows in foreign-key order (parents first), by
    primary key, with values that `dbtool load` reads back exactly.

    Secrets stay out unless --with-hashes: a dump without hashes loads users that cannot log
    in until `dbtool users set-password`.
    """
    from dbtool.fixtures import dump as dumping
    from dbtool.render import console as output
    from dbtool.transfer.files import GuardedStream, from_the_start, replace_when_done
    from dbtool.transfer.readers import detect_format

    with Command(ctx) as cmd:
        if related and where is None:
            raise UsageError("--related goes with --where")
        folder_given = output_path and (output_path.endswith("/") or Path(output_path).is_dir())
        chosen = Format.CSV if folder_given and fmt is None else None
        chosen = chosen or detect_format(output_path, fmt, default=Format.JSONL)
        db = cmd.database()
        models = db.models
        selected = dumping.ordered_tables(models, tables or [])
        condition = dumping.parse_filter(where, models, related=related) if where else None
        if condition is not None and condition.table not in selected:
            raise UsageError(f"--where names {condition.table.fullname}, which is not dumped")
        cmd.note_standby()

        def run(**target: Any) -> "dumping.DumpReport":
            options = {"with_hashes": with_hashes, "where": condition, **target}
            stream = target.get("stream")
            rewind = from_the_start(stream) if stream is not None else (lambda: None)

            async def step() -> "dumping.DumpReport":
                rewind()  # a step run again after a lost connection starts the output over
                return await dumping.dump(db, tables=selected, fmt=chosen, **options)

            return cmd.attempt(step)

        if chosen is Format.CSV:
            if output_path in (None, "-"):
                raise UsageError("--format csv writes one file per table: give -o FOLDER")
            folder = Path(output_path)
            folder.mkdir(parents=True, exist_ok=True)
            report = run(folder=folder)
            where_to = f"{folder}/"
        elif output_path in (None, "-"):
            stdout = GuardedStream(sys.stdout, "standard output")
            report = run(stream=stdout)
            stdout.flush()
            where_to = "stdout"
        else:
            with replace_when_done(Path(output_path)) as stream:
                report = run(stream=stream)
            where_to = output_path
    if as_json and where_to != "stdout":  # (on stdout, the dump itself is the output)
        output.print_json(report.as_dict())
    if as_json:
        return
    for table, columns in report.left_out.items():
        output.note(f"left out of {table}: {', '.join(columns)} (--with-hashes keeps them)")
    tables_count = counted(len(report.tables), "table")
    output.success(f"Dumped {counted(report.rows, 'row')} of {tables_count} to {where_to}")


@command(
    "load",
    "dbtool load fixtures.jsonl",
    "dbtool load fixtures/ --on-conflict update",
    "dbtool load plans.csv roles.csv --on-conflict skip",
    "dbtool load countries.json --on-conflict update --key code",
    "dbtool load reference/ --on-conflict update --key plan:code --key role:name",
)
def load(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="FILE|FOLDER...",
            click_type=TEXT,
            help="Fixtures: JSON Lines or JSON files as `dbtool dump` writes them, TABLE.csv "
            "files, or folders of them.",
        ),
    ],
    fmt: Annotated[
        Format | None,
        typer.Option("--format", help="csv, jsonl or json (default: from each file's extension)."),
    ] = None,
    on_conflict: Annotated[
        OnConflict,
        typer.Option(
            "--on-conflict",
            help="A row whose key exists already: fail (nothing is loaded, exit 4), skip "
            "(the existing row stays), or update (it takes the file's values).",
        ),
    ] = OnConflict.FAIL,
    key: Annotated[
        list[str] | None,
        typer.Option(
            "--key",
            metavar="[TABLE:]COLUMN[,COLUMN]",
            help="With skip or update: match existing rows by these columns (a unique key: a "
            "natural key) instead of the primary key, in TABLE or in every table that has "
            "them; repeatable.",
            show_default=False,
        ),
    ] = None,
    wait: WaitOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Load fixtures into the models' tables, all or nothing, in one transaction: tables in
    foreign-key order whatever the files' order, every value checked against its column
    (errors name the file and line), id sequences moved past the ids loaded.

    Re-running with --on-conflict skip or update gives the same rows (CI setup).
    """
    from dbtool.fixtures import load as loading
    from dbtool.render import console as output
    from dbtool.render.live import load_progress

    with Command(ctx) as cmd:
        if key and on_conflict is OnConflict.FAIL:
            raise UsageError("--key goes with --on-conflict skip or update")
        inputs = loading.sources(paths, cmd.models, fmt)  # checked before connecting
        keys = loading.NaturalKeys.parse(key, cmd.models) if key else None
        db = cmd.database(wait=wait, write=True)
        files = [(str(source.path), source.fmt) for source in inputs]
        try:
            with load_progress(files) as on_progress:
                report = cmd.attempt(
                    lambda: loading.load(
                        db, inputs, on_conflict=on_conflict, keys=keys, on_progress=on_progress
                    ),
                    # Loaded twice, `fail` would find its own rows: not run again after a
                    # COMMIT the connection cut off.
                    replayable=on_conflict is not OnConflict.FAIL,
                )
        except loading.LoadRejectedError as exc:
            for rejection in exc.report.rejections[1:]:
                output.note(f"{rejection.where}: {rejection.reason}")
            raise
    if as_json:
        output.print_json(report.as_dict())
        return
    for table, counts in report.tables.items():
        parts = [f"{counts.inserted:,} inserted"]
        if on_conflict is OnConflict.UPDATE:
            parts.append(f"{counts.updated:,} updated")
        elif on_conflict is OnConflict.SKIP:
            parts.append(f"{counts.kept:,} kept")
        output.note(f"  {table}: {', '.join(parts)}")
    output.success(
        f"Loaded {counted(report.rows, 'row')} into {counted(len(report.tables), 'table')} in "
        f"{report.seconds:.1f}s"
    )


@command(
    "seed",
    "dbtool seed",
    "DBTOOL_SEED=fixtures/,app.seed:run dbtool seed",
    "dbtool init --wait 60 --create-database --seed",
)
def seed(ctx: typer.Context, wait: WaitOption = 0.0, as_json: JsonOption = False) -> None:
    """Load the project's seed data, declared in DBTOOL_SEED: fixture files and folders
    (loaded with --on-conflict update, so a second run changes nothing), then each
    `module:function` named there, given an open session (committed when it returns).
    """
    from dbtool.fixtures.seed import entries
    from dbtool.fixtures.seed import seed as seed_data
    from dbtool.render import console as output
    from dbtool.render.reports import print_seed

    with Command(ctx) as cmd:
        entries(cmd.settings.seed)  # a missing or wrong DBTOOL_SEED, before connecting
        db = cmd.database(wait=wait, write=True)
        report = cmd.attempt(lambda: seed_data(db, cmd.settings.seed))
    if as_json:
        output.print_json(report.as_dict())
        return
    print_seed(report)
