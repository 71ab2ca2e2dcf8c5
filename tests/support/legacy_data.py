"""A secret and cells made exactly the way the original Secrets Manager notebooks made them.

The notebooks: ``kek_password = b64encode(token_bytes(32))``, ``kek_salt =
b64encode(random 32 bytes)``; the DEK is ``b64encode(token_bytes(24))`` (a 32-character
text); the KEK is ``scrypt(password, b64decode(salt), key_len=32, N=2**17, r=8, p=1)``; the
DEK text is encrypted with AES-GCM under it (their library's default: a random 16-byte
nonce, a 16-byte tag, no AAD) and ciphertext, nonce and tag are stored base64 in the secret
as ``<schema>_dek``, ``<schema>_nonce``, ``<schema>_tag``. Cells are
``base64(aes_encrypt(col, '<dek text>', 'GCM', 'DEFAULT'))`` in Spark SQL.
"""

from __future__ import annotations

import json
import secrets
from base64 import b64decode, b64encode

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt


def legacy_secret(schemas: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the secret's JSON fields, the plaintext DEK text of each schema)."""
    fields = {
        "kek_password": b64encode(secrets.token_bytes(32)).decode("utf-8"),
        "kek_salt": b64encode(secrets.token_bytes(32)).decode("utf-8"),
    }
    kek = Scrypt(salt=b64decode(fields["kek_salt"]), length=32, n=2**17, r=8, p=1).derive(
        fields["kek_password"].encode("utf-8"))
    deks = {}
    for schema in schemas:
        dek = b64encode(secrets.token_bytes(24)).decode("utf-8")
        nonce = secrets.token_bytes(16)
        sealed = AESGCM(kek).encrypt(nonce, dek.encode("utf-8"), None)
        fields[f"{schema}_dek"] = b64encode(sealed[:-16]).decode("utf-8")
        fields[f"{schema}_nonce"] = b64encode(nonce).decode("utf-8")
        fields[f"{schema}_tag"] = b64encode(sealed[-16:]).decode("utf-8")
        deks[schema] = dek
    return fields, deks


# -- the KMS and Key Vault variants: their key table --------------------------------------

# Their table's columns (Databricks: ``id BIGINT GENERATED ALWAYS AS IDENTITY``; the Azure
# table also has ``PRIMARY KEY (key_name, key_version)`` and ``delta.appendOnly``, which a
# local parquet table cannot carry; the columns and their types are theirs).
_COMMON = ("id BIGINT, created_date DATE, created_time TIMESTAMP, last_modified_time "
           "TIMESTAMP, created_by STRING, managed_by STRING, {scope} STRING, key_enabled "
           "BOOLEAN, key_version INT, key_type STRING, key BINARY")
NOTEBOOK_DDL = {"aws-kms": _COMMON.format(scope="key_alias"),
                "azure": _COMMON.format(scope="key_name")}
NOTEBOOK_COLUMNS = {kind: [part.split()[0] for part in ddl.split(", ")]
                    for kind, ddl in NOTEBOOK_DDL.items()}


def create_notebook_table(spark, catalog: str, kind: str) -> str:
    """Their key table, locally ``<catalog>__crypto.keyvault``; returns its name."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {catalog}__crypto")
    table = f"{catalog}__crypto.keyvault"
    spark.sql(f"CREATE TABLE {table} ({NOTEBOOK_DDL[kind]})")
    return table


def insert_notebook_dek(spark, table: str, kind: str, scope: str, version: int,
                        wrapped: bytes, enabled: bool = True) -> None:
    """One row as their notebooks inserted it (key_type ENCRYPTED_DEK)."""
    import datetime

    now = datetime.datetime.now()
    row = (version, now.date(), now, now, "admin@example.com", "admin@example.com", scope,
           enabled, version, "ENCRYPTED_DEK", bytearray(wrapped))
    spark.createDataFrame([row], NOTEBOOK_DDL[kind]).write.insertInto(table)


def create_notebook_functions(spark, catalog: str, names: list[str]) -> None:
    """Functions with their names in ``<catalog>__crypto`` (bodies do not matter here)."""
    for name in names:
        spark.sql(f"CREATE FUNCTION {catalog}__crypto.{name}(c STRING) RETURNS STRING "
                  "RETURN c")


def notebook_cells(spark, values: list[str], dek: bytes) -> list[str]:
    """Cells exactly as their ``encrypt``: base64(aes_encrypt(v, dek, 'GCM', 'DEFAULT'))."""
    from pyspark.sql import functions as F

    df = spark.createDataFrame([(v,) for v in values], "v string")
    cells = df.withColumn("k", F.lit(bytearray(dek))).selectExpr(
        "base64(aes_encrypt(v, k, 'GCM', 'DEFAULT')) AS cell")
    return [row["cell"] for row in cells.collect()]


def snapshot(spark, table: str) -> list[tuple]:
    """Every row of a table, binary columns as bytes, in a stable order."""
    rows = [tuple(bytes(v) if isinstance(v, bytearray) else v for v in row)
            for row in spark.table(table).collect()]
    return sorted(rows, key=repr)


def people_table(spark, catalog: str, cells: list[str]) -> str:
    """``<catalog>.sales.people (id, name)``: the notebooks' cells of the name column."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {catalog}__sales")
    table = f"{catalog}__sales.people"
    spark.createDataFrame(list(enumerate(cells, start=1)), "id int, name string") \
        .write.saveAsTable(table)
    return table


def decrypted_names(spark, settings, catalog: str) -> list[str]:
    """Every name of ``<catalog>.sales.people`` through decrypt_columns (strict)."""
    from envelope_encryption.jobs.common import build_context
    from envelope_encryption.spark.columns import TableRef, decrypt_columns

    with build_context(settings, spark) as ctx:
        df = spark.table(f"{catalog}__sales.people")
        back = decrypt_columns(df, ["name"], keyring=ctx.keyring,
                               table=TableRef(catalog, "sales", "people"),
                               types={"name": "string"})
        return sorted(row["name"] for row in back.collect())


def migrate_and_check(spark, default_kek, settings, catalog: str, their_table: str,
                      names: list[str], legacy_versions: int) -> object:
    """The migration as docs/migration.md runs it, checked at each step:

    kek_setup stops (the default KEK is theirs, then: nothing imported), their table is
    untouched and no keyring exists; a dry run writes nothing; the import records every
    version and a fresh active DEK; kek_setup then passes; every cell decrypts; a second
    import changes nothing; reencrypt_columns moves every legacy cell, counted per version.
    Returns the first import's report.
    """
    import pytest

    from envelope_encryption.errors import ConfigError
    from envelope_encryption.jobs import import_legacy, kek_setup, reencrypt_columns, status
    from envelope_encryption.jobs.common import build_context
    from envelope_encryption.keyring.base import LEGACY_KEY_TYPE

    before = snapshot(spark, their_table)
    keyring_table = f"{catalog}__crypto.dek_keyring"
    with pytest.raises(ConfigError, match="default KEK") as stopped:
        kek_setup.run(default_kek, spark)
    assert "Nothing was changed" in str(stopped.value)
    with pytest.raises(ConfigError, match="import_legacy") as stopped:
        kek_setup.run(settings, spark)
    assert f"their key table {catalog}.crypto.keyvault" in str(stopped.value)
    with pytest.raises(ConfigError, match="default KEK"):
        import_legacy.run(default_kek, spark)
    assert not spark.catalog.tableExists(keyring_table)

    scopes = [f"{catalog}.sales v{v}" for v in range(1, legacy_versions + 1)]
    fresh = [f"{catalog}.sales v{legacy_versions + 1}"]
    dry = import_legacy.run(settings, spark, dry_run=True)
    assert (dry.imported, dry.activated, dry.dry_run) == (scopes, fresh, True)
    assert not spark.catalog.tableExists(keyring_table)

    report = import_legacy.run(settings, spark)
    assert (report.imported, report.activated, report.ok) == (scopes, fresh, True)
    with build_context(settings, spark) as ctx:
        records = ctx.keyring.versions(f"{catalog}.sales")
        assert [r.key_type for r in records] == \
            [LEGACY_KEY_TYPE] * legacy_versions + ["ENCRYPTED_DEK"]
        assert ctx.keyring.active(f"{catalog}.sales").version == legacy_versions + 1
        # The audit trail: each legacy version imported, then the fresh DEK created.
        trail = [(e["operation"], e["outcome"], e["key_version"])
                 for e in ctx.keyring.audit.events() if e["scope"] == f"{catalog}.sales"]
        assert trail == [("dek_imported", "ok", v) for v in range(1, legacy_versions + 1)] + [
            ("dek_created", "ok", legacy_versions + 1)]
    setup = kek_setup.run(settings, spark)
    assert setup.existing_deks == [f"{catalog}.sales v{legacy_versions + 1}"]
    assert decrypted_names(spark, settings, catalog) == sorted(names)

    stored = snapshot(spark, keyring_table)
    again = import_legacy.run(settings, spark)
    assert (again.imported, again.activated, again.already_imported) == ([], [], scopes)
    assert snapshot(spark, keyring_table) == stored

    # status shows how far the table is: every cell still legacy, per legacy version.
    (table,) = json.loads(status.run(settings, spark, tables=["sales.people"],
                                     output_format="json"))["tables"]
    assert sum(c["cells"] for c in table["legacy_cells_per_version"]) == len(names)
    assert table["cells_per_version"] == []

    moved = reencrypt_columns.run(settings, spark, table="sales.people", columns=["name"])
    assert sum(moved.legacy_before.values()) == len(names) and moved.legacy_after == {}
    (table,) = json.loads(status.run(settings, spark, tables=["sales.people"],
                                     output_format="json"))["tables"]
    assert table["legacy_cells_per_version"] == []
    assert table["cells_per_version"] == [{"version": legacy_versions + 1,
                                           "cells": len(names)}]
    assert moved.after == {legacy_versions + 1: len(names)}
    assert decrypted_names(spark, settings, catalog) == sorted(names)
    assert snapshot(spark, their_table) == before  # their table: byte for byte as it was
    return report, moved


# -- the in-place migration, seen through the column masks --------------------------------


def kms_notebook_layout(spark, kms, catalog: str, metastore_id: str,
                        per_version: int = 3) -> tuple[str, list[str]]:
    """Their AWS KMS variant as their notebooks built it, against moto: a KMS key under their
    alias, DEKs from ``GenerateDataKey`` (AES_256) with their encryption context in their key
    table (v1 then disabled by ``03_new_dek``, v2 enabled), ``<catalog>.sales.people`` with
    ``per_version`` cells of each. Returns (their table, the plaintext names)."""
    alias = f"alias/unity_catalog/{metastore_id}/{catalog}/cmk"
    context = {"metastore/catalog": f"{metastore_id}/{catalog}"}
    key = kms.create_key(Description="notebooks' KEK")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=alias, TargetKeyId=key)
    table = create_notebook_table(spark, catalog, "aws-kms")
    create_notebook_functions(spark, catalog, ["unwrap_kms_key", "get_latest_dek_version",
                                               "decrypt_kms", "decrypt"])
    names, cells = [], []
    for version, enabled in ((1, False), (2, True)):
        dek = kms.generate_data_key(KeyId=alias, KeySpec="AES_256", EncryptionContext=context)
        insert_notebook_dek(spark, table, "aws-kms", f"{catalog}.sales", version,
                            dek["CiphertextBlob"], enabled)
        batch = [f"person {version}.{i}" for i in range(per_version)]
        names += batch
        cells += notebook_cells(spark, batch, dek["Plaintext"])
    people_table(spark, catalog, cells)
    return table, names


