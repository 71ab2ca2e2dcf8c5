"""The SQL layer over the AWS back ends, on moto over HTTP: the same decrypt SQL, the unwrap
function's real handler (from the golden DDL) and the service-credential path of the runtime."""

from __future__ import annotations

import json
import sys
import types
import uuid

import boto3
import pandas as pd
import pytest
from botocore.config import Config

from envelope_encryption.config import Settings
from envelope_encryption.jobs.common import JobContext
from envelope_encryption.kek.aws import kms as aws_kms
from envelope_encryption.kek.aws import secrets_manager as aws_secrets_manager
from envelope_encryption.kek.base import WrapContext
from envelope_encryption.keyring import Keyring, secrets_manager_store
from envelope_encryption.keyring.base import DekRecord
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.spark.sql import runtime
from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment, read_table_as
from envelope_encryption.spark.sql.render import (
    render_decrypt_cells_function,
    render_unwrap_function,
)
from envelope_encryption.spark.sql.target import SqlOptions, SqlTarget
from tests.support.keyrings import append_signed

from .conftest import write_encrypted

REGION = "us-east-1"
ROWS = [(1, "Ada", "111-11-1111"), (2, "Grace", None)]
ROWS_V2 = [(3, "Linus", "333-33-3333")]


def _settings(backend: str, moto, **extra) -> Settings:
    return Settings(
        backend=backend, catalog=f"b{uuid.uuid4().hex[:8]}", schemas=("hr",),
        metastore_id="ms1", options={"aws-region": REGION, "aws-endpoint-url": moto.url},
        **extra,
    )


def _client(moto, service):
    return boto3.client(service, region_name=REGION, endpoint_url=moto.url,
                        config=Config(retries={"max_attempts": 2, "mode": "standard"}))


def _kms_context(spark, moto) -> JobContext:
    moto.reset()
    settings = _settings("aws-kms", moto)
    kek = aws_kms.from_settings(settings)
    kek.ensure()
    lakehouse = Lakehouse(databricks=False)
    store = TableDekStore(spark, settings.catalog, lakehouse=lakehouse)
    store.ensure()
    keyring = Keyring(store, kek, "tester")
    keyring.ensure_active(settings.scope("hr"))
    return JobContext(settings, spark, lakehouse, kek, store, keyring)


def test_aws_kms_member_reads_every_version_non_member_nothing(spark, moto):
    ctx = _kms_context(spark, moto)
    ref = write_encrypted(ctx, ROWS)
    ctx.keyring.create_version(ref.scope)
    write_encrypted(ctx, ROWS_V2)
    member = f"{ctx.settings.catalog}.hr.crypto.user"
    env = LocalSqlEnvironment(spark, ctx.settings, groups=[member]).install()
    rows = spark.table(env.masked_view(ref, ["name", "ssn"])).orderBy("id").collect()
    assert [tuple(r) for r in rows] == ROWS + ROWS_V2
    # The KMS key is asked once per worker process and DEK version, never per row.
    assert {version for _, version in env.kek_unwraps} == {1, 2}
    assert len(env.kek_unwraps) == len(set(env.kek_unwraps))
    hidden = read_table_as(ctx.spark, ctx.settings, ref, ["name", "ssn"], member=False)
    assert {(r.name, r.ssn) for r in hidden.collect()} == {(None, None)}


def test_aws_sm_keyring_secret_read_through_dek_records(spark, moto):
    moto.reset()
    settings = _settings("aws-sm", moto)
    sm = _client(moto, "secretsmanager")
    kek = aws_secrets_manager.from_settings(settings, client=sm)
    kek.ensure()
    store = secrets_manager_store.from_settings(settings, client=sm)
    store.ensure()
    keyring = Keyring(store, kek, "tester")
    keyring.ensure_active(settings.scope("hr"))
    ctx = JobContext(settings, spark, Lakehouse(databricks=False), kek, store, keyring)
    ref = write_encrypted(ctx, ROWS)
    keyring.create_version(ref.scope)
    write_encrypted(ctx, ROWS_V2)
    seen = read_table_as(ctx.spark, ctx.settings, ref, ["name", "ssn"], member=True)
    assert [tuple(r) for r in seen.orderBy("id").collect()] == ROWS + ROWS_V2
    records = runtime.dek_records_json(runtime.settings_payload(settings), ref.scope)
    assert '"key_version": 2' in records and "Plaintext" not in records


