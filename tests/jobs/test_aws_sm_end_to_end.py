"""The bundle's jobs for ``--target aws-sm``, run locally against moto over HTTP.

setup -> encrypt -> new DEK -> encrypt -> rotate KEK -> old and new data decrypt. The jobs
get exactly the parameters ``databricks.yml`` gives them for the aws-sm target; only the
variables that point at this machine differ (endpoint, region, metastore, paths).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.local_run import run_job
from envelope_encryption.jobs.sample_data import customers, write_csv
from tests.support.aws_fixtures import SM_REGION as REGION
from tests.support.e2e import decrypted_customers, expected_customers

REPO = Path(__file__).resolve().parents[2]
CATALOG = "sm_e2e"
SCHEMA = "sales"
KEK_SECRET = f"unity_catalog/ms-e2e/{CATALOG}/kek"
DEK_SECRET = f"unity_catalog/ms-e2e/{CATALOG}/deks"


@pytest.mark.slow
def test_aws_sm_target_end_to_end(spark, sm, moto, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run_job changes directory; restored afterwards
    landing = tmp_path / "landing"
    variables = {
        "catalog": CATALOG,
        "schemas": SCHEMA,
        "metastore_id": "ms-e2e",
        "service_credential": "",  # not on Databricks: the default chain (test credentials)
        "new_dek_schema": SCHEMA,
        "source_path": str(landing),
        "source_format": "csv",
        "target_table": f"{SCHEMA}.customers",
        "mask_columns": "false",  # column masks need Unity Catalog
        "aws_region": REGION,
        "aws_endpoint_url": moto.url,
    }
    settings = Settings(backend="aws-sm", catalog=CATALOG, schemas=(SCHEMA,),
                        metastore_id="ms-e2e",
                        options={"aws-region": REGION, "aws-endpoint-url": moto.url})

    def run(job: str) -> None:
        assert run_job(job, "aws-sm", variables, root=REPO) == 0, f"{job} failed"

    def kek_versions() -> dict[str, list[str]]:
        return sm.describe_secret(SecretId=KEK_SECRET)["VersionIdsToStages"]

    # 1. setup, twice: one KEK version, one DEK store version with DEK v1.
    run("kek_setup")
    run("kek_setup")
    assert len(kek_versions()) == 1
    document = json.loads(sm.get_secret_value(SecretId=DEK_SECRET,
                                              VersionStage="AWSCURRENT")["SecretString"])
    # The DEK scope, and the keyring's integrity record (docs/keyring-integrity.md).
    assert sorted(document["scopes"]) == ["$keyring", f"{CATALOG}.{SCHEMA}"]

    # 2. encrypt a first batch under DEK v1.
    first = customers(20, first_id=1)
    write_csv(first, landing / "batch-0001.csv")
    run("encrypt_columns")
    ctx = build_context(settings, spark)
    table = ctx.lakehouse.table(CATALOG, SCHEMA, "customers")

    def decrypted() -> dict[int, tuple]:
        return decrypted_customers(ctx, CATALOG, SCHEMA)

    expected = expected_customers

    stored = spark.table(table).collect()
    assert len(stored) == 20
    assert all(row["ssn"] != first[row["id"] - 1]["ssn"] for row in stored)

    # 3. a new DEK, then a second batch under it.
    run("dek_generation")
    second = customers(20, first_id=21)
    write_csv(second, landing / "batch-0002.csv")
    run("encrypt_columns")
    assert [r.version for r in ctx.keyring.versions(f"{CATALOG}.{SCHEMA}")] == [1, 2]

    # 4. rotate the KEK: a new secret version, both DEKs re-wrapped under it.
    before = kek_versions()
    run("rotate_kek")
    after = kek_versions()
    assert len(after) == 2
    (old,) = before
    assert after[old] == ["AWSPREVIOUS"]
    (new,) = [v for v, stages in after.items() if stages == ["AWSCURRENT"]]
    current = ctx.store.current(f"{CATALOG}.{SCHEMA}")
    assert {r.wrapped.kek_version for r in current} == {new}
    assert all(r.revision == 2 for r in current)

    # 5. old and new data decrypt in a fresh process state.
    ctx = build_context(settings, spark)
    assert decrypted() == {**expected(first), **expected(second)}