def akv_notebook_layout(spark, vault, catalog: str, their_key: str,
                        per_version: int = 4) -> tuple[str, list[str], list[str]]:
    """Their Azure Key Vault variant as their notebooks built it, against the local vault: an
    RSA key under their name (2048 bits, their helper's size), 32 random bytes per DEK
    wrapped with RSA-OAEP-256 through the key's *current* version by the real SDK, the key
    rotated between DEK versions 1 and 2, their key table (scope column ``key_name``) and
    their functions (their ``unwrap_key`` is named like ours), ``<catalog>.sales.people``
    with ``per_version`` cells of each. Returns (their table, the plaintext names, their
    key's versions oldest first)."""
    import os

    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

    sdk = {"connection_verify": str(vault.ca_file), "verify_challenge_resource": False}
    keys = KeyClient(vault.vault_url, vault.credential(), **sdk)
    keys.create_rsa_key(their_key, size=2048, key_operations=["wrapKey", "unwrapKey"])
    current = f"{vault.vault_url.rstrip('/')}/keys/{their_key}"  # no version: the current one
    table = create_notebook_table(spark, catalog, "azure")
    create_notebook_functions(spark, catalog, ["unwrap_akv_key", "get_encrypted_dek",
                                               "unwrap_key"])
    names, cells = [], []
    for version in (1, 2):
        if version == 2:
            keys.rotate_key(their_key)  # the KEK rotated between the two DEK versions
        dek = os.urandom(32)
        crypto = CryptographyClient(current, vault.credential(), **sdk)
        wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, dek).encrypted_key
        insert_notebook_dek(spark, table, "azure", f"{catalog}.sales", version, wrapped)
        batch = [f"person {version}.{i}" for i in range(per_version)]
        names += batch
        cells += notebook_cells(spark, batch, dek)
    people_table(spark, catalog, cells)
    return table, names, vault.key_versions(their_key)