def _golden_handler(settings: Settings, render=render_unwrap_function):
    """The Python body of a Python function exactly as rendered into the DDL."""
    ddl = render(SqlTarget(settings), SqlOptions())
    body = ddl.split("AS $$\n", 1)[1].rsplit("\n$$", 1)[0]
    namespace: dict = {}
    exec(compile(body, "<rendered handler>", "exec"), namespace)
    return namespace["handler"]


@pytest.fixture
def uc_credential(monkeypatch):
    """What a Unity Catalog UDF offers: databricks.service_credentials (here: the default
    botocore session, i.e. the test credentials pointed at moto)."""
    import botocore.session

    asked = []
    module = types.ModuleType("databricks.service_credentials")

    def provider(name):
        asked.append(name)
        return botocore.session.get_session()

    module.getServiceCredentialsProvider = provider
    monkeypatch.setitem(sys.modules, "databricks.service_credentials", module)
    worker = runtime._Worker()  # a fresh Python worker: nothing built or unwrapped yet
    monkeypatch.setattr(runtime, "_worker", worker)
    yield asked
    worker.close()


def _as_passed(**row) -> str:
    """A record as the key subquery passes it: JSON, binary columns as hex."""
    return json.dumps({k: v.hex() if isinstance(v, (bytes, bytearray)) else v
                       for k, v in row.items() if v is not None})


def _passed(record) -> str:
    return _as_passed(key_alias=record.scope, key_version=record.version,
                      revision=record.revision, key_state=record.state.value,
                      key_type=record.key_type, kek_backend=record.kek_backend,
                      wrapped_key=record.wrapped.blob, kek_id=record.wrapped.kek_id,
                      kek_version=record.wrapped.kek_version, record_tag=record.tag,
                      integrity=record.integrity or None)


def _call(handler, scope, records, integrity=None):
    (out,) = list(handler(iter([(pd.Series([scope]), pd.Series([records]),
                                 pd.Series([integrity]))])))
    return list(out[0])


def test_rendered_kms_handler_unwraps_verified_records_only(spark, moto, uc_credential):
    moto.reset()
    settings = _settings("aws-kms", moto, service_credential="envelope-kms")
    kek = aws_kms.KmsKekProvider(_client(moto, "kms"), metastore_id="ms1",
                                 catalog=settings.catalog)
    kek.ensure()
    store = TableDekStore(spark, settings.catalog, lakehouse=Lakehouse(databricks=False))
    store.ensure()
    keyring = Keyring(store, kek, "tester")
    scope = settings.scope("hr")
    keyring.ensure_active(scope)
    keyring.create_version(scope)
    v1, v2 = store.current(scope)
    (integrity,) = store.integrity_history()
    handler = _golden_handler(settings)
    # One row per query: the scope and its collected records (here with a NULL record and
    # a repeated one), the DEKs come back in the same order.
    out = _call(handler, scope, [_passed(v1), _passed(v2), None, _passed(v1)],
                _passed(integrity))
    deks = [keyring.dek(scope, 1).reveal(), keyring.dek(scope, 2).reveal()]
    assert out == [deks[0], deks[1], None, deks[0]]
    assert uc_credential == ["envelope-kms"]  # the function's service credential, by name
    # v1's wrapped key presented as v2 (tag and all): its tag no longer verifies, refused
    # before KMS is asked.
    swapped = _as_passed(**{**json.loads(_passed(v2)), "wrapped_key": v1.wrapped.blob})
    with pytest.raises(Exception, match=f"{scope} v2 .*fails its integrity check") as info:
        _call(handler, scope, [swapped], _passed(integrity))
    assert deks[0].hex() not in str(info.value)
    # A blob of the caller's, even one KMS would unwrap for that scope and version: refused.
    _, own = kek.generate_dek(WrapContext(scope, 3))
    with pytest.raises(Exception, match="carries no integrity tag"):
        _call(handler, scope, [_as_passed(key_alias=scope, key_version=3, revision=1,
                                          key_state="ENABLED", key_type="ENCRYPTED_DEK",
                                          kek_backend="aws-kms", wrapped_key=own.blob,
                                          kek_id=own.kek_id, kek_version="")],
              _passed(integrity))
    # A scope that is not one of the deployment's is refused before any key service call.
    with pytest.raises(Exception, match=r"not .*sales: refused"):
        _call(handler, f"{settings.catalog}.sales", [_passed(v1)], _passed(integrity))


