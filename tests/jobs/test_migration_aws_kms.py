"""Migration from the original notebooks' AWS KMS variant, against moto.

Their layout is built as their notebooks built it: a KMS key under their alias, DEKs from
``GenerateDataKey`` (AES_256) with their encryption context, their key table with their
columns, and cells from Spark's ``base64(aes_encrypt(..., 'GCM', 'DEFAULT'))`` under DEK
versions 1 (then disabled) and 2.
"""

from __future__ import annotations

import pytest

from envelope_encryption.config import Settings
from tests.support.aws_fixtures import REGION
from tests.support.legacy_data import (
    create_notebook_functions,
    create_notebook_table,
    insert_notebook_dek,
    migrate_and_check,
    notebook_cells,
    people_table,
)

CATALOG, MS = "mig_kms", "ms-mig"
THEIR_ALIAS = f"alias/unity_catalog/{MS}/{CATALOG}/cmk"
CONTEXT = {"metastore/catalog": f"{MS}/{CATALOG}"}


@pytest.mark.slow
def test_kms_notebooks_migrate_in_place(spark, kms, kms_url):
    their_key = kms.create_key(Description="notebooks' KEK")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=THEIR_ALIAS, TargetKeyId=their_key)
    table = create_notebook_table(spark, CATALOG, "aws-kms")
    create_notebook_functions(spark, CATALOG, ["unwrap_kms_key", "get_latest_dek_version"])
    names, cells = [], []
    for version, enabled in ((1, False), (2, True)):  # 03_new_dek added v2
        dek = kms.generate_data_key(KeyId=THEIR_ALIAS, KeySpec="AES_256",
                                    EncryptionContext=CONTEXT)
        insert_notebook_dek(spark, table, "aws-kms", f"{CATALOG}.sales", version,
                            dek["CiphertextBlob"], enabled)
        batch = [f"person {version}.{i}" for i in range(3)]
        names += batch
        cells += notebook_cells(spark, batch, dek["Plaintext"])
    people_table(spark, CATALOG, cells)

    options = {"aws-region": REGION, "aws-endpoint-url": kms_url}
    default_kek = Settings(backend="aws-kms", catalog=CATALOG, schemas=("sales",),
                           metastore_id=MS, options=options)
    ours = f"alias/envelope_encryption/{MS}/{CATALOG}/kek"
    settings = Settings(backend="aws-kms", catalog=CATALOG, schemas=("sales",),
                        metastore_id=MS, options={**options, "kms-key-alias": ours})
    report, moved = migrate_and_check(spark, default_kek, settings, CATALOG, table, names, 2)

    assert len(names) == 6 and moved.legacy_before == {1: 3, 2: 3}
    assert any("v1: opened by KMS key" in n and "disabled in their table" in n
               for n in report.notes)
    # Their key: untouched (no rotation turned on, still only their alias on it); ours is new.
    assert not kms.get_key_rotation_status(KeyId=their_key)["KeyRotationEnabled"]
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert aliases[THEIR_ALIAS] == their_key and aliases[ours] != their_key
