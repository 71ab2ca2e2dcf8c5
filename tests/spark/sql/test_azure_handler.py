"""The rendered unwrap function of the azure target, against the local HTTPS Key Vault.

The handler text is taken from the DDL and executed as Databricks would run it; the service
credential (``databricks.service_credentials``) is a token credential of the local vault.
Key Vault's unwrap takes no associated data, so the provider checks an HMAC binding tag
after unwrapping; the handler must do the same (it runs the provider's code). Anyone can
RSA-wrap a DEK with the public key, so what refuses a record of the caller's is the keyring
record's tag (docs/keyring-integrity.md).
"""

from __future__ import annotations

import json
import sys
import types
import uuid

import pandas as pd
import pytest

from envelope_encryption.config import Settings
from envelope_encryption.kek.azure import provider as azure_key_vault
from envelope_encryption.kek.base import WrapContext
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.secret import SecretKey
from envelope_encryption.spark.sql import runtime
from envelope_encryption.spark.sql.render import render_unwrap_function
from envelope_encryption.spark.sql.target import SqlOptions, SqlTarget
from tests.support.keyvault_server import keyvault_server


@pytest.fixture(scope="module")
def vault():
    with keyvault_server() as server:
        yield server


def test_rendered_azure_handler_unwraps_verified_records(spark, vault, monkeypatch):
    vault.reset()
    key_name = f"kek-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        backend="azure", catalog=f"az{uuid.uuid4().hex[:8]}", schemas=("hr",),
        metastore_id="ms1", service_credential="envelope-key-vault",
        options={"azure-vault-url": vault.vault_url, "azure-key-name": key_name,
                 "azure-key-size": "2048", "azure-ca-bundle": str(vault.ca_file)},
    )
    provider = azure_key_vault.from_settings(settings, credential=vault.credential())
    provider.ensure()
    store = TableDekStore(spark, settings.catalog, lakehouse=Lakehouse(databricks=False))
    store.ensure()
    keyring = Keyring(store, provider, "tester")
    scope = settings.scope("hr")
    keyring.ensure_active(scope)
    provider.rotate()
    keyring.create_version(scope)
    v1, v2 = store.current(scope)
    (integrity,) = store.integrity_history()
    assert v1.wrapped.kek_version != v2.wrapped.kek_version
    deks = [keyring.dek(scope, 1).reveal(), keyring.dek(scope, 2).reveal()]

    asked = []
    module = types.ModuleType("databricks.service_credentials")
    module.getServiceCredentialsProvider = lambda name: asked.append(name) or vault.credential()
    monkeypatch.setitem(sys.modules, "databricks.service_credentials", module)
    monkeypatch.setattr(runtime, "_worker", runtime._Worker())  # a fresh Python worker

    ddl = render_unwrap_function(SqlTarget(settings), SqlOptions())
    namespace: dict = {}
    exec(compile(ddl.split("AS $$\n", 1)[1].rsplit("\n$$", 1)[0], "<handler>", "exec"),
         namespace)
    handler = namespace["handler"]

    def passed(record, **changes) -> str:
        row = {"key_alias": record.scope, "key_version": record.version,
               "revision": record.revision, "key_state": record.state.value,
               "key_type": record.key_type, "kek_backend": record.kek_backend,
               "wrapped_key": record.wrapped.blob.hex(), "kek_id": record.wrapped.kek_id,
               "kek_version": record.wrapped.kek_version, "record_tag": record.tag.hex(),
               "integrity": record.integrity or None, **changes}
        return json.dumps({k: v for k, v in row.items() if v is not None})

    def call(records):
        return list(next(iter(handler(iter([(
            pd.Series([scope]), pd.Series([records]), pd.Series([passed(integrity)]),
        )]))))[0])

    vault.reset_counts()
    assert call([passed(v1), passed(v2), passed(v1)]) == [deks[0], deks[1], deks[0]]
    assert asked and set(asked) == {"envelope-key-vault"}
    # One unwrap per DEK version however many rows name it (the worker's cache); the
    # integrity key costs one sign (RSA vault), once per worker.
    assert sum(n for op, n in vault.counts.items() if "unwrap" in op.lower()) == 2
    # A DEK anyone can RSA-wrap with the public key (the binding tag is keyed by that DEK):
    # refused, its record carries no tag the integrity key made.
    monkeypatch.setattr(runtime, "_worker", runtime._Worker())
    known = b"k" * 32
    forged = provider.wrap(SecretKey(known), WrapContext(scope, 3))
    with pytest.raises(Exception, match=f"{scope} v3 .*fails its integrity check") as info:
        call([passed(v2, key_version=3, wrapped_key=forged.blob.hex(),
                     kek_version=forged.kek_version)])
    assert known.hex() not in str(info.value)
    runtime._worker.close()
