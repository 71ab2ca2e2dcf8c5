"""The unwrap function unwraps only records the keyring vouches for, through the rendered SQL.

A writer of the keyring table (who cannot use the KEK) tries what the threat model lists:
a new version whose wrapped key holds a DEK they know (on Azure anyone can RSA-wrap with
the public key), a retired version edited back to ENABLED, a retired version whose RETIRED
revision is deleted, an older revision replayed as the newest, an untagged record. And a
caller of ``unwrap_key`` passes bytes of their own. Each is refused with the project's
error by the decrypt mask, the encrypt function and the function itself: never plaintext,
never a cell under the attacker's key. Run on local Spark for the local, aws-kms (moto) and
azure (local Key Vault) back ends, with the functions Databricks would run.
"""

from __future__ import annotations

import os
import uuid

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.jobs.common import JobContext
from envelope_encryption.kek.aws import kms as aws_kms
from envelope_encryption.kek.base import WrapContext
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.base import INTEGRITY_KEY_TYPE
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.secret import SecretKey
from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment
from envelope_encryption.spark.sql.passed_records import record_struct_sql
from tests.support.azure_fixtures import make_provider
from tests.support.keyring_tamper import rewrite, where

from .conftest import make_local_context, write_encrypted

ROWS = [(1, "Ada", "111-11-1111"), (2, "Grace", "222-22-2222")]
ROWS_V2 = [(3, "Linus", "333-33-3333")]
ATTACKER_DEK = bytes(range(32))
SECRET_ENV = "ENVELOPE_TEST_BOUND_UNWRAP_SECRET"


def _kms_context(spark, moto) -> JobContext:
    moto.reset()
    settings = Settings(backend="aws-kms", catalog=f"k{uuid.uuid4().hex[:8]}", schemas=("hr",),
                        metastore_id="ms1",
                        options={"aws-region": "us-east-1", "aws-endpoint-url": moto.url})
    return _context(spark, settings, aws_kms.from_settings(settings))


def _azure_context(spark, vault) -> JobContext:
    vault.register_client("bound-app", "bound-secret")
    # The unwrap function runs in Spark's Python workers: their environment is the one
    # Spark gives its executors (spark.executorEnv), not this process's.
    spark.sparkContext.environment[SECRET_ENV] = "bound-secret"
    os.environ[SECRET_ENV] = "bound-secret"
    key_name = f"kek-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        backend="azure", catalog=f"z{uuid.uuid4().hex[:8]}", schemas=("hr",), metastore_id="ms1",
        options={"azure-vault-url": vault.vault_url, "azure-key-name": key_name,
                 "azure-key-size": "2048", "azure-ca-bundle": str(vault.ca_file),
                 "azure-tenant-id": vault.tenant_id, "azure-client-id": "bound-app",
                 "azure-client-secret-env": SECRET_ENV,
                 "azure-authority-host": vault.authority},
    )
    return _context(spark, settings, make_provider(vault, key_name))


def _context(spark, settings: Settings, kek) -> JobContext:
    kek.ensure()
    lakehouse = Lakehouse(databricks=False)
    store = TableDekStore(spark, settings.catalog, lakehouse=lakehouse)
    store.ensure()
    keyring = Keyring(store, kek, "tester")
    keyring.ensure_active(settings.scope("hr"))
    return JobContext(settings, spark, lakehouse, kek, store, keyring)


@pytest.fixture(params=["local", "aws-kms", "azure"])
def ctx(request, spark, tmp_path) -> JobContext:
    if request.param == "local":
        yield make_local_context(spark, tmp_path)
    elif request.param == "aws-kms":
        yield _kms_context(spark, request.getfixturevalue("moto"))
    else:
        yield _azure_context(spark, request.getfixturevalue("vault"))
        spark.sparkContext.environment.pop(SECRET_ENV, None)
        os.environ.pop(SECRET_ENV, None)


def _read(spark, env: LocalSqlEnvironment, ref) -> list[tuple]:
    view = env.masked_view(ref, ["name", "ssn"])
    return sorted(tuple(r) for r in spark.table(view).collect())


def _refused(spark, env, ref, match: str, active: bool = False) -> None:
    """The decrypt mask fails with the project's error (and the encrypt function, when the
    record is the scope's active one)."""
    with pytest.raises(Exception, match=match) as info:
        _read(spark, env, ref)
    assert "Grace" not in str(info.value) and "111-11-1111" not in str(info.value)
    if not active:
        return
    with pytest.raises(Exception, match=match):
        spark.sql(f"SELECT {env.encrypt_function('hr')}('x', 'people', 'ssn') AS c").collect()


