"""Jobs and library calls on local Spark: nested field names never reach DDL, py4j never logs
the closure with the keys, retire_dek needs evidence, the legacy DEK stops decrypting once a
scope is off it, and row binding from the encrypt job."""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import uuid

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError, KeyringError, UnknownKeyVersion
from envelope_encryption.jobs import (
    encrypt_columns,
    kek_setup,
    reencrypt_columns,
    retire_dek,
)
from envelope_encryption.jobs.common import build_context
from envelope_encryption.kek.base import WrapContext
from envelope_encryption.keyring.base import LEGACY_KEY_TYPE, DekRecord
from envelope_encryption.logs import KEY_CARRIERS, KeyCarrierFilter, setup_logging
from envelope_encryption.secret import SecretKey
from envelope_encryption.spark.columns import TableRef, decrypt_columns
from envelope_encryption.spark.columns import encrypt_columns as encrypt_frame
from tests.support.keyrings import append_signed


@pytest.fixture()
def settings(tmp_path):
    return Settings(
        catalog=f"k{uuid.uuid4().hex[:8]}", schemas=("hr",),
        options={"local-kek-file": str(tmp_path / "kek.key")},
    )


# -- nested field names ----------------------------------------------------------------------

EVIL = "x` STRING) LOCATION '{where}' --"


