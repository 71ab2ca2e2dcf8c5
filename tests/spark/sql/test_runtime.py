"""The SQL functions' runtime builds providers the way the jobs do, and caches keys safely.

Before, the runtime built the KMS provider by hand when a UDF service credential was
present, dropping settings ``from_settings`` honours, and copied the AWS client builder;
these tests pin that it now goes through ``build_kek_provider`` with the credential.
"""

from __future__ import annotations

import sys
import types
import uuid

import botocore.session
import pytest

from envelope_encryption.config import Settings
from envelope_encryption.kek import WrapContext
from envelope_encryption.kek.aws.kms import KmsKekProvider
from envelope_encryption.kek.aws.session import RETRIES
from envelope_encryption.secret import SecretKey
from envelope_encryption.spark.sql import runtime


@pytest.fixture
def uc_credential(monkeypatch):
    """``databricks.service_credentials`` as a UC UDF sees it; records the names asked."""
    asked: list[str] = []
    session = botocore.session.get_session()
    module = types.ModuleType("databricks.service_credentials")
    module.getServiceCredentialsProvider = lambda name: asked.append(name) or session
    monkeypatch.setitem(sys.modules, "databricks.service_credentials", module)
    worker = runtime._Worker()
    monkeypatch.setattr(runtime, "_worker", worker)
    yield asked
    worker.close()


def _kms_settings(moto, **options: str) -> Settings:
    return Settings(
        backend="aws-kms", catalog=f"r{uuid.uuid4().hex[:8]}", schemas=("hr",),
        metastore_id="ms1", service_credential="envelope-kms",
        options={"aws-region": "us-east-1", "aws-endpoint-url": moto.url, **options},
    )


def test_the_udf_provider_honours_every_setting_and_the_one_client_builder(moto, uc_credential):
    settings = _kms_settings(moto, **{"kms-key-alias": "alias/team/pii",
                                      "kms-rotation": "on-demand",
                                      "kms-enable-rotation": "false"})
    provider = runtime.build_provider(settings)
    assert isinstance(provider, KmsKekProvider)
    assert (provider.alias, provider.rotation, provider.enable_rotation) == (
        "alias/team/pii", "on-demand", False)
    assert uc_credential == ["envelope-kms"]
    config = provider.client.meta.config
    assert config.retries["mode"] == RETRIES["mode"] == "adaptive"
    # botocore counts the first try in total_max_attempts.
    assert config.retries["total_max_attempts"] == RETRIES["max_attempts"] + 1
    assert config.connect_timeout == 10
    assert provider.client.meta.endpoint_url == moto.url


def _passed(record) -> dict:
    """A record as the key subquery passes it (the columns its tag covers)."""
    return {"key_alias": record.scope, "key_version": record.version,
            "revision": record.revision, "key_state": record.state.value,
            "key_type": record.key_type, "kek_backend": record.kek_backend,
            "wrapped_key": record.wrapped.blob, "kek_id": record.wrapped.kek_id,
            "kek_version": record.wrapped.kek_version, "record_tag": record.tag,
            "integrity": record.integrity}


def test_a_worker_unwraps_each_version_once_and_keeps_secret_keys(spark, moto, uc_credential):
    from envelope_encryption.keyring import Keyring
    from envelope_encryption.keyring.table_store import TableDekStore
    from envelope_encryption.lakehouse import Lakehouse

    moto.reset()
    settings = _kms_settings(moto)
    kek = runtime.build_provider(settings)
    kek.ensure()
    scope = settings.scope("hr")
    store = TableDekStore(spark, settings.catalog, lakehouse=Lakehouse(False))
    store.ensure()
    keyring = Keyring(store, kek, "admin")
    keyring.ensure_active(scope)
    (record,) = store.current(scope)
    (integrity,) = store.integrity_history()
    payload = runtime.settings_payload(settings)
    calls = []
    deployment = runtime._worker.deployment(payload)
    real_unwrap = deployment.provider.unwrap
    deployment.provider.unwrap = lambda w, c: calls.append(c) or real_unwrap(w, c)
    for _ in range(3):
        assert runtime.unwrap_records(payload, scope, [_passed(record)], _passed(integrity)) \
            == [keyring.dek(scope, 1).reveal()]
    assert len(calls) == 2  # the integrity key and the DEK, once each per worker
    assert all(isinstance(cached, SecretKey) for cached, _at in deployment.cache._keys.values())
    assert keyring.dek(scope, 1).reveal().hex() not in repr(deployment.cache)


def test_the_unwrap_function_serves_only_the_deployments_scopes(moto, uc_credential):
    from envelope_encryption.errors import KeyringError

    settings = _kms_settings(moto)
    kek = runtime.build_provider(settings)
    kek.ensure()
    # A scope of the same catalog that the deployment does not serve, even with a blob the
    # KEK would unwrap for it: refused before any call to the key service.
    other = f"{settings.catalog}.sales"
    _, wrapped = kek.generate_dek(WrapContext(other, 1))
    payload = runtime.settings_payload(settings)
    calls = []
    deployment = runtime._worker.deployment(payload)
    deployment.provider.unwrap = lambda w, c: calls.append(c)
    with pytest.raises(KeyringError, match=r"not .*sales: refused"):
        runtime.unwrap_records(payload, other, [{"key_alias": other, "key_version": 1,
                                                 "wrapped_key": wrapped.blob}], None)
    with pytest.raises(KeyringError, match="refused"):
        runtime.dek_records_json(payload, other)
    assert calls == []
