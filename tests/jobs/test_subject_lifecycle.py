"""The DEK lifecycle of a subject-keyed scope, through the jobs, on local Spark (local key
and aws-kms on moto): encrypt by subject -> rotate -> reencrypt_columns --subject-column
(batched and whole) -> every subject still decrypts, now under v2, with the same salt; an
erased subject's cells untouched and still unreadable; a re-run changes nothing; v1 retired
and destroyed, forced only where erased subjects' cells (unreadable already) still name it.
"""

from __future__ import annotations

import uuid

import pytest
from pyspark.errors import PySparkException

from envelope_encryption.cell.subject import is_subject_cell
from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError, KeyringError
from envelope_encryption.jobs import (
    dek_generation,
    dek_state,
    encrypt_columns,
    erase_subject,
    kek_setup,
    reencrypt_columns,
)
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.ingest_sink import table_location
from envelope_encryption.keyring.base import DekState
from envelope_encryption.keyring.subjects import SubjectStore
from envelope_encryption.spark.columns import TableRef, cells_per_version
from envelope_encryption.spark.subject_columns import decrypt_subject_columns
from tests.support.aws_fixtures import REGION

SUBJECTS = 12
ROWS = 120  # ten rows per subject, two encrypted columns: 240 cells
ERASED = "7"
COLUMNS = ["name", "amount"]


def _settings(backend: str, request, tmp_path) -> Settings:
    catalog = f"l{uuid.uuid4().hex[:8]}"
    if backend == "local":
        return Settings(catalog=catalog, schemas=("crm",),
                        options={"local-kek-file": str(tmp_path / "kek.key")})
    url = request.getfixturevalue("kms_url")
    return Settings(backend="aws-kms", catalog=catalog, schemas=("crm",),
                    metastore_id="ms-subjects",
                    options={"aws-region": REGION, "aws-endpoint-url": url})


def _encrypted_table(settings: Settings, spark) -> None:
    """crm.orders: ROWS rows, name and amount encrypted under their subject's key, in four
    files (so that a batched run rewrites some files and leaves others)."""
    kek_setup.run(settings, spark)
    ctx = build_context(settings, spark)
    ctx.lakehouse.ensure_schema(spark, settings.catalog, "crm", "orders of the test")
    source = ctx.lakehouse.table(settings.catalog, "crm", "orders_in")
    spark.range(ROWS).selectExpr(
        "id", f"CAST(id % {SUBJECTS} AS STRING) AS customer_id",
        "concat('name-', id) AS name", "CAST(id * 3 AS INT) AS amount",
    ).repartition(4).write.saveAsTable(source.replace("`", ""))
    report = encrypt_columns.run(settings, spark, source="crm.orders_in",
                                 source_format="table", target_table="crm.orders",
                                 columns=COLUMNS, id_column="id", subject_column="customer_id")
    assert report.rows_written == ROWS


def _stored(settings, spark):
    ctx = build_context(settings, spark)
    name = ctx.lakehouse.table(settings.catalog, "crm", "orders")
    spark.catalog.refreshTable(name.replace("`", ""))
    return spark.table(name)


def _read(settings, spark, strict: bool):
    ctx = build_context(settings, spark)  # a fresh keyring: nothing cached from before
    subjects = SubjectStore(spark, ctx.lakehouse, settings.catalog, settings.crypto_schema)
    return decrypt_subject_columns(_stored(settings, spark), COLUMNS, keyring=ctx.keyring,
                                   table=TableRef(settings.catalog, "crm", "orders"),
                                   subject_column="customer_id", subjects=subjects,
                                   strict=strict)


def _assert_reads(settings, spark, erased: str | None) -> None:
    rows = _read(settings, spark, strict=False).collect()
    assert len(rows) == ROWS
    for row in rows:
        expected = (None, None) if row["customer_id"] == erased else (
            f"name-{row['id']}", row["id"] * 3)
        assert (row["name"], row["amount"]) == expected, row["id"]
    if erased is not None:
        with pytest.raises(PySparkException, match="was erased"):
            _read(settings, spark, strict=True).collect()


def _reencrypt(settings, spark, mode: str, **kw):
    return reencrypt_columns.run(settings, spark, table="crm.orders", columns=COLUMNS,
                                 subject_column="customer_id", mode=mode, batch_rows=40, **kw)


def _cells_of(settings, spark, subject: str) -> dict[int, tuple]:
    return {r["id"]: (r["name"], r["amount"]) for r in _stored(settings, spark)
            .where(f"customer_id = '{subject}'").collect()}


