"""The rendered unwrap function of the azure target, against the local HTTPS Key Vault.

The handler text is taken from the DDL and executed as Databricks would run it; the service
credential (``databricks.service_credentials``) is a token credential of the local vault.
Key Vault's unwrap takes no associated data, so the provider checks an HMAC binding tag
after unwrapping; the handler must do the same (it runs the provider's code).
"""

from __future__ import annotations

import sys
import types
import uuid

import pandas as pd
import pytest

from envelope_encryption.config import Settings
from envelope_encryption.kek.azure import provider as azure_key_vault
from envelope_encryption.kek.base import WrapContext
from envelope_encryption.spark.sql import runtime
from envelope_encryption.spark.sql.render import render_unwrap_function
from envelope_encryption.spark.sql.target import SqlOptions, SqlTarget
from tests.support.keyvault_server import keyvault_server


@pytest.fixture(scope="module")
def vault():
    with keyvault_server() as server:
        yield server


def test_rendered_azure_handler_unwraps_with_the_binding_tag(vault, monkeypatch):
    vault.reset()
    key_name = f"kek-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        backend="azure", catalog="main", schemas=("hr",), metastore_id="ms1",
        service_credential="envelope-key-vault",
        options={"azure-vault-url": vault.vault_url, "azure-key-name": key_name,
                 "azure-key-size": "2048", "azure-ca-bundle": str(vault.ca_file)},
    )
    provider = azure_key_vault.from_settings(settings, credential=vault.credential())
    provider.ensure()
    scope = settings.scope("hr")
    dek1, wrapped1 = provider.generate_dek(WrapContext(scope, 1))
    provider.rotate()
    dek2, wrapped2 = provider.generate_dek(WrapContext(scope, 2))
    assert wrapped1.kek_version != wrapped2.kek_version

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

    def call(blobs, versions, kek_versions):
        n = len(blobs)
        return next(iter(handler(iter([(
            pd.Series([scope]), pd.Series([versions]), pd.Series([blobs]),
            pd.Series([[wrapped1.kek_id] * n]), pd.Series([kek_versions]),
        )]))))[0]

    vault.reset_counts()
    out = call([wrapped1.blob, wrapped2.blob, wrapped1.blob], [1, 2, 1],
               [wrapped1.kek_version, wrapped2.kek_version, wrapped1.kek_version])
    assert list(out) == [dek1.reveal(), dek2.reveal(), dek1.reveal()]
    assert asked and set(asked) == {"envelope-key-vault"}
    # One unwrap per DEK version, however many rows name it (the worker's cache).
    assert sum(n for op, n in vault.counts.items() if "unwrap" in op.lower()) == 2
    # A wrapped DEK presented as another version fails its binding tag: no key comes back.
    monkeypatch.setattr(runtime, "_worker", runtime._Worker())
    with pytest.raises(Exception, match="does not belong") as info:
        call([wrapped1.blob], [2], [wrapped1.kek_version])
    assert dek1.reveal().hex() not in str(info.value)
    runtime._worker.close()