def test_a_crafted_nested_field_name_is_refused_before_any_ddl(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    evil_dir = tmp_path / "evil"
    landing = tmp_path / "landing"
    landing.mkdir()
    row = {"id": 1, "name": "Ada", "info": {"tags": [{EVIL.format(where=evil_dir): 1}]}}
    (landing / "a.json").write_text(json.dumps(row) + "\n")
    with pytest.raises(ConfigError, match=r"invalid source field in info\.tags"):
        encrypt_columns.run(settings, spark, source=str(landing), source_format="json",
                            target_table="hr.people", columns=["name"])
    ctx = build_context(settings, spark)
    assert not ctx.lakehouse.table_exists(spark, settings.catalog, "hr", "people")
    assert not evil_dir.exists()


def test_nested_types_are_written_with_quoted_field_names(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    landing.mkdir()
    row = {"id": 1, "name": "Ada", "info": {"first-seen": "2024", "m": {"k": [1, 2]}}}
    (landing / "a.json").write_text(json.dumps(row) + "\n")
    encrypt_columns.run(settings, spark, source=str(landing), source_format="json",
                        target_table="hr.people", columns=["name"])
    ctx = build_context(settings, spark)
    stored = spark.table(ctx.lakehouse.table(settings.catalog, "hr", "people")).first()
    assert stored["info"]["first-seen"] == "2024" and stored["info"]["m"]["k"] == [1, 2]


# -- py4j DEBUG logs -------------------------------------------------------------------------


@pytest.fixture()
def user_debug_logging():
    """A fresh process whose user ran ``logging.basicConfig(level=logging.DEBUG)``: py4j
    loggers unguarded, a DEBUG handler on the root. Everything is put back afterwards."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).filters))
             for name in KEY_CARRIERS}
    root = logging.getLogger()
    root_level = root.level
    for name in KEY_CARRIERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.NOTSET)
        for f in [f for f in logger.filters if isinstance(f, KeyCarrierFilter)]:
            logger.removeFilter(f)
    handler = Keep(logging.DEBUG)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        for name, (level, filters) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.filters[:] = filters


def _hits(text: str, key: bytes) -> list[str]:
    """Where ``key`` shows in ``text``: raw, hex, base64 (any alignment), or inside any
    base64 run (py4j sends a pickled closure as base64, after a one-letter type prefix)."""
    found = [form for form in (key.hex(), key.hex().upper(), key.decode("latin-1"))
             if form in text]
    for shift in range(3):  # base64 of the key at each byte alignment inside a longer blob
        encoded = base64.b64encode(bytes(shift) + key).decode()
        core = encoded[4 * ((shift + 2) // 3):-4]
        if core and core in text:
            found.append(f"base64+{shift}")
    for run in re.findall(r"[A-Za-z0-9+/]{40,}={0,2}", text):
        for start in range(4):
            chunk = run[start:]
            chunk = chunk[:len(chunk) // 4 * 4]
            try:
                if key in base64.b64decode(chunk):
                    found.append("inside a base64 run")
            except ValueError:
                continue
    return found


def _log_text(records: list[logging.LogRecord]) -> str:
    return "\n".join(f"{r.name} {r.levelname} {r.getMessage()}" for r in records)


def test_the_scan_finds_a_closure_key_in_unguarded_py4j_logs(spark, user_debug_logging):
    planted = secrets.token_bytes(32)

    def carry(batches):
        key = planted  # in the closure, as the DataFrame functions carry DEKs
        for batch in batches:
            assert key
            yield batch

    spark.range(2).mapInArrow(carry, "id long").collect()
    assert any(r.name.startswith("py4j") and r.levelno == logging.DEBUG
               for r in user_debug_logging)
    assert _hits(_log_text(user_debug_logging), planted)


def test_library_calls_at_debug_leave_no_py4j_record_and_no_key(
        settings, spark, user_debug_logging):
    kek_setup.run(settings, spark)
    user_debug_logging.clear()
    # What a notebook does: the package's setup (the notebooks call it), then the DataFrame
    # API of the README. A user's DEBUG root stays DEBUG for everything else.
    setup_logging(verbose=True)
    assert logging.getLogger().level == logging.DEBUG
    ctx = build_context(settings, spark)
    ref = TableRef(settings.catalog, "hr", "people")
    df = spark.createDataFrame([(1, "Ada")], "id int, name string")
    cells = encrypt_frame(df, ["name"], keyring=ctx.keyring, table=ref, row_key="id").cache()
    decrypt_columns(cells, ["name"], keyring=ctx.keyring, table=ref, row_key="id").collect()
    py4j = [r for r in user_debug_logging if r.name.startswith("py4j")]
    assert not [r for r in py4j if r.levelno < logging.WARNING]
    text = _log_text(user_debug_logging)
    assert "Command to send" not in text and "Answer received" not in text
    assert any(r.name.startswith("envelope_encryption") for r in user_debug_logging)
    for key in ctx.keyring.deks(ref.scope).values():
        assert _hits(text, key.reveal()) == []


def test_the_dataframe_functions_guard_py4j_without_any_setup(settings, spark,
                                                              user_debug_logging):
    kek_setup.run(settings, spark)
    ctx = build_context(settings, spark)
    user_debug_logging.clear()
    ref = TableRef(settings.catalog, "hr", "people")
    df = spark.createDataFrame([(1, "Ada")], "id int, name string")
    encrypt_frame(df, ["name"], keyring=ctx.keyring, table=ref).collect()
    assert not [r for r in user_debug_logging
                if r.name.startswith("py4j") and r.levelno < logging.WARNING]
    for key in ctx.keyring.deks(ref.scope).values():
        assert _hits(_log_text(user_debug_logging), key.reveal()) == []


# -- retire_dek ------------------------------------------------------------------------------


def test_retire_dek_needs_the_scope_tables_or_force(settings, spark):
    kek_setup.run(settings, spark)
    ctx = build_context(settings, spark)
    scope = f"{settings.catalog}.hr"
    ctx.keyring.create_version(scope)
    with pytest.raises(ConfigError, match="without --tables"):
        retire_dek.run(settings, spark, schema="hr", version=1, tables=[])
    other = TableRef(settings.catalog, "elsewhere", "t")
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {ctx.lakehouse.schema(other.catalog, other.schema)}")
    spark.createDataFrame([(1,)], "id int").write.saveAsTable(
        ctx.lakehouse.table(other.catalog, other.schema, other.table).replace("`", ""))
    with pytest.raises(ConfigError, match="none of the tables given is in"):
        retire_dek.run(settings, spark, schema="hr", version=1, tables=["elsewhere.t"])
    assert ctx.keyring.versions(scope)[0].state.value == "ENABLED"
    assert retire_dek.run(settings, spark, schema="hr", version=1, tables=[],
                          force=True).state.value == "RETIRED"
    parser = retire_dek.build_parser()
    assert "Required unless --force" in parser.format_help().replace("\n", " ").replace(
        "  ", " ")


# -- legacy DEK retired once a scope is off it -----------------------------------------------


def _legacy_table(spark, ctx, catalog: str, table: str, dek_text: str, names: list[str]) -> None:
    """A table written exactly as the original notebooks wrote it."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {ctx.lakehouse.schema(catalog, 'old')}")
    raw = spark.createDataFrame(list(enumerate(names)), "id int, name string")
    raw.createOrReplaceTempView("legacy_raw")
    spark.sql(
        "SELECT id, base64(aes_encrypt(name, :dek, 'GCM', 'DEFAULT')) AS name FROM legacy_raw",
        args={"dek": dek_text},
    ).write.saveAsTable(ctx.lakehouse.table(catalog, "old", table).replace("`", ""))


def test_the_legacy_dek_stops_decrypting_once_no_legacy_cell_is_left(settings, spark):
    kek_setup.run(settings, spark)
    ctx = build_context(settings, spark)
    scope = f"{settings.catalog}.old"
    dek_text = base64.b64encode(secrets.token_bytes(24)).decode()  # the notebooks' DEK
    wrapped = ctx.kek.wrap(SecretKey(dek_text.encode()), WrapContext(scope, 1))
    append_signed(ctx.store, ctx.kek, DekRecord(scope=scope, version=1, wrapped=wrapped,
                                                kek_backend=ctx.kek.backend,
                                                key_type=LEGACY_KEY_TYPE))
    ctx.keyring.create_version(scope)
    _legacy_table(spark, ctx, settings.catalog, "people", dek_text, ["Ada", "Alan"])
    _legacy_table(spark, ctx, settings.catalog, "other", dek_text, ["Grace"])
    legacy_value = spark.table(
        ctx.lakehouse.table(settings.catalog, "old", "other")).first()["name"]

    # Legacy values name no version: retire_dek must still see that v1 is in use.
    with pytest.raises(KeyringError, match="still use it"):
        retire_dek.run(settings, spark, schema="old", version=1, tables=["old.people"])
    # One table moved, the other still legacy: the legacy DEK stays.
    with pytest.raises(KeyringError, match="not retired: 1 value"):
        reencrypt_columns.run(settings, spark, table="old.people", columns=["name"],
                              retire_legacy=True, tables=["old.other"])
    assert ctx.keyring.versions(scope)[0].state.value == "ENABLED"
    report = reencrypt_columns.run(settings, spark, table="old.other", columns=["name"],
                                   retire_legacy=True, tables=["old.people"])
    assert report.retired_legacy == [1] and "retired" in str(report)

    fresh = build_context(settings, spark)
    assert fresh.keyring.versions(scope)[0].state.value == "RETIRED"
    with pytest.raises(UnknownKeyVersion):
        fresh.keyring.dek(scope, 1)
    assert 1 not in fresh.keyring.deks(scope)  # what the SQL layer's enabled versions read
    ref = TableRef(settings.catalog, "old", "people")
    moved = spark.table(ctx.lakehouse.table(settings.catalog, "old", "people"))
    assert sorted(r["name"] for r in decrypt_columns(
        moved, ["name"], keyring=fresh.keyring, table=ref).collect()) == ["Ada", "Alan"]
    stale = spark.createDataFrame([(9, legacy_value)], "id int, name string")
    with pytest.raises(Exception, match="not an encrypted cell") as refused:
        decrypt_columns(stale, ["name"], keyring=fresh.keyring, table=ref,
                        types={"name": "string"}).collect()
    assert "Grace" not in str(refused.value)
    assert decrypt_columns(stale, ["name"], keyring=fresh.keyring, table=ref, strict=False,
                           types={"name": "string"}).first()["name"] is None


# -- row binding from the job ----------------------------------------------------------------


def test_encrypt_job_binds_rows_to_the_row_key_column(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.csv").write_text("id,name\n1,Ada\n2,Alan\n")
    args = encrypt_columns.build_parser().parse_args(
        ["--source", str(landing), "--target-table", "hr.people", "--columns", "name",
         "--id-column", "id", "--row-key-column", "id"])
    assert args.row_key_column == "id"
    encrypt_columns.run(settings, spark, source=str(landing), source_format="csv",
                        target_table="hr.people", columns=["name"], id_column="id",
                        row_key_column="id")
    ctx = build_context(settings, spark)
    stored = spark.table(ctx.lakehouse.table(settings.catalog, "hr", "people"))
    assert all(r["name"].startswith("ee1:1:string+row:") for r in stored.collect())
    ref = TableRef(settings.catalog, "hr", "people")
    plain = decrypt_columns(stored, ["name"], keyring=ctx.keyring, table=ref, row_key="id")
    assert {r["id"]: r["name"] for r in plain.collect()} == {1: "Ada", 2: "Alan"}
    with pytest.raises(Exception, match="bound to its row"):
        decrypt_columns(stored, ["name"], keyring=ctx.keyring, table=ref).collect()
    # A later run must bind the same way: a mixed column would read badly.
    (landing / "b.csv").write_text("id,name\n3,Grace\n")
    with pytest.raises(ConfigError, match="bound to their rows"):
        encrypt_columns.run(settings, spark, source=str(landing), source_format="csv",
                            target_table="hr.people", columns=["name"], id_column="id")
    assert stored.count() == 2
