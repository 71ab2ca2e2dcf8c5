"""The bundle's jobs for ``--target azure``, run locally against the local Key Vault.

setup -> encrypt -> decrypt -> new DEK -> encrypt -> rotate KEK -> old and new data decrypt.
The jobs get exactly the parameters ``databricks.yml`` gives them for the azure target; only
the variables that point at this machine differ (vault URL, CA bundle, and a client-secret
credential whose authority is the local server). The credential path is the production
one: a real ``ClientSecretCredential`` fetching a token over HTTPS.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.local_run import run_job
from envelope_encryption.jobs.sample_data import customers, write_csv
from tests.support.e2e import decrypted_customers, expected_customers

REPO = Path(__file__).resolve().parents[2]
CATALOG = "azure_e2e"
SCHEMA = "sales"
SECRET_ENV = "ENVELOPE_E2E_AKV_SECRET"


@pytest.mark.slow
def test_azure_target_end_to_end(spark, vault, tmp_path, monkeypatch):
    vault.register_client("e2e-app", "e2e-client-secret")
    monkeypatch.setenv(SECRET_ENV, "e2e-client-secret")
    monkeypatch.chdir(tmp_path)  # run_job changes directory; restored afterwards
    landing = tmp_path / "landing"
    variables = {
        "catalog": CATALOG,
        "schemas": SCHEMA,
        "metastore_id": "ms-e2e",
        "service_credential": "",  # not on Databricks: the client secret below is used
        "new_dek_schema": SCHEMA,
        "source_path": str(landing),
        "source_format": "csv",
        "target_table": f"{SCHEMA}.customers",
        "mask_columns": "false",  # column masks need Unity Catalog
        "azure_vault_url": vault.vault_url,
        "azure_ca_bundle": str(vault.ca_file),
        "azure_tenant_id": vault.tenant_id,
        "azure_client_id": "e2e-app",
        "azure_client_secret_env": SECRET_ENV,
        "azure_authority_host": vault.authority,
        "azure_key_size": "2048",
    }
    settings = Settings(
        backend="azure", catalog=CATALOG, schemas=(SCHEMA,), metastore_id="ms-e2e",
        options={"azure-vault-url": vault.vault_url, "azure-ca-bundle": str(vault.ca_file),
                 "azure-tenant-id": vault.tenant_id, "azure-client-id": "e2e-app",
                 "azure-client-secret-env": SECRET_ENV,
                 "azure-authority-host": vault.authority, "azure-key-size": "2048"},
    )
    key_name = "unity-catalog-ms-e2e-azure-e2e-kek"

    def run(job: str) -> None:
        assert run_job(job, "azure", variables, root=REPO) == 0, f"{job} failed"

    # 1. setup: the KEK in the vault, the keyring table, DEK v1 (idempotent on a re-run).
    run("kek_setup")
    run("kek_setup")
    assert vault.counts["create"] == 1
    assert len(vault.key_versions(key_name)) == 1

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

    # 4. rotate the KEK: a new key version, both DEKs re-wrapped under it and verified.
    before = vault.key_versions(key_name)
    run("rotate_kek")
    after = vault.key_versions(key_name)
    assert len(after) == 2 and after[0] == before[0]
    assert vault.counts["rotate"] == 1
    current = ctx.store.current(f"{CATALOG}.{SCHEMA}")
    assert {r.wrapped.kek_version for r in current} == {after[1]}
    assert all(r.revision == 2 for r in current)
    history = ctx.store.history(f"{CATALOG}.{SCHEMA}")
    old_wrappings = [r for r in history if r.revision == 1]
    assert {r.wrapped.kek_version for r in old_wrappings} == {after[0]}

    # 5. old and new data decrypt in a fresh process state; one unwrap per DEK version.
    ctx = build_context(settings, spark)
    vault.reset_counts()
    assert decrypted() == {**expected(first), **expected(second)}
    assert decrypted() == {**expected(first), **expected(second)}
    assert vault.counts["unwrapkey"] == 2, dict(vault.counts)
    # The wrappings under the old KEK version still unwrap to the same DEKs (kept until the
    # old version is deliberately disabled).
    for record in old_wrappings:
        assert ctx.kek.unwrap(record.wrapped, record.context) == ctx.keyring.dek(
            record.scope, record.version)
