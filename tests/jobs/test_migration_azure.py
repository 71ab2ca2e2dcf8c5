"""Migration from the original notebooks' Azure Key Vault variant, against the local vault.

Their layout is built as their notebooks built it: an RSA key under their name (2048 bits,
their helper's size), 32 random bytes per DEK wrapped with RSA-OAEP-256 through the key's
*current* version by the real SDK, their key table (scope column ``key_name``), and cells
from Spark's ``base64(aes_encrypt(..., 'GCM', 'DEFAULT'))``. The key is rotated between DEK
versions 1 and 2, so the import has to find a different key version for each row.
"""

from __future__ import annotations

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError
from envelope_encryption.jobs import kek_setup
from envelope_encryption.spark.sql.target import SqlOptions
from tests.support.legacy_data import akv_notebook_layout, migrate_and_check

CATALOG, MS = "mig_akv", "ms-mig"
THEIR_KEY = "unity-catalog-ms-mig-mig-akv-kek"  # their name: underscores become dashes
SECRET_ENV = "ENVELOPE_MIGRATION_AKV_SECRET"


@pytest.mark.slow
def test_key_vault_notebooks_migrate_in_place(spark, vault, monkeypatch):
    vault.register_client("migration-app", "migration-secret")
    monkeypatch.setenv(SECRET_ENV, "migration-secret")
    # Their Azure notebooks named their unwrap function unwrap_key, as this project does.
    table, names, their_versions = akv_notebook_layout(spark, vault, CATALOG, THEIR_KEY)
    assert len(their_versions) == 2

    options = {"azure-vault-url": vault.vault_url, "azure-ca-bundle": str(vault.ca_file),
               "azure-tenant-id": vault.tenant_id, "azure-client-id": "migration-app",
               "azure-client-secret-env": SECRET_ENV, "azure-authority-host": vault.authority,
               "azure-key-size": "2048"}
    default_kek = Settings(backend="azure", catalog=CATALOG, schemas=("sales",),
                           metastore_id=MS, options=options)
    settings = Settings(backend="azure", catalog=CATALOG, schemas=("sales",), metastore_id=MS,
                        options={**options, "azure-key-name": "ee-kek-mig-akv"})
    report, moved = migrate_and_check(spark, default_kek, settings, CATALOG, table, names, 2)

    assert len(names) == 8 and moved.legacy_before == {1: 4, 2: 4}
    # Each row was opened by the key version current when it was wrapped, found newest first.
    opened = {note.split(":")[0]: note.rsplit("(", 1)[1].rstrip(")") for note in report.notes}
    assert opened == {f"{CATALOG}.sales v1": their_versions[0],
                      f"{CATALOG}.sales v2": their_versions[1]}
    # Our functions would replace their unwrap_key in their schema: refused, not done.
    with pytest.raises(ConfigError, match="would replace theirs"):
        kek_setup.run(settings, spark, sql=SqlOptions())
    # Their key: still two versions, nothing added; ours is a separate key.
    assert vault.key_versions(THEIR_KEY) == their_versions
    assert len(vault.key_versions("ee-kek-mig-akv")) == 1
