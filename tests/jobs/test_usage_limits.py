"""Usage limits per DEK version, on local Spark: every encryption is counted (per micro-batch,
NULLs not), a batch that would pass the hard limit is refused before anything of it is
written, auto-rotation moves later batches to a new version, each step is in the audit trail,
and ``status`` shows the counts the usage table holds."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError
from envelope_encryption.jobs import encrypt_columns, kek_setup, reencrypt_columns, status
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.inventory_tables import USAGE_INVENTORY
from envelope_encryption.jobs.usage_limits import usage_ledger, usage_limits
from envelope_encryption.keyring.usage import (
    DEFAULT_HARD_LIMIT,
    DEFAULT_SOFT_LIMIT,
    GCM_RANDOM_IV_BOUND,
    UsageLimitReached,
    UsageLimits,
    parse_limit,
)
from envelope_encryption.spark.columns import TableRef, cells_per_version, decrypt_columns

COLUMNS = ["name", "email"]
SCHEMA = "id BIGINT, name STRING, email STRING"


def _settings(tmp_path: Path, **options: str) -> Settings:
    return Settings(catalog=f"u{uuid.uuid4().hex[:8]}", schemas=("hr",),
                    options={"local-kek-file": str(tmp_path / "kek.key"), "run-id": "41",
                             **options})


def _with(settings: Settings, **options: str) -> Settings:
    return Settings(catalog=settings.catalog, schemas=settings.schemas,
                    options={**settings.options, **options})


def _land(landing: Path, name: str, rows: list[tuple[int, str | None, str | None]]) -> int:
    """A JSON lines file of ``rows``; returns its non-NULL values of COLUMNS."""
    landing.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": i, "name": n, "email": e}) for i, n, e in rows]
    (landing / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sum(v is not None for _, n, e in rows for v in (n, e))


def _encrypt(settings: Settings, spark, landing: Path):
    return encrypt_columns.run(settings, spark, source=str(landing), source_format="json",
                               source_schema=SCHEMA, target_table="hr.people",
                               columns=COLUMNS, checkpoint_location=str(landing.parent / "cp"))


def _usage_rows(settings: Settings, spark) -> list[dict]:
    with build_context(settings, spark) as ctx:
        table = ctx.lakehouse.table(settings.catalog, settings.crypto_schema, "dek_usage")
        return [r.asDict() for r in spark.table(table).collect()]


def _stored(settings: Settings, spark):
    with build_context(settings, spark) as ctx:
        return spark.table(ctx.lakehouse.table(settings.catalog, "hr", "people"))


def _events(settings: Settings, spark) -> list[dict]:
    with build_context(settings, spark) as ctx:
        return ctx.keyring.audit.events()


def test_every_value_encrypted_is_counted_per_batch_and_nulls_are_not(spark, tmp_path):
    settings = _settings(tmp_path)
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    expected = 0
    for batch, rows in enumerate([
        [(1, "ann", "a@x"), (2, None, "b@x"), (3, "cy", None)],
        [(4, None, None), (5, "eve", "e@x")],
        [(6, "fay", None), (7, "gus", "g@x"), (8, "hal", "h@x"), (9, None, "i@x")],
    ]):
        expected += _land(landing, f"{batch}.json", rows)
        _encrypt(settings, spark, landing)

    usage = _usage_rows(settings, spark)
    scope = settings.scope("hr")
    # One row per micro-batch (one per run here), each for the version that encrypted it.
    assert len(usage) == 3
    assert {(r["scope"], r["version"], r["table_name"], r["run_id"]) for r in usage} \
        == {(scope, 1, f"{settings.catalog}.hr.people", "41")}
    assert sorted((r["batch_id"], r["encryptions"]) for r in usage) == [(0, 4), (1, 2), (2, 6)]
    # The count equals the cells the table holds, and what was encrypted decrypts.
    assert sum(r["encryptions"] for r in usage) == expected == 12
    assert cells_per_version(_stored(settings, spark), COLUMNS) == {1: expected}
    with build_context(settings, spark) as ctx:
        plain = decrypt_columns(_stored(settings, spark), COLUMNS, keyring=ctx.keyring,
                                table=TableRef(settings.catalog, "hr", "people"))
        assert sum(v is not None for r in plain.collect() for v in (r["name"], r["email"])) \
            == expected

    # status shows the same count per version, and the inventory snapshot holds it.
    document = json.loads(status.run(settings, spark, output_format="json",
                                     write_inventory=True))
    assert document["usage"] == {"table": f"{settings.catalog}.crypto.dek_usage",
                                 "hard_limit": DEFAULT_HARD_LIMIT,
                                 "soft_limit": DEFAULT_SOFT_LIMIT, "auto_rotate": False}
    (hr,) = [s for s in document["scopes"] if s["scope"] == scope]
    assert [(v["version"], v["encryptions"]) for v in hr["versions"]] == [(1, expected)]
    assert f"{expected} encryption(s) of {DEFAULT_HARD_LIMIT}" in status.run(settings, spark)
    with build_context(settings, spark) as ctx:
        snapshot = spark.table(ctx.lakehouse.table(settings.catalog, settings.crypto_schema,
                                                   USAGE_INVENTORY)).collect()
    assert [(r["scope"], r["version"], r["encryptions"], r["hard_limit"]) for r in snapshot] \
        == [(scope, 1, expected, DEFAULT_HARD_LIMIT)]


def test_a_table_source_is_counted_too(spark, tmp_path):
    settings = _settings(tmp_path)
    kek_setup.run(settings, spark)
    with build_context(settings, spark) as ctx:
        ctx.lakehouse.ensure_schema(spark, settings.catalog, "raw", "source")
        source = ctx.lakehouse.table(settings.catalog, "raw", "people")
    spark.createDataFrame([(1, "ann", None), (2, None, None), (3, "cy", "c@x")], SCHEMA) \
        .write.saveAsTable(source.replace("`", ""))
    for _ in range(2):  # the re-run finds every id done: nothing more encrypted or counted
        encrypt_columns.run(settings, spark, source="raw.people", source_format="table",
                            target_table="hr.people", columns=COLUMNS, id_column="id")
    assert [(r["encryptions"], r["batch_id"]) for r in _usage_rows(settings, spark)] \
        == [(3, None)]
    assert cells_per_version(_stored(settings, spark), COLUMNS) == {1: 3}


def test_the_hard_limit_refuses_a_batch_before_any_of_it_is_written(spark, tmp_path):
    settings = _settings(tmp_path, **{"dek-usage-hard-limit": "10",
                                      "dek-usage-soft-limit": "8"})
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    _land(landing, "a.json", [(1, "ann", "a@x"), (2, "bo", "b@x"), (3, "cy", "c@x")])
    _encrypt(settings, spark, landing)  # 6 of 10
    _land(landing, "b.json", [(4, "di", "d@x"), (5, "eve", "e@x"), (6, "fay", "f@x")])
    scope = settings.scope("hr")
    with pytest.raises(UsageLimitReached) as refused:
        _encrypt(settings, spark, landing)  # 6 more would make 12 > 10
    message = str(refused.value)
    assert f"DEK {scope} v1" in message and "encrypted 6 value(s)" in message
    assert "6 more" in message and "hard usage limit of 10" in message
    # Nothing of the refused batch was written or counted.
    assert sorted(r["id"] for r in _stored(settings, spark).collect()) == [1, 2, 3]
    assert [r["encryptions"] for r in _usage_rows(settings, spark)] == [6]
    (event,) = [e for e in _events(settings, spark)
                if e["operation"] == "dek_usage_limit_reached"]
    assert (event["outcome"], event["scope"], event["key_version"], event["run_id"]) \
        == ("refused", scope, 1, "41")
    assert "hard usage limit of 10" in event["detail"]

    # With auto-rotation the same batch (the checkpoint did not commit it) goes to v2.
    report = _encrypt(_with(settings, **{"auto-rotate": "true"}), spark, landing)
    assert report.dek_version == 2 and report.rows_written == 3
    assert cells_per_version(_stored(settings, spark), COLUMNS) == {1: 6, 2: 6}
    assert sorted((r["version"], r["encryptions"]) for r in _usage_rows(settings, spark)) \
        == [(1, 6), (2, 6)]


def test_auto_rotation_at_the_soft_limit_moves_later_batches_to_a_new_version(spark, tmp_path):
    settings = _settings(tmp_path, **{"dek-usage-soft-limit": "4",
                                      "dek-usage-hard-limit": "100", "auto-rotate": "true"})
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    versions = []
    for batch in range(3):
        first = 1 + 2 * batch
        _land(landing, f"{batch}.json", [(first, "n", "e"), (first + 1, "m", "f")])
        versions.append(_encrypt(settings, spark, landing).dek_version)
    # v1 took 4 (its soft limit); each later batch found the active version used up.
    assert versions == [1, 2, 3]
    stored = _stored(settings, spark)
    assert cells_per_version(stored, COLUMNS) == {1: 4, 2: 4, 3: 4}
    by_id = {r["id"]: r["name"].split(":")[1] for r in stored.collect()}
    assert by_id == {1: "1", 2: "1", 3: "2", 4: "2", 5: "3", 6: "3"}

    scope = settings.scope("hr")
    events = _events(settings, spark)
    rotated = [(e["key_version"], e["outcome"]) for e in events
               if e["operation"] == "dek_rotated_on_usage"]
    assert rotated == [(1, "ok"), (2, "ok")]
    assert [e["key_version"] for e in events
            if e["operation"] == "dek_created" and e["scope"] == scope] == [1, 2, 3]
    detail = next(e["detail"] for e in events if e["operation"] == "dek_rotated_on_usage")
    assert "v1 has encrypted 4 value(s), soft limit 4" in detail and "v2 is now active" in detail

    # Re-encryption encrypts too: it moves the 8 cells of v1 and v2 to v3 (v3's own 4 are
    # kept, not counted), and the status inventory's counts equal a direct scan of the table.
    # (With auto-rotation on, it would first rotate v3, used up, and move all 12 to v4.)
    reencrypt_columns.run(_with(settings, **{"auto-rotate": "false"}), spark,
                          table="hr.people", columns=COLUMNS)
    assert cells_per_version(_stored(settings, spark), COLUMNS) == {3: 12}
    usage = _usage_rows(settings, spark)
    scanned: dict[int, int] = {}
    for row in usage:
        scanned[row["version"]] = scanned.get(row["version"], 0) + row["encryptions"]
    assert scanned == {1: 4, 2: 4, 3: 12}
    document = json.loads(status.run(settings, spark, output_format="json"))
    (hr,) = [s for s in document["scopes"] if s["scope"] == scope]
    assert {v["version"]: v["encryptions"] for v in hr["versions"]} == scanned


def test_without_a_usage_table_the_limits_hold_within_the_run(spark, tmp_path):
    settings = _settings(tmp_path, **{"usage-table": "none", "dek-usage-hard-limit": "5",
                                      "dek-usage-soft-limit": "5"})
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    _land(landing, "a.json", [(1, "ann", "a@x"), (2, "bo", "b@x"), (3, "cy", "c@x")])
    with pytest.raises(UsageLimitReached, match="6 more would pass its hard usage limit of 5"):
        _encrypt(settings, spark, landing)
    with build_context(settings, spark) as ctx:
        assert not ctx.lakehouse.table_exists(spark, settings.catalog, "crypto", "dek_usage")
        assert usage_ledger(ctx).totals() == {}
    assert _stored(settings, spark).count() == 0  # the target exists, with no row
    document = json.loads(status.run(settings, spark, output_format="json"))
    assert document["usage"]["table"] == "this process only (no usage table)"
    assert all(v["encryptions"] is None for s in document["scopes"] for v in s["versions"])


def test_limits_are_checked():
    assert UsageLimits().hard == DEFAULT_HARD_LIMIT == 2**30
    assert UsageLimits().soft == DEFAULT_SOFT_LIMIT <= DEFAULT_HARD_LIMIT
    assert parse_limit("2^30", "x") == parse_limit("1_073_741_824", "x") == 2**30
    with pytest.raises(ConfigError, match="2\\^32"):
        UsageLimits(hard=GCM_RANDOM_IV_BOUND + 1, soft=1)
    with pytest.raises(ConfigError, match="soft-limit"):
        UsageLimits(hard=10, soft=11)
    with pytest.raises(ConfigError, match="soft-limit"):
        UsageLimits(hard=10, soft=0)
    with pytest.raises(ConfigError, match="whole number"):
        parse_limit("lots", "dek-usage-hard-limit")
    bad = Settings(options={"auto-rotate": "maybe"})
    with pytest.raises(ConfigError, match="--auto-rotate"):
        usage_limits(bad)
    with pytest.raises(ConfigError, match="--usage-table"):
        from envelope_encryption.keyring.usage import usage_table_name

        usage_table_name("bad name")