def read_through_masks(spark, settings, catalog: str, names: list[str]) -> int:
    """Members read every plaintext name of ``<catalog>.sales.people`` through our decrypt
    mask, non-members none (through the mask, nor through the table's name as the current
    local principal reads it, who must be in no group). Returns the members' count."""
    from envelope_encryption.spark.columns import TableRef
    from envelope_encryption.spark.sql.local_masks import local_groups
    from envelope_encryption.spark.sql.local_unity_catalog import read_table_as

    ref = TableRef(catalog, "sales", "people")
    members = [r["name"] for r in read_table_as(spark, settings, ref, ["name"],
                                                member=True).collect()]
    assert sorted(members) == sorted(names)
    others = [r["name"] for r in read_table_as(spark, settings, ref, ["name"],
                                               member=False).collect()]
    assert others == [None] * len(names)
    assert local_groups(spark) == []
    by_name = [r["name"] for r in spark.table(f"{catalog}__sales.people").collect()]
    assert len(by_name) == len(names) and not set(by_name) & set(names)
    return len(members)


def migrate_through_masks(spark, settings, catalog: str, their_table: str,
                          names: list[str], legacy_versions: int) -> dict[str, int]:
    """The in-place sequence of docs/migration.md, read through the masks at each step:
    import, our SQL layer deployed beside theirs, the table's mask switched to ours,
    reencrypt_columns, the legacy versions retired. Members read every plaintext and
    non-members none at each step; the original cells open no more once their keys are
    retired; their key table is byte-identical at the end. Returns the members' count per
    step."""
    from envelope_encryption.jobs import import_legacy, kek_setup, reencrypt_columns
    from envelope_encryption.spark.columns import TableRef
    from envelope_encryption.spark.sql.deploy import apply_column_masks
    from envelope_encryption.spark.sql.local_masks import set_local_groups
    from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment
    from envelope_encryption.spark.sql.target import SqlOptions

    before = snapshot(spark, their_table)
    original = [r["name"] for r in spark.table(f"{catalog}__sales.people").collect()]
    ref = TableRef(catalog, "sales", "people")
    jobs = [SqlOptions().job_group_name(catalog, "sales")]
    counts = {}
    set_local_groups(spark, [])

    assert import_legacy.run(settings, spark).ok
    kek_setup.run(settings, spark, sql=SqlOptions())  # our functions beside theirs
    counts["beside theirs"] = read_through_masks(spark, settings, catalog, names)

    apply_column_masks(spark, settings, ref, ["name"], databricks=False)
    counts["switched"] = read_through_masks(spark, settings, catalog, names)

    set_local_groups(spark, jobs)  # the jobs read the cells through the masks unchanged
    moved = reencrypt_columns.run(settings, spark, table="sales.people", columns=["name"])
    set_local_groups(spark, [])
    assert sum(moved.legacy_before.values()) == len(names) and moved.legacy_after == {}
    stored = spark.table(f"{catalog}__sales.people__unmasked").collect()
    assert all(r["name"].startswith(f"ee1:{legacy_versions + 1}:") for r in stored)
    counts["re-encrypted"] = read_through_masks(spark, settings, catalog, names)

    set_local_groups(spark, jobs)
    retired = reencrypt_columns.run(settings, spark, table="sales.people", columns=["name"],
                                    retire_legacy=True)
    set_local_groups(spark, [])
    assert retired.retired_legacy == list(range(1, legacy_versions + 1))
    counts["legacy retired"] = read_through_masks(spark, settings, catalog, names)

    # A copy of an original cell (a backup, a table left out) opens no more.
    member = SqlOptions().group(SqlOptions().reader_group, catalog, "sales")
    env = LocalSqlEnvironment(spark, settings, SqlOptions(decrypt="lenient"),
                              groups=[member]).install()
    decrypt = env.decrypt_function("sales")
    for cell in original:
        opened = spark.sql(f"SELECT {decrypt}(:v, 'people', 'name') AS v",
                           args={"v": cell}).first()["v"]
        assert opened is None
    assert snapshot(spark, their_table) == before  # their table: byte for byte as it was
    return counts


