"""The in-place migration from the original notebooks, read through the column masks.

Their AWS KMS layout (moto) and Azure Key Vault layout (the local vault, their KEK rotated
between the DEKs) with legacy cells under DEK versions 1 and 2; after the import, our SQL
layer is deployed beside theirs and the table's mask switched to ours; at every step
(before the switch, after it, after re-encryption, after the legacy keys are retired)
members read every plaintext and non-members none, through the rendered decrypt SQL.
"""

from __future__ import annotations

import pytest

from envelope_encryption.config import Settings
from tests.support.aws_fixtures import REGION
from tests.support.legacy_data import (
    akv_notebook_layout,
    kms_notebook_layout,
    migrate_through_masks,
)

CATALOG, MS = "mig_masks", "ms-masks"


@pytest.mark.slow
def test_kms_notebooks_migrate_in_place_through_the_masks(spark, kms, kms_url):
    table, names = kms_notebook_layout(spark, kms, CATALOG, MS)
    settings = Settings(backend="aws-kms", catalog=CATALOG, schemas=("sales",),
                        metastore_id=MS,
                        options={"aws-region": REGION, "aws-endpoint-url": kms_url,
                                 "kms-key-alias": f"alias/envelope_encryption/{MS}/{CATALOG}/kek"})
    counts = migrate_through_masks(spark, settings, CATALOG, table, names, legacy_versions=2)
    assert counts == {"beside theirs": 6, "switched": 6, "re-encrypted": 6,
                      "legacy retired": 6}


@pytest.mark.slow
def test_key_vault_notebooks_migrate_in_place_through_the_masks(spark, vault, monkeypatch):
    catalog = "mig_akv_masks"
    vault.register_client("masks-app", "masks-secret")
    monkeypatch.setenv("ENVELOPE_MIGRATION_MASKS_SECRET", "masks-secret")
    # The unwrap function runs in Spark's Python workers, which take their environment
    # from the SparkContext, not from this process's later changes.
    monkeypatch.setitem(spark.sparkContext.environment, "ENVELOPE_MIGRATION_MASKS_SECRET",
                        "masks-secret")
    table, names, _ = akv_notebook_layout(spark, vault, catalog,
                                          f"unity-catalog-{MS}-mig-akv-masks-kek", per_version=3)
    # Their unwrap_key sits in <catalog>.crypto: our keyring and functions go to a schema of
    # their own (docs/migration.md), beside theirs in the same catalog.
    settings = Settings(
        backend="azure", catalog=catalog, schemas=("sales",), metastore_id=MS,
        crypto_schema="envelope",
        options={"azure-vault-url": vault.vault_url, "azure-ca-bundle": str(vault.ca_file),
                 "azure-tenant-id": vault.tenant_id, "azure-client-id": "masks-app",
                 "azure-client-secret-env": "ENVELOPE_MIGRATION_MASKS_SECRET",
                 "azure-authority-host": vault.authority, "azure-key-size": "2048",
                 "azure-key-name": "ee-kek-mig-akv-masks"})
    counts = migrate_through_masks(spark, settings, catalog, table, names, legacy_versions=2)
    assert counts == {"beside theirs": 6, "switched": 6, "re-encrypted": 6,
                      "legacy retired": 6}
