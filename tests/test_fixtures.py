"""dump, load and seed on every backend, with models of the shapes real applications have
(tests/apps/shapes_app.py, the FastAPI template's User/Item): foreign-key order, exact
values, all-or-nothing, conflicts and natural keys, sequences, secrets, and the round trip
as a property on generated data."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from tests.apps import shapes_app
from tests.helpers import Dbtool, assert_clean_error, model_rows, run_sql

SHAPES = "tests.apps.shapes_app:Base"
TABLES = ("plan", "account", "category", "tag", "item", "item_tag", "order_line")
# Parents before the tables that reference them.
LOAD_ORDER = ("category", "order_line", "plan", "tag", "account", "item", "item_tag")
OWNER = "11111111-1111-1111-1111-111111111111"
ITEM = "6f1c2a8e-0b7d-4e0a-9a55-000000000001"


def record(table: str, **row: Any) -> dict[str, Any]:
    return {"table": table, "row": row}


# Children before parents, a tree's leaf before its root: the files' order is not the load's.
FIXTURES = [
    record("item_tag", item_id=ITEM, tag_id=1),
    record(
        "item",
        id=ITEM,
        owner_id=OWNER,
        category_id=3,
        title="First",
        status="published",
        price="12.3400",
        picture="AAEC/w==",
        happened_at="2026-01-02T03:04:05.123456+02:00",
        api_token="secret-token",
    ),
    record("category", id=3, parent_id=2, name="leaf"),
    record("category", id=2, parent_id=1, name="mid"),
    record("category", id=1, parent_id=None, name="root"),
    record("tag", id=1, name="new"),
    record("account", id=OWNER, email="a@example.com", hashed_password="$argon2id$x", plan_id=1),
    record(
        "plan",
        id=1,
        code="free",
        name="Free",
        price="0.00",
        features={"seats": 1, "tags": ["a", "b"], "nested": {"on": True}},
    ),
    record("order_line", order_no=7, line=1),
]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in records))
    return path


def initialised(url: str) -> Dbtool:
    dbtool = Dbtool(url, env={"DBTOOL_MODELS": SHAPES})
    result = dbtool("init")
    assert result.exit_code == 0, result.output
    return dbtool


@pytest.fixture
def shapes(database_url: str) -> Dbtool:
    return initialised(database_url)


@pytest.fixture
def other(second_database_url: str) -> Dbtool:
    """A second database with the same tables: where a dump is loaded back."""
    return initialised(second_database_url)


def dumped(dbtool: Dbtool, *args: str) -> list[dict[str, Any]]:
    result = dbtool("dump", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def counts(url: str) -> dict[str, int]:
    return {table: run_sql(url, f"SELECT count(*) FROM {table}")[0][0] for table in TABLES}


def rows_of(url: str, table: str) -> list[tuple[Any, ...]]:
    """A table's rows as the models' types read them, by plain SQLAlchemy, not dbtool."""
    return model_rows(url, shapes_app.Base.metadata.tables[table])


def test_load_puts_parents_first_whatever_the_files_order(shapes: Dbtool, tmp_path: Path) -> None:
    result = shapes("load", str(write_jsonl(tmp_path / "fixtures.jsonl", FIXTURES)))
    assert result.exit_code == 0, result.output
    assert "Loaded 9 rows into 7 tables" in result.stderr
    assert counts(shapes.url) == {
        "plan": 1, "account": 1, "category": 3, "tag": 1, "item": 1, "item_tag": 1,
        "order_line": 1,
    }  # fmt: skip
    # Server defaults fill what the file leaves out.
    assert run_sql(shapes.url, "SELECT quantity, note FROM order_line") == [(1, "")]
    assert run_sql(shapes.url, "SELECT count(*) FROM plan WHERE created_at IS NOT NULL") == [(1,)]


def test_dump_writes_exact_values_in_key_order_and_leaves_secrets_out(
    shapes: Dbtool, tmp_path: Path
) -> None:
    assert shapes("load", str(write_jsonl(tmp_path / "f.jsonl", FIXTURES))).exit_code == 0
    result = shapes("dump")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [item["table"] for item in records] == [
        "category", "category", "category", "order_line", "plan", "tag", "account", "item",
        "item_tag",
    ]  # fmt: skip
    assert [item["row"]["id"] for item in records[:3]] == [1, 2, 3]
    item = next(item["row"] for item in records if item["table"] == "item")
    assert item["price"] == "12.3400"  # a decimal as text: JSON numbers go through float
    assert base64.b64decode(item["picture"]) == b"\x00\x01\x02\xff"
    assert item["status"] == "published"
    assert item["owner_id"] == OWNER and item["id"] == ITEM
    # The instant is kept, in UTC (SQLite and MariaDB store no zone).
    happened = datetime.fromisoformat(item["happened_at"])
    assert happened == datetime(2026, 1, 2, 1, 4, 5, happened.microsecond, tzinfo=UTC)
    plan = next(item["row"] for item in records if item["table"] == "plan")
    assert plan["features"] == {"seats": 1, "tags": ["a", "b"], "nested": {"on": True}}
    # Secrets: the user model's hash, and columns named like one.
    account = next(item["row"] for item in records if item["table"] == "account")
    assert "hashed_password" not in account and "api_token" not in item
    assert "left out of account: hashed_password" in result.stderr
    assert "left out of item: api_token" in result.stderr
    kept = dumped(shapes, "--with-hashes")
    account = next(item["row"] for item in kept if item["table"] == "account")
    assert account["hashed_password"] == "$argon2id$x"


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_round_trip_into_an_empty_database(
    shapes: Dbtool, other: Dbtool, tmp_path: Path, fmt: str
) -> None:
    assert shapes("load", str(write_jsonl(tmp_path / "f.jsonl", FIXTURES))).exit_code == 0
    target = f"{tmp_path}/dump/" if fmt == "csv" else str(tmp_path / f"dump.{fmt}")
    result = shapes("dump", "--with-hashes", "-o", target)
    assert result.exit_code == 0, result.output
    if fmt == "csv":
        assert (tmp_path / "dump" / "order.txt").read_text().split() == list(LOAD_ORDER)
        assert (tmp_path / "dump" / "account.csv").stat().st_mode & 0o077 == 0
    else:
        assert Path(target).stat().st_mode & 0o077 == 0  # it holds password hashes
    loaded = other("load", target)
    assert loaded.exit_code == 0, loaded.output
    for table in TABLES:
        assert rows_of(other.url, table) == rows_of(shapes.url, table), table
    assert dumped(other, "--with-hashes") == dumped(shapes, "--with-hashes")


def test_a_dump_without_hashes_loads_users_that_cannot_log_in_yet(
    shapes: Dbtool, other: Dbtool, tmp_path: Path
) -> None:
    assert shapes("load", str(write_jsonl(tmp_path / "f.jsonl", FIXTURES))).exit_code == 0
    assert shapes("dump", "-o", str(tmp_path / "plain.jsonl")).exit_code == 0
    assert other("load", str(tmp_path / "plain.jsonl")).exit_code == 0
    assert run_sql(other.url, "SELECT hashed_password FROM account") == [("!",)]
    # Re-loaded over the original with update, it keeps the hash it has.
    result = shapes("load", str(tmp_path / "plain.jsonl"), "--on-conflict", "update")
    assert result.exit_code == 0, result.output
    assert run_sql(shapes.url, "SELECT hashed_password FROM account") == [("$argon2id$x",)]


def test_an_invalid_value_loads_nothing_and_names_the_line(shapes: Dbtool, tmp_path: Path) -> None:
    bad = [*FIXTURES[2:6], record("tag", id=2, name="ok"), record("tag", id="three", name="x")]
    result = shapes("load", str(write_jsonl(tmp_path / "bad.jsonl", bad)))
    assert_clean_error(result, 1, "1 invalid row, nothing was loaded", "bad.jsonl:6", "id")
    assert counts(shapes.url) == dict.fromkeys(TABLES, 0)
    unknown = [record("category", id=1, name="x", colour="red"), record("nope", row={})]
    result = shapes("load", str(write_jsonl(tmp_path / "unknown.jsonl", unknown)))
    assert_clean_error(result, 1, "2 invalid rows", "unknown.jsonl:1", "'colour'")
    assert "unknown.jsonl:2: 'nope' is not a table of the models" in result.stderr
    assert counts(shapes.url) == dict.fromkeys(TABLES, 0)


def test_a_bad_csv_value_is_named_by_file_line_and_column(shapes: Dbtool, tmp_path: Path) -> None:
    """Whichever path checks it (dbtool, or the database's own CSV parser on the bulk path),
    the error names the place, never the value (it could be a secret)."""
    folder = tmp_path / "fixtures"
    folder.mkdir()
    (folder / "tag.csv").write_text("id,name\n1,kept\n")
    (folder / "plan.csv").write_text(
        "id,code,name,price,features\n1,free,Free,0.00,{}\n2,pro,Pro,s3cr3t-value,{}\n"
    )
    result = shapes("load", str(folder))
    line = assert_clean_error(result, 1, "plan.csv:3", "price", "nothing was loaded")
    assert "s3cr3t" not in result.output, line
    assert counts(shapes.url) == dict.fromkeys(TABLES, 0)
    (folder / "plan.csv").write_text("id,code,name,price,features\n1,free,,0.00,{}\n")
    result = shapes("load", str(folder))  # an empty field in a NOT NULL text column: ''
    assert result.exit_code == 0, result.output
    assert run_sql(shapes.url, "SELECT name FROM plan") == [("",)]


def test_a_missing_parent_loads_nothing(shapes: Dbtool, tmp_path: Path) -> None:
    orphan = [record("category", id=1, name="root"), record("category", id=5, parent_id=9,
              name="orphan")]  # fmt: skip
    result = shapes("load", str(write_jsonl(tmp_path / "orphan.jsonl", orphan)))
    line = assert_clean_error(result, 1, "nothing was loaded")
    assert "category" in line
    assert counts(shapes.url)["category"] == 0


def test_conflicts_fail_skip_and_update_and_reruns_change_nothing(
    shapes: Dbtool, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", FIXTURES)
    assert shapes("load", str(path)).exit_code == 0
    before = {table: rows_of(shapes.url, table) for table in TABLES}
    result = shapes("load", str(path))
    assert_clean_error(result, 4, "exists already", "nothing was loaded", "--on-conflict skip")
    changed = [
        {**item, "row": {**item["row"], "name": "Renamed"}} if item["table"] == "tag" else item
        for item in FIXTURES
    ]
    skip = shapes("load", str(write_jsonl(tmp_path / "changed.jsonl", changed)),
                  "--on-conflict", "skip")  # fmt: skip
    assert skip.exit_code == 0, skip.output
    assert "tag: 0 inserted, 1 kept" in skip.stderr
    assert {table: rows_of(shapes.url, table) for table in TABLES} == before
    update = shapes("load", str(tmp_path / "changed.jsonl"), "--on-conflict", "update", "--json")
    assert update.exit_code == 0, update.output
    assert json.loads(update.stdout)["tables"]["tag"] == {
        "rows": 1, "inserted": 0, "kept": 0, "updated": 1,
    }  # fmt: skip
    assert run_sql(shapes.url, "SELECT name FROM tag") == [("Renamed",)]
    after = {table: rows_of(shapes.url, table) for table in TABLES}
    again = shapes("load", str(tmp_path / "changed.jsonl"), "--on-conflict", "update")
    assert again.exit_code == 0
    assert {table: rows_of(shapes.url, table) for table in TABLES} == after


def test_natural_keys_match_existing_rows_by_a_unique_key(shapes: Dbtool, tmp_path: Path) -> None:
    assert shapes("load", str(write_jsonl(tmp_path / "f.jsonl", FIXTURES))).exit_code == 0
    # The same plan under another id, by its code: updated in place, keeping its id.
    plans = [
        record("plan", id=50, code="free", name="Free forever", price="0.00", features={}),
        record("plan", id=51, code="pro", name="Pro", price="9.99", features={"seats": 5}),
    ]
    path = write_jsonl(tmp_path / "plans.jsonl", plans)
    result = shapes("load", str(path), "--on-conflict", "update", "--key", "code")
    assert result.exit_code == 0, result.output
    assert sorted(run_sql(shapes.url, "SELECT id, code, name FROM plan")) == [
        (1, "free", "Free forever"), (51, "pro", "Pro"),
    ]  # fmt: skip
    result = shapes("load", str(path), "--on-conflict", "update", "--key", "name")
    assert_clean_error(result, 2, "--key name: not a unique key of plan", "code")
    result = shapes("load", str(path), "--on-conflict", "update", "--key", "colour")
    assert_clean_error(result, 2, "--key colour: no table of the models has them")
    result = shapes("load", str(path), "--on-conflict", "update", "--key", "plan:colour")
    assert_clean_error(result, 2, "plan has no column colour")
    # One table's key, the others by primary key: a file of plans and categories.
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [
        record("plan", id=60, code="pro", name="Pro+", price="19.99", features={}),
        record("category", id=1, name="renamed root"),
    ])  # fmt: skip
    result = shapes("load", str(mixed), "--on-conflict", "update", "--key", "plan:code")
    assert result.exit_code == 0, result.output
    assert run_sql(shapes.url, "SELECT id, name FROM plan WHERE code = 'pro'") == [(51, "Pro+")]
    assert run_sql(shapes.url, "SELECT name FROM category WHERE id = 1") == [("renamed root",)]
    result = shapes("load", str(path), "--key", "code")
    assert_clean_error(result, 2, "--key goes with --on-conflict skip or update")


def test_ids_continue_after_the_loaded_ones(shapes: Dbtool, tmp_path: Path) -> None:
    tags = [record("tag", id=n, name=f"t{n}") for n in (3, 40, 7)]
    assert shapes("load", str(write_jsonl(tmp_path / "tags.jsonl", tags))).exit_code == 0
    run_sql(shapes.url, "INSERT INTO tag (name) VALUES ('next')")
    assert run_sql(shapes.url, "SELECT id FROM tag WHERE name = 'next'") == [(41,)]


def test_where_and_related_keep_one_tenant(shapes: Dbtool, tmp_path: Path) -> None:
    other_owner = "22222222-2222-2222-2222-222222222222"
    more = [
        *FIXTURES,
        record("account", id=other_owner, email="b@example.com", hashed_password="x"),
        record("item", id=str(uuid.uuid4()), owner_id=other_owner, title="Theirs"),
    ]
    assert shapes("load", str(write_jsonl(tmp_path / "f.jsonl", more))).exit_code == 0
    kept = dumped(shapes, "account", "item", "--where", "account:email = 'a@example.com'",
                  "--related")  # fmt: skip
    assert [(item["table"], item["row"].get("email") or item["row"]["title"]) for item in kept] == [
        ("account", "a@example.com"), ("item", "First"),
    ]  # fmt: skip
    only = dumped(shapes, "account", "item", "--where", "account:email = 'a@example.com'")
    assert len([item for item in only if item["table"] == "item"]) == 2
    result = shapes("dump", "nope")
    assert_clean_error(result, 2, "not a table of the models: nope")
    result = shapes("dump", "--related")
    assert_clean_error(result, 2, "--related goes with --where")


def test_a_cycle_is_refused_by_name(database_url: str, tmp_path: Path) -> None:
    dbtool = Dbtool(database_url, env={"DBTOOL_MODELS": "tests.apps.cycle_app:Base"})
    assert dbtool("init").exit_code == 0
    records = [record("team", id=1, name="a"), record("person", id=1, team_id=1)]
    result = dbtool("load", str(write_jsonl(tmp_path / "c.jsonl", records)))
    assert_clean_error(result, 2, "reference each other in a cycle", "person", "team")


def test_a_deferrable_cycle_loads_where_the_database_defers(
    database_url: str, tmp_path: Path, backend: str
) -> None:
    from dbtool.backends import backend_for

    if backend == "mariadb":
        pytest.skip("MariaDB's DDL has no DEFERRABLE: such models cannot be created there")

    dbtool = Dbtool(database_url, env={"DBTOOL_MODELS": "tests.apps.cycle_app:DeferrableBase"})
    assert dbtool("init").exit_code == 0
    records = [record("club", id=1, name="a", captain_id=7), record("member", id=7, club_id=1)]
    result = dbtool("load", str(write_jsonl(tmp_path / "c.jsonl", records)))
    if backend_for(make_url(database_url).get_backend_name()).defers_constraints:
        assert result.exit_code == 0, result.output
        assert run_sql(database_url, "SELECT captain_id FROM club") == [(7,)]
    else:
        assert_clean_error(result, 2, "cycle", "checks each row as it is written")
        assert run_sql(database_url, "SELECT count(*) FROM club") == [(0,)]


def test_the_template_models_round_trip(database_url: str, second_database_url: str,
                                        tmp_path: Path) -> None:  # fmt: skip
    """The FastAPI template's User and Item (SQLModel, UUID ids, an FK with ON DELETE)."""
    env = {"DBTOOL_MODELS": "tests.apps.template_app:SQLModel"}
    source, target = Dbtool(database_url, env=env), Dbtool(second_database_url, env=env)
    for dbtool in (source, target):
        assert dbtool("init").exit_code == 0
    add = source("users", "add", "admin@example.com", "--superuser", "--password-stdin",
                 input="long enough pw\n")  # fmt: skip
    assert add.exit_code == 0, add.output
    owner = run_sql(database_url, 'SELECT id FROM "user"')[0][0]
    owner_id = str(uuid.UUID(str(owner)))
    items = [record("item", id=str(uuid.uuid4()), owner_id=owner_id, title=f"Item {n}",
                    description=None if n % 2 else "some") for n in range(5)]  # fmt: skip
    assert source("load", str(write_jsonl(tmp_path / "items.jsonl", items))).exit_code == 0
    assert source("dump", "--with-hashes", "-o", str(tmp_path / "all.jsonl")).exit_code == 0
    assert target("load", str(tmp_path / "all.jsonl")).exit_code == 0
    assert dumped(target, "--with-hashes") == dumped(source, "--with-hashes")
    login = target("users", "check-password", "admin@example.com", "--password-stdin",
                   input="long enough pw\n")  # fmt: skip
    assert login.exit_code == 0, login.output


# --- the round trip, as a property --------------------------------------------------------

TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=30
)  # no NUL, no lone surrogates: what no text column stores
CODES = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(CODES, inner, max_size=3),
    max_leaves=6,
)
MOMENTS = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2037, 12, 31),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                               timezone(timedelta(hours=-8))]),
)  # fmt: skip