def local_legacy_scope(ctx, schema: str, versions: int) -> tuple[object, dict[int, bytes]]:
    """Scope ``<catalog>.<schema>`` of a local job context with ``versions`` legacy DEKs, as
    ``import_legacy`` records them (versions 1..n, tagged), then a fresh active DEK (n + 1).
    Returns (settings serving only that schema, the plaintext legacy DEK of each version)."""
    import os

    from envelope_encryption.config import Settings
    from envelope_encryption.kek.base import WrapContext
    from envelope_encryption.keyring.base import LEGACY_KEY_TYPE, DekRecord
    from envelope_encryption.secret import SecretKey
    from tests.support.keyrings import append_signed

    settings = Settings(**{**ctx.settings.__dict__, "schemas": (schema,)})
    scope = settings.scope(schema)
    deks = {}
    for version in range(1, versions + 1):
        deks[version] = os.urandom(32)
        wrapped = ctx.kek.wrap(SecretKey(deks[version]), WrapContext(scope, version))
        append_signed(ctx.store, ctx.kek, DekRecord(
            scope=scope, version=version, wrapped=wrapped, kek_backend=ctx.settings.backend,
            key_type=LEGACY_KEY_TYPE))
    assert ctx.keyring.create_version(scope).version == versions + 1
    return settings, deks
