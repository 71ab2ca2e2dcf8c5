"""Import of the original notebooks' secret, and reading their cells through the project."""

from __future__ import annotations

import json

import pytest

from envelope_encryption.errors import ConfigError, KeyUnwrapFailed
from envelope_encryption.jobs.import_legacy import main
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.base import LEGACY_KEY_TYPE, DekState
from envelope_encryption.legacy.notebook_secret import import_legacy_secret, read_legacy_deks
from tests.support.legacy_data import legacy_secret

LEGACY = "unity_catalog/ms1/main"


@pytest.fixture(scope="module")
def legacy():
    return legacy_secret(["sales", "hr_data"])


@pytest.fixture
def legacy_in_sm(sm, legacy):
    fields, deks = legacy
    sm.create_secret(Name=LEGACY, SecretString=json.dumps(fields))
    return deks


def test_import_stores_version_1_and_leaves_the_old_secret(sm, sm_kek, sm_store, legacy_in_sm):
    sm_kek.ensure()
    sm_store.ensure()
    before = sm.get_secret_value(SecretId=LEGACY, VersionStage="AWSCURRENT")
    dry = import_legacy_secret(sm, LEGACY, "main", sm_store, sm_kek, dry_run=True)
    assert dry.imported == ["main.hr_data v1", "main.sales v1"] and dry.dry_run
    assert dry.activated == ["main.hr_data v2", "main.sales v2"]
    assert sm_store.current() == []  # the dry run wrote nothing
    report = import_legacy_secret(sm, LEGACY, "main", sm_store, sm_kek, who="admin@example.com")
    assert report.imported == ["main.hr_data v1", "main.sales v1"] and report.ok
    assert report.activated == ["main.hr_data v2", "main.sales v2"]
    keyring = Keyring(sm_store, sm_kek)
    for schema, text in legacy_in_sm.items():
        legacy, fresh = keyring.versions(f"main.{schema}")
        assert legacy.version == 1 and legacy.key_type == LEGACY_KEY_TYPE
        assert (legacy.state, fresh.state) == (DekState.DECRYPT_ONLY, DekState.ENABLED)
        assert legacy.wrapped.kek_id == sm_kek.secret_name
        assert keyring.dek(f"main.{schema}", 1).reveal() == text.encode("utf-8")
        # The legacy DEK only decrypts: the fresh one above it encrypts.
        assert fresh.version == 2 and fresh.key_type == "ENCRYPTED_DEK"
        assert keyring.active(f"main.{schema}").version == 2
    after = sm.get_secret_value(SecretId=LEGACY, VersionStage="AWSCURRENT")
    assert after["VersionId"] == before["VersionId"]
    assert after["SecretString"] == before["SecretString"]
    # A re-run skips what it imported; a scope with other versions is refused, not touched.
    keyring.create_version("main.other")
    fields = json.loads(before["SecretString"])
    fields.update({"other_dek": fields["sales_dek"], "other_nonce": fields["sales_nonce"],
                   "other_tag": fields["sales_tag"]})
    sm.put_secret_value(SecretId=LEGACY, SecretString=json.dumps(fields))
    again = import_legacy_secret(sm, LEGACY, "main", sm_store, sm_kek)
    assert again.already_imported == ["main.hr_data v1", "main.sales v1"]
    assert again.imported == [] and again.activated == []
    assert [scope for scope, _ in again.refused] == ["main.other"] and not again.ok
    assert keyring.versions("main.other")[0].key_type == "ENCRYPTED_DEK"


def test_a_tampered_legacy_secret_is_refused(legacy):
    fields, _ = legacy
    broken = dict(fields, sales_tag=fields["hr_data_tag"])
    with pytest.raises(KeyUnwrapFailed, match="schema sales"):
        read_legacy_deks(broken, LEGACY, ["sales"])
    with pytest.raises(ConfigError, match="no DEK for schema"):
        read_legacy_deks(fields, LEGACY, ["nope"])


def test_cli_entry_point(sm, sm_settings, legacy_in_sm, capsys):
    argv = ["--kek-backend=aws-sm", "--catalog=main", "--metastore-id=ms1",
            f"--aws-endpoint-url={sm_settings.option('aws-endpoint-url')}",
            "--aws-region=us-east-1", "--import-schemas=sales"]
    # A dry run before anything of ours exists: reported, and nothing created.
    assert main([*argv, "--dry-run=true"]) == 0
    out = capsys.readouterr().out
    assert "would import main.sales v1" in out and "main.sales v2: would be a fresh DEK" in out
    assert [s["Name"] for s in sm.list_secrets()["SecretList"]] == [LEGACY]
    assert main(argv) == 0
    assert "imported main.sales v1" in capsys.readouterr().out
    assert main(argv) == 0
    assert "already imported" in capsys.readouterr().out


def test_cells_the_notebooks_wrote_decrypt_and_reencrypt(spark, sm, sm_kek, sm_store, legacy_in_sm):
    from envelope_encryption.spark.columns import TableRef, decrypt_columns, reencrypt_columns

    sm_kek.ensure()
    sm_store.ensure()
    import_legacy_secret(sm, LEGACY, "main", sm_store, sm_kek, schemas=["sales"])
    names = ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    raw = spark.createDataFrame([(n,) for n in names], "name string")
    raw.createOrReplaceTempView("legacy_people")
    # Exactly the notebooks' encrypt function: base64(aes_encrypt(col, dek, 'GCM', 'DEFAULT')).
    encrypted = spark.sql(
        "SELECT base64(aes_encrypt(name, :dek, 'GCM', 'DEFAULT')) AS name FROM legacy_people",
        args={"dek": legacy_in_sm["sales"]},
    )
    keyring = Keyring(sm_store, sm_kek)
    table = TableRef("main", "sales", "people")
    back = decrypt_columns(encrypted, ["name"], keyring=keyring, table=table,
                           types={"name": "string"})
    assert sorted(r["name"] for r in back.collect()) == names
    # Re-encrypt into the current format under the fresh DEK (v2), then read that.
    current = reencrypt_columns(encrypted, ["name"], keyring=keyring, table=table).cache()
    cells = [r["name"] for r in current.collect()]
    assert all(c.startswith("ee1:2:") for c in cells)
    again = decrypt_columns(current, ["name"], keyring=keyring, table=table)
    assert sorted(r["name"] for r in again.collect()) == names