@st.composite
def fixture_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    codes = draw(st.lists(CODES, min_size=1, max_size=4, unique=True))
    plans = [
        record("plan", id=n + 1, code=code, name=draw(TEXT),
               price=str(draw(st.decimals(0, 10**7, places=2))),
               features=draw(st.dictionaries(CODES, JSON_VALUES, max_size=3)))
        for n, code in enumerate(codes)
    ]  # fmt: skip
    owners = [str(uuid.UUID(int=draw(st.integers(1, 2**64)))) for _ in range(2)]
    accounts = [
        record("account", id=owner, email=f"u{n}@example.com", hashed_password=draw(TEXT),
               plan_id=draw(st.none() | st.integers(1, len(plans))))
        for n, owner in enumerate(dict.fromkeys(owners))
    ]  # fmt: skip
    tree = draw(st.integers(1, 6))
    categories = [
        record("category", id=n + 1, name=draw(TEXT),
               parent_id=None if n == 0 else draw(st.integers(1, n)))
        for n in range(tree)
    ]  # fmt: skip
    items = [
        record("item", id=str(uuid.uuid4()), owner_id=draw(st.sampled_from(owners)),
               category_id=draw(st.none() | st.integers(1, tree)), title=draw(TEXT),
               status=draw(st.sampled_from(["draft", "published"])),
               price=draw(st.none() | st.decimals(-(10**7), 10**7, places=4).map(str)),
               picture=draw(st.none() | st.binary(max_size=40).map(
                   lambda data: base64.b64encode(data).decode())),
               happened_at=draw(st.none() | MOMENTS.map(datetime.isoformat)),
               api_token=draw(st.none() | TEXT))
        for _ in range(draw(st.integers(0, 4)))
    ]  # fmt: skip
    records = plans + accounts + categories + items
    return draw(st.permutations(records))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(records=fixture_sets())
