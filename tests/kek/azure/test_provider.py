"""The azure KEK provider against the local Key Vault, through the real SDK.

The contract every back end keeps is in tests/kek/test_contract.py; this file tests what is
Key Vault's own: kid binding, the blob format, HSM keys, credentials, roles in messages.
"""

from __future__ import annotations

import base64
import logging
import os
import sys
import time
import types

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import (
    ConfigError,
    KeyAccessDenied,
    KeyDisabled,
    KeyNotFound,
    KeyServiceError,
    KeyServiceThrottled,
    KeyUnwrapFailed,
)
from envelope_encryption.kek import WrapContext, WrappedDek, build_kek_provider
from envelope_encryption.kek.azure import errors as azure_errors
from envelope_encryption.kek.azure import notebook_helpers as helpers
from envelope_encryption.kek.azure import provider as akv
from envelope_encryption.secret import SecretKey
from tests.support.azure_fixtures import make_provider
from tests.support.keyvault_server import StaticTokenCredential

CTX = WrapContext("main.sales", 1)


def _settings(server, **options) -> Settings:
    base = {"azure-vault-url": server.vault_url, "azure-ca-bundle": str(server.ca_file),
            "azure-key-size": "2048"}
    base.update(options)
    return Settings(backend="azure", catalog="main_cat", metastore_id="ms_1", options=base)


def test_ensure_is_idempotent(vault, provider):
    first = provider.ensure()
    second = provider.ensure()
    assert first.created and not second.created
    assert (first.kek_id, first.kek_version) == (second.kek_id, second.kek_version)
    assert first.kek_id == f"{vault.url}/keys/{provider.key_name}"
    assert vault.counts["create"] == 1
    assert provider.describe().kek_version == first.kek_version
    assert dict(first.details)["kty"] == "RSA"


def test_describe_before_setup_says_run_kek_setup(provider):
    with pytest.raises(KeyNotFound, match="kek_setup"):
        provider.describe()


def test_default_key_name_and_factory(vault):
    settings = _settings(vault)
    provider = build_kek_provider(settings)  # the factory's lazy import path
    assert isinstance(provider, akv.AzureKeyVaultKekProvider)
    assert provider.key_name == "unity-catalog-ms-1-main-cat-kek"
    assert provider.key_size == 2048
    named = akv.from_settings(_settings(vault, **{"azure-key-name": "my-kek"}),
                              credential=vault.credential())
    assert named.key_name == "my-kek"
    with pytest.raises(ConfigError, match="azure-vault-url"):
        akv.from_settings(Settings(backend="azure"), credential=vault.credential())
    with pytest.raises(ConfigError, match="invalid"):
        akv.from_settings(_settings(vault, **{"azure-key-name": "bad.name"}),
                          credential=vault.credential())
    with pytest.raises(ConfigError, match="https"):
        akv.AzureKeyVaultKekProvider("http://127.0.0.1:1/", "k", vault.credential())
    with pytest.raises(ConfigError, match="azure-key-type"):
        akv.from_settings(_settings(vault, **{"azure-key-type": "EC"}),
                          credential=vault.credential())


def test_wrap_unwrap_round_trip_binds_the_exact_kid(vault, provider):
    info = provider.ensure()
    dek = SecretKey(os.urandom(32))
    wrapped = provider.wrap(dek, CTX)
    assert (wrapped.kek_id, wrapped.kek_version) == (info.kek_id, info.kek_version)
    assert wrapped.blob[:2] == bytes([akv.FORMAT, akv.ALG_RSA_OAEP_256])
    assert len(wrapped.blob) == 2 + 256 + akv.TAG_BYTES
    assert dek.reveal() not in wrapped.blob
    vault.reset_counts()
    assert provider.unwrap(wrapped, CTX) == dek
    assert vault.counts["unwrapkey"] == 1
    # A fresh provider (another process) unwraps it too: the blob and kid are all it needs.
    other = make_provider(vault, provider.key_name)
    assert other.unwrap(wrapped, CTX) == dek


