"""The lifecycle jobs against masked tables, locally, where masks now apply as in Unity Catalog.

A masked table's name is read through its masks by every principal, the jobs' included. The
jobs that rewrite or count cells (``reencrypt_columns``, ``status --tables``,
``retire_dek --tables``) must refuse, leaving table and keyring as they were, unless they run
as a member of the job group, to whom the masks give the cells unchanged.
"""

from __future__ import annotations

import uuid

import pytest
from pyspark.errors import PySparkException

from envelope_encryption.config import Settings
from envelope_encryption.errors import KeyringError
from envelope_encryption.jobs import (
    dek_generation,
    encrypt_columns,
    kek_setup,
    reencrypt_columns,
    retire_dek,
    status,
)
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.sample_data import PII_COLUMNS, customers, write_csv
from envelope_encryption.spark.cells_guard import NotCellsError
from envelope_encryption.spark.columns import TableRef
from envelope_encryption.spark.sql.local_masks import set_local_groups
from envelope_encryption.spark.sql.local_unity_catalog import read_table_as
from envelope_encryption.spark.sql.target import REDACTION, SqlOptions

ROWS = 12


@pytest.fixture(autouse=True)
def _no_local_principal(spark):
    set_local_groups(spark, [])
    yield
    set_local_groups(spark, [])


@pytest.fixture()
def settings(tmp_path):
    return Settings(catalog=f"m{uuid.uuid4().hex[:8]}", schemas=("hr",),
                    options={"local-kek-file": str(tmp_path / "kek.key")})


def _groups(settings):
    return {"nobody": [], "reader": [f"{settings.catalog}.hr.crypto.user"],
            "jobs": [f"{settings.catalog}.crypto.jobs"]}