def test_rendered_sm_handler_reads_the_kek_version_named_by_the_record(moto, uc_credential):
    moto.reset()
    settings = _settings("aws-sm", moto, service_credential="envelope-secrets")
    kek = aws_secrets_manager.from_settings(settings, client=_client(moto, "secretsmanager"))
    kek.ensure()
    scope = settings.scope("hr")
    dek, wrapped = kek.generate_dek(WrapContext(scope, 1))
    kek.rotate()  # the record still names the KEK version that wrapped it
    store = secrets_manager_store.from_settings(settings, client=_client(moto, "secretsmanager"))
    store.ensure()
    append_signed(store, kek, DekRecord(scope=scope, version=1, wrapped=wrapped,
                                        kek_backend="aws-sm"))
    handler = _golden_handler(settings)
    passed = _as_passed(key_alias=scope, key_version=1, key_type="ENCRYPTED_DEK",
                        wrapped_key=wrapped.blob, kek_id=wrapped.kek_id,
                        kek_version=wrapped.kek_version)
    assert _call(handler, scope, [passed]) == [dek.reveal()]
    # The function reads the keyring itself: a record that is not the keyring's current,
    # enabled record of that version is refused, even one the KEK would unwrap.
    other_dek, other = kek.generate_dek(WrapContext(scope, 2))
    for version in (2, 1):
        forged = _as_passed(key_alias=scope, key_version=version, key_type="ENCRYPTED_DEK",
                            wrapped_key=other.blob, kek_id=other.kek_id,
                            kek_version=other.kek_version)
        with pytest.raises(Exception, match="not a current, enabled record") as info:
            _call(handler, scope, [forged])
        assert other_dek.reveal().hex() not in str(info.value)


def test_rendered_decrypt_cells_handler_opens_cells_with_kms_once_per_version(
        spark, moto, uc_credential):
    """The batch decrypt function's body as rendered, called as Unity Catalog calls it
    (pandas Series), against KMS: plaintext for authentic cells of both versions, the
    cause for a moved one, nothing for a NULL keyring, and each DEK unwrapped once."""
    from envelope_encryption.cell.format import encrypt_value

    moto.reset()
    settings = _settings("aws-kms", moto, service_credential="envelope-kms")
    kek = aws_kms.KmsKekProvider(_client(moto, "kms"), metastore_id="ms1",
                                 catalog=settings.catalog)
    kek.ensure()
    store = TableDekStore(spark, settings.catalog, lakehouse=Lakehouse(databricks=False))
    store.ensure()
    keyring = Keyring(store, kek, "tester")
    scope = settings.scope("hr")
    keyring.ensure_active(scope)
    keyring.create_version(scope)
    (integrity,) = store.integrity_history()
    ring = json.dumps({"key_alias": scope,
                       "records": [json.loads(_passed(r)) for r in store.current(scope)],
                       "integrity": _passed(integrity)})
    place = f"{scope}.people.ssn"
    cells = [encrypt_value(f"v{v}", keyring.dek(scope, v).reveal(), v, "string", place)
             for v in (1, 2)]
    moved = encrypt_value("x", keyring.dek(scope, 1).reveal(), 1, "string", place + "2")
    values = pd.Series([*cells, None, moved], dtype=object)
    handler = _golden_handler(settings, render_decrypt_cells_function)
    deployment = runtime._worker.deployment(runtime.settings_payload(settings))
    calls = []
    real_unwrap = deployment.provider.unwrap
    deployment.provider.unwrap = lambda w, c: calls.append(c) or real_unwrap(w, c)
    batches = [(values, pd.Series([place] * 4), pd.Series([ring] * 4)),
               (values, pd.Series([place] * 4), pd.Series([None] * 4, dtype=object))] * 2
    answers = [list(out) for out in handler(iter(batches))]
    assert answers == [["+v1", "+v2", None, "!A"], [None] * 4] * 2
    # Once per version for this worker, and once for the keyring's integrity key.
    assert sorted(c.version for c in calls if c.scope == scope) == [1, 2]
    assert len([c for c in calls if c.scope != scope]) == 1
    assert uc_credential == ["envelope-kms"]