def test_refusals_say_which_check_failed(provider):
    """The binding tag refuses another scope or version; the vault refuses a changed RSA
    ciphertext; a short blob is refused before any call."""
    provider.ensure()
    dek = SecretKey(os.urandom(32))
    wrapped = provider.wrap(dek, CTX)
    with pytest.raises(KeyUnwrapFailed, match="scope and version"):
        provider.unwrap(wrapped, WrapContext("main.other", 1))
    with pytest.raises(KeyUnwrapFailed, match="scope and version"):
        provider.unwrap(wrapped, WrapContext("main.sales", 2))
    blob = bytearray(wrapped.blob)
    blob[40] ^= 1  # inside the RSA ciphertext: the vault refuses it
    with pytest.raises(KeyUnwrapFailed, match="refused"):
        provider.unwrap(WrappedDek(bytes(blob), wrapped.kek_id, wrapped.kek_version), CTX)
    with pytest.raises(KeyUnwrapFailed, match="truncated"):
        provider.unwrap(WrappedDek(wrapped.blob[:20], wrapped.kek_id, wrapped.kek_version), CTX)


def test_a_kid_on_another_host_is_refused_without_a_call(vault, provider):
    provider.ensure()
    wrapped = provider.wrap(SecretKey(os.urandom(32)), CTX)
    vault.reset_counts()
    forged = WrappedDek(wrapped.blob, "https://evil.example/keys/kek", wrapped.kek_version)
    with pytest.raises(KeyServiceError, match="not a key of the configured vault"):
        provider.unwrap(forged, CTX)
    assert sum(vault.counts.values()) == 0


def test_rotation_is_one_rotate_call_and_lists_versions(vault, provider):
    old_info = provider.ensure()
    new_info = provider.rotate()
    assert [v for v, _ in provider.versions()] == [old_info.kek_version, new_info.kek_version]
    assert vault.counts["rotate"] == 1


def test_disabled_version_gives_a_clear_error_naming_key_and_version(vault, provider):
    old_info = provider.ensure()
    old = provider.wrap(SecretKey(os.urandom(32)), CTX)
    provider.rotate()
    provider.key_client.update_key_properties(provider.key_name, old_info.kek_version,
                                              enabled=False)
    fresh = make_provider(vault, provider.key_name)
    with pytest.raises(KeyDisabled) as caught:
        fresh.unwrap(old, CTX)
    assert f"{provider.key_name}/{old_info.kek_version}" in str(caught.value)
    assert "Enable" in str(caught.value)
    # A disabled current version stops wraps too.
    current = provider.describe().kek_version
    provider.key_client.update_key_properties(provider.key_name, current, enabled=False)
    with pytest.raises(KeyDisabled, match=provider.key_name):
        provider.wrap(SecretKey(os.urandom(32)), CTX)


def test_deleted_version_gives_key_not_found_naming_it(vault, provider):
    info = provider.ensure()
    wrapped = provider.wrap(SecretKey(os.urandom(32)), CTX)
    provider.rotate()
    vault.purge_version(provider.key_name, info.kek_version)
    with pytest.raises(KeyNotFound) as caught:
        make_provider(vault, provider.key_name).unwrap(wrapped, CTX)
    assert f"{provider.key_name}/{info.kek_version}" in str(caught.value)


def test_deleted_key_name_blocks_setup_with_advice(vault, provider):
    provider.ensure()
    provider.key_client.begin_delete_key(provider.key_name).result()
    with pytest.raises(KeyServiceError, match="recover"):
        provider.ensure()


