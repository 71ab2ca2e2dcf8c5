"""The bundle's jobs for ``--target aws-kms``, run locally against moto over HTTP.

setup -> encrypt -> decrypt -> new DEK -> encrypt -> rotate KEK -> old and new data decrypt.
The jobs get exactly the parameters ``databricks.yml`` gives them for the aws-kms target;
only the variables that point at this machine differ (``aws_endpoint_url`` = the moto
server, no service credential, so the default AWS chain with the test's fake keys is used).
KMS requests are counted at the server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.local_run import run_job
from envelope_encryption.jobs.sample_data import customers, write_csv
from tests.support.aws_fixtures import REGION
from tests.support.e2e import decrypted_customers, expected_customers
from tests.support.kms_strict import count_kms_requests, strict_kms

REPO = Path(__file__).resolve().parents[2]
CATALOG = "kms_e2e"
SCHEMA = "sales"
ALIAS = "alias/unity_catalog/ms-e2e/kms_e2e/cmk"


@pytest.mark.slow
def test_aws_kms_target_end_to_end(spark, kms_url, kms, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run_job changes directory; restored afterwards
    landing = tmp_path / "landing"
    variables = {
        "catalog": CATALOG,
        "schemas": SCHEMA,
        "metastore_id": "ms-e2e",
        "service_credential": "",  # not on Databricks: the default AWS chain
        "new_dek_schema": SCHEMA,
        "source_path": str(landing),
        "source_format": "csv",
        "target_table": f"{SCHEMA}.customers",
        "mask_columns": "false",  # column masks need Unity Catalog
        "aws_region": REGION,
        "aws_endpoint_url": kms_url,
    }
    settings = Settings(
        backend="aws-kms", catalog=CATALOG, schemas=(SCHEMA,), metastore_id="ms-e2e",
        options={"aws-region": REGION, "aws-endpoint-url": kms_url},
    )

    def run(job: str) -> None:
        assert run_job(job, "aws-kms", variables, root=REPO) == 0, f"{job} failed"

    def alias_target() -> str:
        return next(a["TargetKeyId"] for a in kms.list_aliases()["Aliases"]
                    if a["AliasName"] == ALIAS)

    # 1. setup: the KMS key and alias, the keyring table, DEK v1 (idempotent on a re-run).
    with count_kms_requests() as calls:
        run("kek_setup")
        run("kek_setup")
    assert calls["CreateKey"] == 1 and calls["CreateAlias"] == 1
    # DEK v1 and the keyring's integrity key (docs/keyring-integrity.md), once each.
    assert calls["GenerateDataKey"] == 2
    assert len(kms.list_keys()["Keys"]) == 1
    first_key = alias_target()

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
    assert all(row["ssn"] != first[row["id"] - 1]["ssn"] for row in stored)  # no plaintext
    assert decrypted() == expected(first)

    # 3. a new DEK, then a second batch under it.
    run("dek_generation")
    second = customers(20, first_id=21)
    write_csv(second, landing / "batch-0002.csv")
    run("encrypt_columns")
    assert [r.version for r in ctx.keyring.versions(f"{CATALOG}.{SCHEMA}")] == [1, 2]

    # 4. rotate the KEK: a new KMS key behind the alias, both DEKs moved with ReEncrypt.
    with count_kms_requests() as calls:
        run("rotate_kek")
    assert calls["CreateKey"] == 1 and calls["UpdateAlias"] == 1
    # Both DEKs, and the keyring's integrity key (recorded under the new key first).
    assert calls["ReEncrypt"] == 3
    assert "Encrypt" not in calls and "GenerateDataKey" not in calls
    new_key = alias_target()
    assert new_key != first_key
    current = ctx.store.current(f"{CATALOG}.{SCHEMA}")
    assert {r.wrapped.kek_id.split("/")[-1] for r in current} == {new_key}
    assert all(r.revision == 2 for r in current)
    old_wrappings = [r for r in ctx.store.history(f"{CATALOG}.{SCHEMA}") if r.revision == 1]
    assert {r.wrapped.kek_id.split("/")[-1] for r in old_wrappings} == {first_key}

    # 5. old and new data decrypt in a fresh process state, with the old key disabled
    # (enforced by the strict server); one unwrap per DEK version.
    kms.disable_key(KeyId=first_key)
    ctx = build_context(settings, spark)
    with strict_kms(), count_kms_requests() as calls:
        assert decrypted() == {**expected(first), **expected(second)}
        assert decrypted() == {**expected(first), **expected(second)}
    # One unwrap per DEK version, plus the integrity key and the configured key's ARN, once
    # per process.
    assert dict(calls) == {"Decrypt": 3, "DescribeKey": 1}
    # The wrappings under the old key still unwrap (pinned to it) once it is enabled again.
    kms.enable_key(KeyId=first_key)
    for record in old_wrappings:
        assert ctx.kek.unwrap(record.wrapped, record.context) == ctx.keyring.dek(
            record.scope, record.version)
