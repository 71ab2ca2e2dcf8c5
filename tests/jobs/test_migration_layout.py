"""Recognising the original notebooks' objects: table layouts, key names, the preflight line."""

from __future__ import annotations

from envelope_encryption.config import DEFAULT_KEYRING_TABLE, Settings
from envelope_encryption.jobs.preflight_grants import Status
from envelope_encryption.keyring.table_store import COLUMNS_DDL
from envelope_encryption.legacy.layout import (
    AWS_KMS,
    AZURE,
    OURS,
    default_kek_is_theirs,
    notebook_azure_key_name,
    table_kind,
)
from tests.support.legacy_data import NOTEBOOK_COLUMNS


def test_table_layouts_are_told_apart():
    ours = [part.split(":")[0] for part in COLUMNS_DDL.split(", ")]
    assert table_kind(ours) == OURS
    assert table_kind(NOTEBOOK_COLUMNS[AWS_KMS]) == AWS_KMS
    assert table_kind(NOTEBOOK_COLUMNS[AZURE]) == AZURE
    assert table_kind(["id", "name"]) is None
    # Their columns without the scope column: not theirs either.
    assert table_kind(["key_enabled", "key_version", "key_type", "key"]) is None


def test_the_default_keyring_name_is_not_the_notebooks():
    assert Settings().keyring_table == DEFAULT_KEYRING_TABLE != "keyvault"


def test_the_default_kek_names_are_theirs_until_named():
    kms = Settings(backend="aws-kms", catalog="sales_eu", metastore_id="ms1")
    assert "alias/unity_catalog/ms1/sales_eu/cmk" in default_kek_is_theirs(kms)
    named = Settings(backend="aws-kms", catalog="sales_eu", metastore_id="ms1",
                     options={"kms-key-alias": "alias/ee/ms1/sales_eu/kek"})
    assert default_kek_is_theirs(named) == ""
    azure = Settings(backend="azure", catalog="sales_eu", metastore_id="ms1",
                     options={"azure-vault-url": "https://v.vault.azure.net/"})
    assert notebook_azure_key_name("ms1", "sales_eu") == "unity-catalog-ms1-sales-eu-kek"
    assert "unity-catalog-ms1-sales-eu-kek" in default_kek_is_theirs(azure)
    assert default_kek_is_theirs(Settings(backend="aws-sm")) == ""


def test_preflight_reports_their_functions(monkeypatch):
    from databricks.sdk import WorkspaceClient

    from envelope_encryption.jobs.legacy_detection import preflight_check
    from tests.support.workspace_server import TOKEN, WorkspaceState, workspace_server

    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(backend="aws-kms", catalog="main", metastore_id="ms1")
    state = WorkspaceState(user_name="admin")
    with workspace_server(state) as server:
        client = WorkspaceClient(host=server.url, token=TOKEN)
        assert preflight_check(client, settings, before=True).status is Status.OK
        state.add_object("SCHEMA", "main.crypto", "admin")
        assert preflight_check(client, settings, before=True).status is Status.OK
        state.add_object("FUNCTION", "main.crypto.unwrap_kms_key", "admin")
        state.add_object("FUNCTION", "main.crypto.get_latest_dek_version", "admin")
        before = preflight_check(client, settings, before=True)
        after = preflight_check(client, settings, before=False)
    assert before.status is Status.PROBLEM and "import_legacy" in before.fix
    assert "main.crypto.unwrap_kms_key" in before.detail
    assert after.status is Status.OK and "migration in progress" in after.detail


def test_an_earlier_release_keyring_is_kept_not_replaced(spark, tmp_path):
    import pytest

    from envelope_encryption.errors import ConfigError
    from envelope_encryption.jobs import kek_setup
    from envelope_encryption.keyring.table_store import TableDekStore

    catalog = "mig_upgrade"
    TableDekStore(spark, catalog, table="keyvault").ensure()  # what an earlier release made
    options = {"local-kek-file": str(tmp_path / "kek.key")}
    settings = Settings(backend="local", catalog=catalog, schemas=("hr",), options=options)
    with pytest.raises(ConfigError, match="--keyring-table=keyvault") as stopped:
        kek_setup.run(settings, spark)
    assert "Do not rename the table" in str(stopped.value)
    assert not spark.catalog.tableExists(f"{catalog}__crypto.dek_keyring")
    kept = Settings(backend="local", catalog=catalog, schemas=("hr",), options=options,
                    keyring_table="keyvault")
    assert kek_setup.run(kept, spark).created_deks == [f"{catalog}.hr v1"]


def test_the_notebooks_table_is_never_the_keyring(spark):
    import pytest

    from envelope_encryption.errors import ConfigError
    from envelope_encryption.jobs.legacy_detection import check_catalog
    from envelope_encryption.keyring.table_store import TableDekStore
    from envelope_encryption.lakehouse import Lakehouse
    from tests.support.legacy_data import create_notebook_table, snapshot

    catalog = "mig_theirs"
    table = create_notebook_table(spark, catalog, AZURE)
    settings = Settings(backend="azure", catalog=catalog, metastore_id="ms1",
                        keyring_table="keyvault",
                        options={"azure-vault-url": "https://v.vault.azure.net/",
                                 "azure-key-name": "ours"})
    store = TableDekStore(spark, catalog, table="keyvault")
    with pytest.raises(ConfigError, match="is the original notebooks' key table"):
        check_catalog(spark, Lakehouse(databricks=False), settings, store)
    assert snapshot(spark, table) == [] and spark.table(table).columns[6] == "key_name"


def test_a_row_no_version_of_their_key_opens_is_refused(vault):
    import os

    import pytest
    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

    from envelope_encryption.errors import KeyUnwrapFailed
    from envelope_encryption.legacy.notebook_table import AzureNotebookKek, NotebookRow

    sdk = {"connection_verify": str(vault.ca_file), "verify_challenge_resource": False}
    keys = KeyClient(vault.vault_url, vault.credential(), **sdk)
    theirs = keys.create_rsa_key("their-kek", size=2048)
    keys.rotate_key("their-kek")
    other = keys.create_rsa_key("another-kek", size=2048)
    dek = os.urandom(32)
    kek = AzureNotebookKek(vault.vault_url, "their-kek", vault.credential(), str(vault.ca_file))

    def row(key) -> NotebookRow:
        wrapped = CryptographyClient(key.id, vault.credential(), **sdk).wrap_key(
            KeyWrapAlgorithm.rsa_oaep_256, dek).encrypted_key
        return NotebookRow("main.hr", 1, True, wrapped)

    opened, version = kek.unwrap(row(theirs))  # the older version, found after the newest
    assert opened.reveal() == dek and version == theirs.properties.version
    with pytest.raises(KeyUnwrapFailed, match="no enabled version of Key Vault key their-kek"):
        kek.unwrap(row(other))