def test_throttling_honours_retry_after_then_gives_up(vault, provider):
    provider.ensure()
    dek = SecretKey(os.urandom(32))
    wrapped = provider.wrap(dek, CTX)
    provider.unwrap(wrapped, CTX)  # warm: the version's public key is fetched
    vault.reset_counts()
    vault.inject(429, count=1, operations={"unwrapkey"}, retry_after="1")
    started = time.perf_counter()
    assert provider.unwrap(wrapped, CTX) == dek
    assert time.perf_counter() - started >= 0.95
    assert vault.counts["unwrapkey"] == 2

    impatient = make_provider(vault, provider.key_name, retry_total=2)
    impatient.unwrap(wrapped, CTX)
    vault.reset_counts()
    vault.inject(429, count=10, operations={"unwrapkey"}, retry_after="0")
    with pytest.raises(KeyServiceThrottled, match="throttling"):
        impatient.unwrap(wrapped, CTX)
    assert vault.counts["unwrapkey"] == 3  # first try + retry_total retries


def test_forbidden_names_the_role(vault, provider):
    provider.ensure()
    wrapped = provider.wrap(SecretKey(os.urandom(32)), CTX)
    vault.inject(403, count=1, operations={"unwrapkey"},
                 message="Caller is not authorized to perform action on resource.")
    with pytest.raises(KeyAccessDenied, match="Key Vault Crypto User"):
        provider.unwrap(wrapped, CTX)
    vault.inject(403, count=1, operations={"rotate"})
    with pytest.raises(KeyAccessDenied, match="Key Vault Crypto Officer"):
        provider.rotate()
    vault.inject(403, count=1, operations={"get"}, code="Forbidden",
                 message="Client address is not authorized and caller is not a trusted service.")
    with pytest.raises(KeyAccessDenied):
        provider.describe()


def test_an_unaccepted_token_is_an_authentication_error(vault):
    provider = akv.AzureKeyVaultKekProvider(
        vault.vault_url, "kek", StaticTokenCredential("never-issued"),
        connection_verify=str(vault.ca_file), key_size=2048, retry_total=0)
    with pytest.raises(KeyAccessDenied, match="authenticate"):
        provider.ensure()


def test_an_unreachable_vault_is_reported_as_network(vault):
    provider = akv.AzureKeyVaultKekProvider(
        "https://127.0.0.1:9/", "kek", vault.credential(),
        connection_verify=str(vault.ca_file), retry_total=0)
    with pytest.raises(KeyServiceError, match="cannot reach"):
        provider.describe()


def test_key_type_mismatch_is_a_config_error(hsm):
    rsa = make_provider(hsm, "shared-name")
    rsa.ensure()
    with pytest.raises(ConfigError, match="azure-key-type"):
        make_provider(hsm, "shared-name", key_type=akv.OCT_HSM).ensure()


def test_managed_hsm_a256kw(hsm):
    provider = make_provider(hsm, key_type=akv.OCT_HSM)
    info = provider.ensure()
    assert dict(info.details)["kty"] == "oct-HSM"
    dek = SecretKey(os.urandom(32))
    wrapped = provider.wrap(dek, CTX)
    assert wrapped.blob[:2] == bytes([akv.FORMAT, akv.ALG_A256KW])
    assert len(wrapped.blob) == 2 + 40 + akv.TAG_BYTES
    assert hsm.counts["wrapkey"] == 1  # wrapped by the HSM, not locally
    # Another process unwraps it: the HSM holds the only copy of the KEK.
    assert make_provider(hsm, provider.key_name, key_type=akv.OCT_HSM).unwrap(wrapped, CTX) == dek
    with pytest.raises(KeyUnwrapFailed):
        provider.unwrap(wrapped, WrapContext("main.other", 1))
    provider.rotate()
    assert provider.unwrap(provider.rewrap(wrapped, CTX), CTX) == dek
    assert "Managed HSM" in azure_errors.user_role(provider.managed_hsm)


