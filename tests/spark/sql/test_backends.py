"""The SQL layer over the AWS back ends, on moto over HTTP: the same decrypt SQL, the unwrap
function's real handler (from the golden DDL) and the service-credential path of the runtime."""

from __future__ import annotations

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
from envelope_encryption.spark.sql.render import render_unwrap_function
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
    assert env.unwrap_calls == 2  # one record per DEK version, one query
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


def _golden_handler(settings: Settings):
    """The Python body of the unwrap function exactly as rendered into the DDL."""
    ddl = render_unwrap_function(SqlTarget(settings), SqlOptions())
    body = ddl.split("AS $$\n", 1)[1].rsplit("\n$$", 1)[0]
    namespace: dict = {}
    exec(compile(body, "<unwrap_key handler>", "exec"), namespace)
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


def test_rendered_kms_handler_unwraps_like_the_provider(moto, uc_credential):
    moto.reset()
    settings = _settings("aws-kms", moto, service_credential="envelope-kms")
    kek = aws_kms.KmsKekProvider(_client(moto, "kms"), metastore_id="ms1",
                                 catalog=settings.catalog)
    kek.ensure()
    scope = settings.scope("hr")
    dek1, wrapped1 = kek.generate_dek(WrapContext(scope, 1))
    dek2, wrapped2 = kek.generate_dek(WrapContext(scope, 2))
    handler = _golden_handler(settings)
    # One row per query: the scope and its collected records (here with a NULL record and
    # a repeated one), the DEKs come back in the same order.
    batch = (
        pd.Series([scope]),
        pd.Series([[1, 2, 1, 1]]),
        pd.Series([[wrapped1.blob, wrapped2.blob, None, wrapped1.blob]]),
        pd.Series([[wrapped1.kek_id, wrapped2.kek_id, wrapped1.kek_id, wrapped1.kek_id]]),
        pd.Series([["", "", "", ""]]),
    )
    (out,) = list(handler(iter([batch])))
    assert list(out[0]) == [dek1.reveal(), dek2.reveal(), None, dek1.reveal()]
    assert uc_credential == ["envelope-kms"]  # the function's service credential, by name
    # The KMS encryption context binds scope and version: a DEK claimed for v2 is refused.
    bad = (pd.Series([scope]), pd.Series([[2]]), pd.Series([[wrapped1.blob]]),
           pd.Series([[wrapped1.kek_id]]), pd.Series([[""]]))
    with pytest.raises(Exception, match="kms:Decrypt") as info:
        list(handler(iter([bad])))
    assert dek1.reveal().hex() not in str(info.value)
    # A scope that is not one of the deployment's is refused before any key service call.
    other = (pd.Series([f"{settings.catalog}.sales"]), pd.Series([[1]]),
             pd.Series([[wrapped1.blob]]), pd.Series([[wrapped1.kek_id]]), pd.Series([[""]]))
    with pytest.raises(Exception, match=r"not .*sales: refused"):
        list(handler(iter([other])))


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
    (out,) = list(handler(iter([(
        pd.Series([scope]), pd.Series([[1]]), pd.Series([[wrapped.blob]]),
        pd.Series([[wrapped.kek_id]]), pd.Series([[wrapped.kek_version]]),
    )])))
    assert list(out[0]) == [dek.reveal()]
    # The function reads the keyring itself: a record that is not the keyring's current,
    # enabled record of that version is refused, even one the KEK would unwrap.
    other_dek, other = kek.generate_dek(WrapContext(scope, 2))
    for versions, blob in (([2], other.blob), ([1], other.blob)):
        with pytest.raises(Exception, match="not a current, enabled record") as info:
            list(handler(iter([(pd.Series([scope]), pd.Series([versions]),
                                pd.Series([[blob]]), pd.Series([[other.kek_id]]),
                                pd.Series([[other.kek_version]]))])))
        assert other_dek.reveal().hex() not in str(info.value)