def test_forged_edited_and_rolled_back_records_are_refused_by_the_sql(ctx, spark):
    scope = ctx.settings.scope("hr")
    ref = write_encrypted(ctx, ROWS)
    ctx.keyring.create_version(scope)
    write_encrypted(ctx, ROWS_V2)
    env = LocalSqlEnvironment(spark, ctx.settings,
                              groups=[f"{ctx.settings.catalog}.hr.crypto.user"]).install()
    assert _read(spark, env, ref) == sorted(ROWS + ROWS_V2)
    signed = [r.asDict() for r in spark.table(ctx.store.table).collect()]

    def restore() -> None:
        rewrite(ctx.store, lambda rows: signed)
        assert _read(spark, env, ref) == sorted(ROWS + ROWS_V2)

    # 1. A new version holding a DEK the writer knows (on Azure RSA anyone can wrap it),
    #    untagged, then with the tag of the real v2: refused, and no cell is made under it.
    forged = ctx.kek.wrap(SecretKey(ATTACKER_DEK), WrapContext(scope, 3))
    v2 = where(signed, key_alias=scope, key_version=2)[0]
    for tag in (None, v2["record_tag"]):
        injected = dict(v2, record_id=str(uuid.uuid4()), key_version=3,
                        wrapped_key=bytearray(forged.blob), kek_id=forged.kek_id,
                        kek_version=forged.kek_version, record_tag=tag)
        rewrite(ctx.store, lambda rows, row=injected: [*rows, row])
        _refused(spark, env, ref, "carries no integrity tag" if tag is None
                 else f"{scope} v3 .*fails its integrity check", active=True)
        restore()

    # 2. The wrapped bytes of v1 swapped for v2's (a known, valid wrapping): refused.
    rewrite(ctx.store, lambda rows: [
        dict(r, wrapped_key=v2["wrapped_key"]) if r["key_alias"] == scope
        and r["key_version"] == 1 else r for r in rows])
    _refused(spark, env, ref, f"{scope} v1 .*fails its integrity check")
    restore()

    # 3. v1 retired, then edited back to ENABLED in place: refused.
    ctx.keyring.retire(scope, 1, in_use=False)
    retired = [r.asDict() for r in spark.table(ctx.store.table).collect()]
    rewrite(ctx.store, lambda rows: [
        dict(r, key_state="ENABLED") if r["key_alias"] == scope and r["key_version"] == 1
        and r["key_state"] == "RETIRED" else r for r in retired])
    _refused(spark, env, ref, f"{scope} v1 .*fails its integrity check")

    # 4. Rolled back: the RETIRED revision deleted, so the signed ENABLED revision is the
    #    newest again. The integrity record lists v1 as retired: refused.
    rewrite(ctx.store, lambda rows: [
        r for r in retired if not (r["key_alias"] == scope and r["key_state"] == "RETIRED")])
    _refused(spark, env, ref, f"DEK {scope} v1 is retired")

    # 5. An older revision replayed as the newest (its content under a higher revision).
    enabled_v1 = where(retired, key_alias=scope, key_version=1, revision=1)[0]
    rewrite(ctx.store, lambda rows: [
        *retired, dict(enabled_v1, record_id=str(uuid.uuid4()), revision=3)])
    _refused(spark, env, ref, f"{scope} v1 .*fails its integrity check")

    # 6. The keyring's integrity record replaced by one the writer made: refused.
    integrity = where(retired, key_type=INTEGRITY_KEY_TYPE)
    newest = max(integrity, key=lambda r: r["revision"])
    rewrite(ctx.store, lambda rows: [
        dict(r, integrity=r["integrity"].replace('"retired":[[', '"retired":[["x.y",9],['))
        if r is newest else r for r in retired])
    with pytest.raises(Exception, match="integrity record"):
        _read(spark, env, ref)


def test_a_direct_call_with_the_callers_bytes_is_refused(ctx, spark):
    """Whoever may EXECUTE unwrap_key gets no key for bytes of their own, nor for a record
    the keyring does not vouch for, whatever they pass as the integrity record."""
    scope = ctx.settings.scope("hr")
    env = LocalSqlEnvironment(spark, ctx.settings).install()
    unwrap = env.target.function("unwrap_key")
    keyring = ctx.store.table
    forged = ctx.kek.wrap(SecretKey(ATTACKER_DEK), WrapContext(scope, 1))
    integrity = (f"(SELECT to_json({record_struct_sql('i')}) FROM {keyring} i "
                 f"WHERE i.key_type = '{INTEGRITY_KEY_TYPE}' ORDER BY i.revision DESC LIMIT 1)")
    record = (f"to_json(named_struct('key_alias', '{scope}', 'key_version', 1, "
              "'revision', 1, 'key_state', 'ENABLED', 'key_type', 'ENCRYPTED_DEK', "
              f"'kek_backend', '{ctx.settings.backend}', 'wrapped_key', '{forged.blob.hex()}', "
              f"'kek_id', '{forged.kek_id}', 'kek_version', '{forged.kek_version}'))")
    for passed_integrity, match in ((integrity, "carries no integrity tag"),
                                    ("CAST(NULL AS STRING)", "no integrity record yet"),
                                    ("'{}'", "not one")):
        with pytest.raises(Exception, match=match) as info:
            spark.sql(f"SELECT {unwrap}('{scope}', array({record}), {passed_integrity}) "
                      "AS k").collect()
        assert ATTACKER_DEK.hex() not in str(info.value)
    # Free text is not a record at all; a record of another scope is refused.
    with pytest.raises(Exception, match="not one"):
        spark.sql(f"SELECT {unwrap}('{scope}', array('{forged.blob.hex()}'), NULL)").collect()
    with pytest.raises(Exception, match="another scope"):
        spark.sql(f"SELECT {unwrap}('{scope}', array(replace({record}, '{scope}', "
                  f"'{ctx.settings.catalog}.other')), {integrity})").collect()
    # The keyring's own record, as the key subquery passes it, still unwraps.
    own = (f"(SELECT to_json({record_struct_sql('r')}) FROM {keyring} r "
           f"WHERE r.key_alias = '{scope}' AND r.key_version = 1)")
    (row,) = spark.sql(f"SELECT {unwrap}('{scope}', array({own}), {integrity}) AS k").collect()
    assert bytes(row.k[0]) == ctx.keyring.dek(scope, 1).reveal()