def test_credentials_from_settings_client_secret_against_a_local_authority(vault, monkeypatch):
    vault.register_client("app-123", "s3cret-value")
    monkeypatch.setenv("KV_TEST_SECRET", "s3cret-value")
    settings = _settings(vault, **{
        "azure-tenant-id": vault.tenant_id, "azure-client-id": "app-123",
        "azure-client-secret-env": "KV_TEST_SECRET", "azure-authority-host": vault.authority,
    })
    provider = akv.from_settings(settings)
    assert type(provider.credential).__name__ == "ClientSecretCredential"
    dek = SecretKey(os.urandom(32))
    provider.ensure()
    assert provider.unwrap(provider.wrap(dek, CTX), CTX) == dek
    assert vault.counts["token"] == 1  # one token, cached for every later call

    monkeypatch.delenv("KV_TEST_SECRET")
    with pytest.raises(ConfigError, match="KV_TEST_SECRET"):
        akv.from_settings(settings)
    with pytest.raises(ConfigError, match="azure-client-id"):
        akv.from_settings(_settings(vault, **{"azure-tenant-id": vault.tenant_id}))
    with pytest.raises(ConfigError, match="https"):
        akv.from_settings(_settings(vault, **{"azure-authority-host": "http://x"}))


def test_default_credential_when_nothing_is_configured(vault):
    provider = akv.from_settings(_settings(vault))
    assert type(provider.credential).__name__ == "DefaultAzureCredential"


def test_service_credential_on_databricks_comes_from_dbutils(vault, monkeypatch):
    # dbutils exists only on Databricks; this stands in for its credentials utility.
    issued = vault.credential()
    asked = []

    class _Credentials:
        def getServiceCredentialsProvider(self, name):
            asked.append(name)
            return issued

    runtime = types.ModuleType("databricks.sdk.runtime")
    runtime.dbutils = types.SimpleNamespace(credentials=_Credentials())
    monkeypatch.setitem(sys.modules, "databricks.sdk.runtime", runtime)
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    settings = Settings(backend="azure", service_credential="akv-cred",
                        options={"azure-vault-url": vault.vault_url,
                                 "azure-ca-bundle": str(vault.ca_file),
                                 "azure-key-size": "2048"})
    provider = akv.from_settings(settings)
    assert asked == ["akv-cred"] and provider.credential is issued
    provider.ensure()


def test_no_key_material_in_logs_or_errors(vault, provider, caplog):
    caplog.set_level(logging.DEBUG)
    provider.ensure()
    dek = SecretKey(os.urandom(32))
    wrapped = provider.wrap(dek, CTX)
    provider.unwrap(wrapped, CTX)
    with pytest.raises(KeyUnwrapFailed) as caught:
        provider.unwrap(wrapped, WrapContext("main.other", 1))
    material = dek.reveal()
    forms = [material.hex(), base64.b64encode(material).decode(),
             base64.urlsafe_b64encode(material).rstrip(b"=").decode()]
    for form in forms:
        assert form not in caplog.text
        assert form not in str(caught.value)
        assert form not in repr(wrapped)


def test_original_module_helpers(vault):
    kw = {"connection_verify": str(vault.ca_file)}
    credential = vault.credential()
    key = helpers.create_keyvault_key(vault.vault_url, "legacy-kek", credential, size=2048, **kw)
    again = helpers.create_keyvault_key(vault.vault_url, "legacy-kek", credential, **kw)
    assert again.id == key.id and vault.counts["create"] == 1
    dek = os.urandom(32)
    wrapped = helpers.wrap_data_key(vault.vault_url, "legacy-kek", dek, credential, **kw)
    assert len(wrapped) == 256  # raw RSA-OAEP-256, as the original notebooks stored it
    assert helpers.unwrap_data_key(vault.vault_url, "legacy-kek", wrapped, credential,
                               **kw).reveal() == dek
    from azure.keyvault.keys import KeyClient

    KeyClient(vault.vault_url, credential, verify_challenge_resource=False,
              **kw).rotate_key("legacy-kek")
    with pytest.raises(KeyUnwrapFailed):  # the current version did not wrap it
        helpers.unwrap_data_key(vault.vault_url, "legacy-kek", wrapped, credential, **kw)
    assert helpers.unwrap_data_key(vault.vault_url, "legacy-kek", wrapped, credential,
                               version=key.properties.version, **kw).reveal() == dek
    with pytest.raises(KeyNotFound):
        helpers.wrap_data_key(vault.vault_url, "missing", dek, credential, **kw)