def test_dump_then_load_gives_back_the_same_rows(
    shapes: Dbtool, other: Dbtool, tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    for dbtool in (shapes, other):
        run_sql(dbtool.url, "UPDATE category SET parent_id = NULL")  # (InnoDB: row by row)
        for table in reversed(LOAD_ORDER):
            run_sql(dbtool.url, f"DELETE FROM {table}")
    source = write_jsonl(tmp_path / "generated.jsonl", records)
    loaded = shapes("load", str(source))
    assert loaded.exit_code == 0, loaded.output
    dump = tmp_path / "dump.jsonl"
    assert shapes("dump", "--with-hashes", "-o", str(dump)).exit_code == 0
    assert other("load", str(dump)).exit_code == 0
    for table in TABLES:
        assert rows_of(other.url, table) == rows_of(shapes.url, table), table
    again = tmp_path / "again.jsonl"
    assert other("dump", "--with-hashes", "-o", str(again)).exit_code == 0
    assert again.read_text() == dump.read_text()
    # And the values are what was generated, as the database keeps them.
    written = {(item["table"], json.dumps(item["row"].get("id"))): item["row"] for item in records}
    for line in dump.read_text().splitlines():
        item = json.loads(line)
        original = written[item["table"], json.dumps(item["row"]["id"])]
        for name in ("code", "name", "title", "email", "features", "status", "picture"):
            if name in original:
                assert item["row"][name] == original[name], name
        for name in ("price",):
            if original.get(name) is not None:
                assert Decimal(item["row"][name]) == Decimal(original[name])


# --- seed, and the CI recipe ---------------------------------------------------------------


def seed_project(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "seed"
    folder.mkdir()
    (folder / "plan.csv").write_text("id,code,name,price,features\n1,free,Free,0.00,{}\n"
                                     "2,pro,Pro,9.99,\"{\"\"seats\"\": 5}\"\n")  # fmt: skip
    write_jsonl(folder / "reference.jsonl", FIXTURES[2:6])
    (tmp_path / "seedfns.py").write_text(
        "from sqlalchemy import select\n"
        "from tests.apps.shapes_app import Tag\n\n"
        "async def run(session):\n"
        "    if await session.scalar(select(Tag).where(Tag.name == 'demo')) is None:\n"
        "        session.add(Tag(name='demo'))\n"
    )
    return {"DBTOOL_MODELS": SHAPES, "DBTOOL_SEED": f"{folder},seedfns:run",
            "PYTHONPATH": f"{tmp_path}:{Path(__file__).parents[1]}"}  # fmt: skip


def test_seed_is_idempotent(database_url: str, tmp_path: Path) -> None:
    dbtool = Dbtool(database_url, env=seed_project(tmp_path))
    first = dbtool.run("init", "--seed")
    assert first.exit_code == 0, first.output
    assert "Seeded 6 rows from" in first.stderr and "Ran the seed function seedfns:run" in (
        first.stderr
    )
    state = {table: rows_of(database_url, table) for table in TABLES}
    assert len(state["plan"]) == 2 and len(state["category"]) == 3
    assert sorted(row[1] for row in state["tag"]) == ["demo", "new"]
    again = dbtool.run("seed")
    assert again.exit_code == 0, again.output
    assert {table: rows_of(database_url, table) for table in TABLES} == state


def test_seed_errors_are_one_line_and_change_nothing(database_url: str, tmp_path: Path) -> None:
    dbtool = Dbtool(database_url, env={"DBTOOL_MODELS": SHAPES})
    assert_clean_error(dbtool("seed"), 2, "DBTOOL_SEED is not set")
    result = dbtool("init", "--seed")
    assert_clean_error(result, 2, "DBTOOL_SEED is not set")
    assert dbtool("init").exit_code == 0  # the failed init --seed created nothing before
    result = dbtool("seed", env={"DBTOOL_SEED": "no/such/folder"})
    assert_clean_error(result, 2, "'no/such/folder' is neither a fixture file or folder")
    (tmp_path / "failing.py").write_text(
        "from tests.apps.shapes_app import Tag\n\n"
        "def run(session):\n    session.add(Tag(name='half'))\n    raise RuntimeError('boom')\n"
    )
    env = {"DBTOOL_SEED": "failing:run", "PYTHONPATH": f"{tmp_path}:{Path(__file__).parents[1]}"}
    result = Dbtool(dbtool.url, {**dbtool.env, **env}).run("seed")
    assert_clean_error(result, 1, "the seed function failing:run failed (RuntimeError: boom)",
                       "rolled back")  # fmt: skip
    assert counts(database_url)["tag"] == 0


def test_the_ci_recipe_twice_and_in_parallel(new_database: Any, tmp_path: Path) -> None:
    """`dbtool init --wait 60 --create-database --seed && dbtool users add ... --if-not-exists`
    run twice in a row, and twice at once on another database: the same rows every way."""
    env = seed_project(tmp_path)

    def recipe(dbtool: Dbtool) -> subprocess.Popen[str]:
        return dbtool.spawn("init", "--wait", "60", "--create-database", "--seed", env=env)

    def add_admin(dbtool: Dbtool) -> subprocess.Popen[str]:
        return dbtool.spawn("users", "add", "admin@example.com", "--superuser",
                            "--password-stdin", "--if-not-exists", env=env)  # fmt: skip

    def finish(process: subprocess.Popen[str], input: str | None = None) -> None:
        _, stderr = process.communicate(input, timeout=120)
        assert process.returncode == 0, stderr

    states = []
    for parallel in (False, True):
        dbtool = Dbtool(new_database(), env=env)
        if parallel:
            first, second = recipe(dbtool), recipe(dbtool)
            finish(first)
            finish(second)
            first, second = add_admin(dbtool), add_admin(dbtool)
            finish(first, "long enough pw\n")
            finish(second, "long enough pw\n")
        else:
            for _ in range(2):
                finish(recipe(dbtool))
                finish(add_admin(dbtool), "long enough pw\n")
        url = dbtool.url
        states.append(
            {
                "plan": sorted(run_sql(url, "SELECT code, name, price FROM plan")),
                "tag": sorted(run_sql(url, "SELECT name FROM tag")),
                "category": rows_of(url, "category"),
                "admins": run_sql(url, "SELECT email, is_superuser FROM account"),
            }
        )
    assert states[0] == states[1]
    assert states[0]["admins"] == [("admin@example.com", True)]
