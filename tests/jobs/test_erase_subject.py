"""The erase_subject job and encrypt_columns --subject-column on local Spark: a table of
many subjects encrypted by the job, one subject erased by the job's entry point (twice:
idempotent), every other subject still decrypting exactly, and the audit trail."""

from __future__ import annotations

import uuid

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError
from envelope_encryption.jobs import encrypt_columns, erase_subject, kek_setup
from envelope_encryption.jobs.common import build_context
from envelope_encryption.keyring.subjects import SubjectStore
from envelope_encryption.spark.columns import TableRef
from envelope_encryption.spark.subject_columns import decrypt_subject_columns

SUBJECTS = 50
ROWS = 400


@pytest.fixture()
def settings(tmp_path):
    return Settings(catalog=f"e{uuid.uuid4().hex[:8]}", schemas=("crm",),
                    options={"local-kek-file": str(tmp_path / "kek.key")})


def _cli(settings, tmp_path, *args) -> int:
    return erase_subject.main([f"--catalog={settings.catalog}", "--schemas=crm",
                               f"--local-kek-file={tmp_path / 'kek.key'}", *args])


def test_job_encrypts_by_subject_and_erases_one(settings, spark, tmp_path, capsys):
    kek_setup.run(settings, spark)
    ctx = build_context(settings, spark)
    ctx.lakehouse.ensure_schema(spark, settings.catalog, "crm", "orders of the test")
    source = ctx.lakehouse.table(settings.catalog, "crm", "orders_in")
    spark.range(ROWS).selectExpr(
        "id", f"CAST(id % {SUBJECTS} AS STRING) AS customer_id", "concat('n-', id) AS name",
    ).write.saveAsTable(source.replace("`", ""))
    report = encrypt_columns.run(settings, spark, source="crm.orders_in", source_format="table",
                                 target_table="crm.orders", columns=["name"], id_column="id",
                                 subject_column="customer_id")
    assert report.rows_written == ROWS

    assert _cli(settings, tmp_path, "--schema=crm", "--subject=7") == 0
    assert "salt removed" in capsys.readouterr().out
    assert _cli(settings, tmp_path, "--schema=crm", "--subject=7") == 0
    assert "already erased: no change" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        _cli(settings, tmp_path, "--schema=crm")  # neither --subject nor --subject-hash

    ctx = build_context(settings, spark)
    subjects = SubjectStore(spark, ctx.lakehouse, settings.catalog, settings.crypto_schema)
    stored = spark.table(ctx.lakehouse.table(settings.catalog, "crm", "orders"))
    plain = decrypt_subject_columns(stored, ["name"], keyring=ctx.keyring,
                                    table=TableRef(settings.catalog, "crm", "orders"),
                                    subject_column="customer_id", subjects=subjects,
                                    strict=False).collect()
    assert len(plain) == ROWS
    for row in plain:
        expected = None if row["customer_id"] == "7" else f"n-{row['id']}"
        assert row["name"] == expected
    hashed = subjects.hash_of(ctx.keyring, f"{settings.catalog}.crm", "7")
    events = [e for e in ctx.keyring.audit.events() if e["operation"] == "subject_erased"]
    assert [e["detail"] for e in events] == [f"subject {hashed}: salt removed",
                                            f"subject {hashed}: already erased: no change"]
    # The id itself is stored nowhere in the crypto schema's subject table.
    rows = spark.table(subjects.table).collect()
    assert len(rows) == SUBJECTS and all(len(r["subject_hash"]) == 32 for r in rows)


def test_subject_column_is_refused_with_a_row_key(settings, spark):
    with pytest.raises(ConfigError, match="format has no row binding"):
        encrypt_columns.run(settings, spark, source="crm.orders_in", source_format="table",
                            target_table="crm.orders", columns=["name"], id_column="id",
                            row_key_column="id", subject_column="customer_id")
    with pytest.raises(ConfigError, match="exactly one of --subject"):
        erase_subject.run(settings, spark, schema="crm", subject="1", subject_hash="ab" * 16)


def test_help_describes_the_job(capsys):
    with pytest.raises(SystemExit) as done:
        erase_subject.main(["--help"])
    assert done.value.code == 0
    assert "--subject-hash" in capsys.readouterr().out