@pytest.fixture()
def masked(settings, spark, tmp_path):
    """hr.customers with every PII column masked, cells of DEK v1 and v2."""
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    common = dict(source=str(landing), source_format="csv", target_table="hr.customers",
                  columns=list(PII_COLUMNS), mask=True)
    write_csv(customers(ROWS // 2, first_id=1), landing / "a.csv")
    encrypt_columns.run(settings, spark, **common)
    dek_generation.run(settings, spark, schema="hr")
    # The second batch lands in the masked table: INSERT goes to where the rows are stored.
    write_csv(customers(ROWS // 2, first_id=ROWS // 2 + 1), landing / "b.csv")
    assert encrypt_columns.run(settings, spark, **common).rows_written == ROWS // 2
    return TableRef(settings.catalog, "hr", "customers")


def _stored(spark, ref):
    table = f"`{ref.catalog}__{ref.schema}`.`{ref.table}__unmasked`"
    return sorted(tuple(r) for r in spark.table(table).collect())


def _keyring(settings, spark):
    store = build_context(settings, spark).store
    return sorted((r.scope, r.version, r.state.value, r.revision) for r in store.current())


def _name(ref):
    return f"`{ref.catalog}__{ref.schema}`.`{ref.table}`"


def test_a_local_mask_applies_to_every_reader_of_the_table_name(settings, spark, masked):
    stored = {r.id: r for r in spark.table(
        f"`{masked.catalog}__hr`.`customers__unmasked`").collect()}
    assert len(stored) == ROWS and all(r.ssn.startswith("ee1:") for r in stored.values())
    groups = _groups(settings)

    seen = spark.table(_name(masked)).collect()  # a principal in no group
    assert {tuple(r[c] for c in PII_COLUMNS) for r in seen} == {(None,) * len(PII_COLUMNS)}
    assert {r.id for r in seen} == set(stored)  # unmasked columns as stored

    set_local_groups(spark, groups["jobs"])
    seen = spark.table(_name(masked)).collect()
    assert {r.id: r for r in seen} == stored  # the cells, unchanged

    set_local_groups(spark, groups["reader"] + groups["jobs"])
    assert {r.id: r for r in spark.table(_name(masked)).collect()} == stored  # jobs first

    set_local_groups(spark, groups["reader"])
    with pytest.raises(PySparkException, match="read_table_as"):
        spark.table(_name(masked)).collect()
    # Member reads go through the full decrypt SQL, over the stored rows.
    plain = read_table_as(spark, settings, masked, list(PII_COLUMNS), member=True)
    expected = {r["id"]: r["ssn"] for r in customers(ROWS // 2, 1) +
                customers(ROWS // 2, ROWS // 2 + 1)}
    assert {r.id: r.ssn for r in plain.collect()} == expected


@pytest.mark.parametrize("principal", ["nobody", "reader"])
def test_lifecycle_jobs_refuse_outside_the_job_group(settings, spark, masked, principal):
    set_local_groups(spark, _groups(settings)[principal])
    table = "hr.customers"
    before, keys = _stored(spark, masked), _keyring(settings, spark)

    with pytest.raises(NotCellsError, match=r"not a member of .*crypto\.jobs"):
        reencrypt_columns.run(settings, spark, table=table, columns=list(PII_COLUMNS))
    with pytest.raises(NotCellsError, match="Run the job as a principal in"):
        status.run(settings, spark, tables=[table])
    with pytest.raises(NotCellsError):
        retire_dek.run(settings, spark, schema="hr", version=1, tables=[table])

    assert _stored(spark, masked) == before
    assert _keyring(settings, spark) == keys


@pytest.mark.parametrize("mode", ["null", "redacted", "ciphertext"])
def test_without_a_job_group_the_jobs_refuse_whatever_non_members_read(
        settings, spark, masked, mode):
    # Masks that exempt nobody: the jobs cannot tell cells from the masks' output.
    from envelope_encryption.spark.sql.deploy import apply_column_masks

    options = SqlOptions(non_member=mode, job_group="")
    apply_column_masks(spark, settings, masked, list(PII_COLUMNS), databricks=False,
                       options=options)
    set_local_groups(spark, _groups(settings)["jobs"])
    before = _stored(spark, masked)
    with pytest.raises(NotCellsError, match="no job group is configured"):
        reencrypt_columns.run(settings, spark, table="hr.customers",
                              columns=list(PII_COLUMNS), job_group="")
    assert _stored(spark, masked) == before
    if mode == "redacted":
        values = {r.ssn for r in spark.table(_name(masked)).collect()}
        assert values == {REDACTION}


def test_lifecycle_jobs_as_the_job_group(settings, spark, masked):
    set_local_groups(spark, _groups(settings)["jobs"])
    table = "hr.customers"
    text = status.run(settings, spark, tables=[table])
    assert f"table {settings.catalog}.hr.customers: cells per DEK version" in text
    assert "{1: 30, 2: 30}" in text  # 6 rows x 5 columns per version
    with pytest.raises(KeyringError):
        retire_dek.run(settings, spark, schema="hr", version=1, tables=[table])

    report = reencrypt_columns.run(settings, spark, table=table, columns=list(PII_COLUMNS))
    assert report.before == {1: 30, 2: 30} and report.after == {2: 60}
    retired = retire_dek.run(settings, spark, schema="hr", version=1, tables=[table])
    assert retired.state.value == "RETIRED"

    # Still masked for everyone else; members still read every value.
    set_local_groups(spark, [])
    assert {r.ssn for r in spark.table(_name(masked)).collect()} == {None}
    plain = read_table_as(spark, settings, masked, list(PII_COLUMNS), member=True)
    expected = {r["id"]: r["email"] for r in customers(ROWS // 2, 1) +
                customers(ROWS // 2, ROWS // 2 + 1)}
    assert {r.id: r.email for r in plain.collect()} == expected


def test_a_principal_reads_its_groups_from_the_environment(settings, spark, masked,
                                                           monkeypatch):
    # A local job run (main) runs as the principal ENVELOPE_LOCAL_GROUPS describes.
    monkeypatch.setenv("ENVELOPE_LOCAL_GROUPS", "")
    common = ["--catalog", settings.catalog, "--schemas", "hr", "--kek-backend", "local",
              "--local-kek-file", settings.option("local-kek-file")]
    before = _stored(spark, masked)
    refused = _exit_code(reencrypt_columns.main, [*common, "--table", "hr.customers",
                                                  "--columns", ",".join(PII_COLUMNS)])
    assert refused != 0 and _stored(spark, masked) == before
    monkeypatch.setenv("ENVELOPE_LOCAL_GROUPS", f"{settings.catalog}.crypto.jobs")
    assert _exit_code(status.main, [*common, "--tables", "hr.customers"]) == 0


def _exit_code(main, argv) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # entry points may end the process on error
        return int(exit_.code or 0)