def _salts(settings, spark) -> dict[str, bytes | None]:
    ctx = build_context(settings, spark)
    subjects = SubjectStore(spark, ctx.lakehouse, settings.catalog, settings.crypto_schema)
    return {r["subject_hash"]: r["salt"] for r in spark.table(subjects.table).collect()}


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "mode", "erase_first"), [
    ("local", "batched", True), ("local", "whole", True), ("aws-kms", "batched", False)])
def test_rotate_reencrypt_retire_destroy_a_subject_keyed_scope(backend, mode, erase_first,
                                                              spark, request, tmp_path):
    settings = _settings(backend, request, tmp_path)
    scope = f"{settings.catalog}.crm"
    _encrypted_table(settings, spark)
    if erase_first:
        assert "salt removed" in erase_subject.run(settings, spark, schema="crm",
                                                   subject=ERASED)
    erased_cells = _cells_of(settings, spark, ERASED)
    salts = _salts(settings, spark)
    dek_generation.run(settings, spark, schema="crm")

    # Without the subject column the job refuses (the cells say they are subject-keyed),
    # and subject cells cannot be bound to rows; nothing was changed.
    with pytest.raises(ConfigError, match="give --subject-column"):
        reencrypt_columns.run(settings, spark, table="crm.orders", columns=COLUMNS)
    with pytest.raises(ConfigError, match="no row binding"):
        _reencrypt(settings, spark, mode, row_key_column="id")
    assert cells_per_version(_stored(settings, spark), COLUMNS) == {1: 2 * ROWS}

    report = _reencrypt(settings, spark, mode)
    erased_count = 2 * (ROWS // SUBJECTS) if erase_first else 0
    assert report.before == {1: 2 * ROWS}
    assert report.after == ({2: 2 * ROWS - erased_count, 1: erased_count} if erase_first
                            else {2: 2 * ROWS})
    assert report.erased_skipped == erased_count
    assert report.erased_left == ({1: erased_count} if erase_first else {})
    if mode == "batched":
        assert report.rows_done == ROWS - (ROWS // SUBJECTS if erase_first else 0)
    assert f"{erased_count} cell(s) of erased subjects skipped" in str(report)
    stored = _stored(settings, spark).collect()
    assert all(is_subject_cell(r[c]) for r in stored for c in COLUMNS)
    # An erased subject's cells are byte for byte what they were (a live one's moved); no
    # salt was created or changed (the new cells are keyed by the same salts).
    moved = _cells_of(settings, spark, ERASED)
    assert (moved == erased_cells) == erase_first
    assert {c.split(":")[1] for cells in moved.values() for c in cells} == (
        {"1"} if erase_first else {"2"})
    assert _salts(settings, spark) == salts
    _assert_reads(settings, spark, ERASED if erase_first else None)

    # A re-run finds nothing to do and changes nothing.
    folder = table_location(spark, f"{settings.catalog}__crm.orders")
    files = {p.name: p.stat().st_mtime_ns for p in folder.glob("part-*")}
    again = _reencrypt(settings, spark, "batched")
    assert (again.rows_to_do, again.rows_done, again.batches) == (0, 0, 0)
    assert again.after == report.after
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("part-*")} == files

    if not erase_first:  # erased after the re-encryption: its v2 cells become unreadable
        erase_subject.run(settings, spark, schema="crm", subject=ERASED)
        _assert_reads(settings, spark, ERASED)

    # v1: decrypt-only, then retired and destroyed. The registered table is scanned: cells
    # of erased subjects still name v1 and stop it unless forced.
    dek_state.run(settings, spark, schema="crm", version=1, to="decrypt-only")
    if erase_first:
        with pytest.raises(KeyringError, match="still use it"):
            dek_state.run(settings, spark, schema="crm", version=1, to="retired")
    force = erase_first
    dek_state.run(settings, spark, schema="crm", version=1, to="retired", force=force)
    dek_state.run(settings, spark, schema="crm", version=1, to="destroyed", force=force,
                  confirm=f"{scope}:v1")
    ctx = build_context(settings, spark)
    assert {r.version: r.state for r in ctx.keyring.versions(scope)} == {
        1: DekState.DESTROYED, 2: DekState.ENABLED}
    _assert_reads(settings, spark, ERASED)
    if erase_first:
        assert _cells_of(settings, spark, ERASED) == erased_cells

    events = [e for e in ctx.keyring.audit.events() if e["operation"] == "cells_reencrypted"]
    assert len(events) == 2 and all("subject-keyed by customer_id" in e["detail"]
                                    for e in events)
