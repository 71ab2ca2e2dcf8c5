"""DEK states through the SQL functions on local Spark (the SQL Databricks runs): a
decrypt-only version still decrypts but is never the one the encrypt function uses; a
destroyed version reads as NULL (lenient) or fails (strict), never as plaintext."""

from __future__ import annotations

import pytest
from pyspark.errors import PySparkException

from envelope_encryption.keyring.base import DekState
from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment, read_table_as
from envelope_encryption.spark.sql.target import SqlOptions

from .conftest import write_encrypted

V1 = [(1, "Ada", "111-11-1111"), (2, "Bob", "222-22-2222")]
V2 = [(3, "Cy", "333-33-3333")]


def _ssn(ctx, ref, decrypt: str = "strict") -> dict[int, str | None]:
    seen = read_table_as(ctx.spark, ctx.settings, ref, ["name", "ssn"], member=True,
                         options=SqlOptions(decrypt=decrypt))
    return {r.id: r.ssn for r in seen.collect()}


def test_decrypt_only_decrypts_in_sql_and_the_sql_encrypt_skips_it(local_ctx):
    ref = write_encrypted(local_ctx, V1)
    local_ctx.keyring.create_version(ref.scope)
    write_encrypted(local_ctx, V2)
    # v2, the highest version, becomes decrypt-only after v3 exists: v3 encrypts, not v2.
    local_ctx.keyring.create_version(ref.scope)
    local_ctx.keyring.set_state(ref.scope, 2, DekState.DECRYPT_ONLY)
    local_ctx.keyring.set_state(ref.scope, 1, DekState.DECRYPT_ONLY)
    assert _ssn(local_ctx, ref) == {1: "111-11-1111", 2: "222-22-2222", 3: "333-33-3333"}
    env = LocalSqlEnvironment(local_ctx.spark, local_ctx.settings,
                              groups=[f"{ref.catalog}.hr.crypto.user"]).install()
    cell = local_ctx.spark.sql(
        f"SELECT {env.encrypt_function('hr')}('x', 'people', 'ssn') AS c").first().c
    assert cell.startswith("ee1:3:string:")
    # With v3 decrypt-only and v2 enabled again, the SQL encrypt picks v2 (the highest
    # ENABLED), never v3.
    local_ctx.keyring.set_state(ref.scope, 2, DekState.ENABLED)
    local_ctx.keyring.set_state(ref.scope, 3, DekState.DECRYPT_ONLY)
    cell = local_ctx.spark.sql(
        f"SELECT {env.encrypt_function('hr')}('x', 'people', 'ssn') AS c").first().c
    assert cell.startswith("ee1:2:string:")


def test_a_destroyed_version_reads_null_or_fails_never_plaintext(local_ctx):
    ref = write_encrypted(local_ctx, V1)
    local_ctx.keyring.create_version(ref.scope)
    write_encrypted(local_ctx, V2)
    scope = ref.scope
    local_ctx.keyring.destroy(scope, 1, confirm=f"{scope}:v1", in_use=True, force=True)
    assert _ssn(local_ctx, ref, "lenient") == {1: None, 2: None, 3: "333-33-3333"}
    with pytest.raises(PySparkException, match="unknown or retired"):
        _ssn(local_ctx, ref)
