"""The bundle's jobs for the local target with column masks on, then reads through the SQL
layer as a member and as a non-member of the scope's group (DEK versions 1 and 2)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pyspark.errors import PySparkException

from envelope_encryption.config import Settings
from envelope_encryption.jobs.local_run import run_job
from envelope_encryption.jobs.sample_data import customers, write_csv
from envelope_encryption.spark.columns import TableRef
from envelope_encryption.spark.sql.local_masks import set_local_groups
from envelope_encryption.spark.sql.local_unity_catalog import read_table_as
from tests.support.e2e import CHECKED, expected_customers

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_local_target_masks_and_sql_reads(spark, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run_job changes directory; restored afterwards
    catalog, schema = f"e{uuid.uuid4().hex[:8]}", "sales"
    landing = tmp_path / "landing"
    kek_file = tmp_path / "kek.key"
    group = f"{catalog}.{schema}.crypto.user"
    monkeypatch.setenv("ENVELOPE_LOCAL_GROUPS", group)  # the jobs' principal: a reader
    variables = {
        "catalog": catalog, "schemas": schema, "new_dek_schema": schema,
        "source_path": str(landing), "source_format": "csv",
        "target_table": f"{schema}.customers", "mask_columns": "true",
        "local_kek_file": str(kek_file),
    }

    def run(job: str) -> None:
        assert run_job(job, "local", variables, root=REPO) == 0, f"{job} failed"

    run("kek_setup")
    first = customers(15, first_id=1)
    write_csv(first, landing / "batch-0001.csv")
    run("encrypt_columns")
    run("dek_generation")
    second = customers(15, first_id=16)
    write_csv(second, landing / "batch-0002.csv")
    run("encrypt_columns")

    settings = Settings(backend="local", catalog=catalog, schemas=(schema,),
                        options={"local-kek-file": str(kek_file)})
    ref = TableRef(catalog, schema, "customers")
    expected = expected_customers(first + second)
    # encrypt_columns --mask=true put the masks on the table's name; its rows are stored
    # under customers__unmasked, where the second batch was inserted too.
    stored = spark.table(f"`{catalog}__{schema}`.`customers__unmasked`")
    assert {r.v for r in stored.selectExpr("split_part(ssn, ':', 2) AS v").collect()} == {"1", "2"}

    # Every reader of the name goes through the masks: a reader (who needs a key) is sent to
    # read_table_as, the job group reads the cells, anyone else NULL.
    name = f"`{catalog}__{schema}`.`customers`"
    with pytest.raises(PySparkException, match="read_table_as"):
        spark.table(name).collect()
    set_local_groups(spark, [f"{catalog}.crypto.jobs"])
    assert sorted(map(tuple, spark.table(name).collect())) == sorted(map(tuple, stored.collect()))
    set_local_groups(spark, [])
    assert {tuple(r[c] for c in CHECKED) for r in spark.table(name).collect()} == {(None,) * 3}

    member = read_table_as(spark, settings, ref, list(CHECKED), member=True)
    assert {r.id: tuple(r[c] for c in CHECKED) for r in member.collect()} == expected
    outsider = read_table_as(spark, settings, ref, list(CHECKED), member=False)
    assert {tuple(r[c] for c in CHECKED) for r in outsider.collect()} == {(None,) * 3}
