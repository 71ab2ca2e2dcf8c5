"""Golden files: the full Databricks DDL of each cloud target, kept in sync with the renderer.

Review a change by eye: ``UPDATE_GOLDEN=1 pytest tests/spark/sql/test_golden.py`` rewrites the
files and ``git diff tests/spark/sql/golden`` shows what Databricks would now run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from envelope_encryption.cell.equality import parse_domain_specs
from envelope_encryption.config import Settings
from envelope_encryption.spark.columns import TableRef
from envelope_encryption.spark.sql_functions import SqlOptions, render_script

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).parents[3]

# Concrete values in place of the bundle's <placeholders>: catalog, two schemas, a credential.
TARGETS = {
    "aws-kms": Settings(
        backend="aws-kms", catalog="main", schemas=("default", "finance"),
        metastore_id="a1b2c3d4-metastore", service_credential="envelope-kms",
        options={"aws-region": "eu-west-1"},
    ),
    "aws-sm": Settings(
        backend="aws-sm", catalog="main", schemas=("default", "finance"),
        metastore_id="a1b2c3d4-metastore", service_credential="envelope-secrets",
        options={"aws-region": "eu-west-1"},
    ),
    "azure": Settings(
        backend="azure", catalog="main", schemas=("default", "finance"),
        metastore_id="a1b2c3d4-metastore", service_credential="envelope-key-vault",
        options={"azure-vault-url": "https://contoso-kek.vault.azure.net/"},
    ),
}
MASKS = [(TableRef("main", "default", "customers"), c) for c in ("name", "email", "ssn")]


def _bundle_backend(target: str) -> str:
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text("utf-8"))
    return bundle["targets"][target]["variables"]["kek_backend"]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_golden_file_matches_renderer(target):
    assert TARGETS[target].backend == _bundle_backend(target)
    rendered = render_script(TARGETS[target], SqlOptions(), masks=MASKS)
    path = GOLDEN / f"{target}.sql"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(rendered, "utf-8")
    assert path.read_text("utf-8") == rendered, (
        f"{path} is out of date: run UPDATE_GOLDEN=1 pytest {__file__} and review the diff"
    )


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_golden_file_shape(target):
    text = (GOLDEN / f"{target}.sql").read_text("utf-8")
    settings = TARGETS[target]
    # The privileged function: batch Python, the target's credential, the wheel, a handler.
    assert "LANGUAGE PYTHON\nPARAMETER STYLE PANDAS\nHANDLER 'handler'" in text
    assert f"CREDENTIALS (`{settings.service_credential}` DEFAULT)" in text
    assert "envelope_encryption-0.1.0-py3-none-any.whl" in text
    assert f"'backend': '{settings.backend}'" in text
    # One mask function per schema, gated on the schema's group, and three masks.
    for schema in settings.schemas:
        assert f"CREATE OR REPLACE FUNCTION `main`.`crypto`.`decrypt_{schema}`(" in text
        assert f"is_account_group_member('main.{schema}.crypto.user')" in text
    # Jobs that must see cells are exempt, checked before the reader group; no key for them.
    assert "'job', is_account_group_member('main.crypto.jobs')" in text
    assert text.index("WHEN coalesce(k.job, FALSE) THEN value") < text.index(
        "WHEN NOT coalesce(k.member, FALSE)")
    assert "AND NOT is_account_group_member('main.crypto.jobs')" in text
    # Writer grants are opt-in: none unless a writer group is configured.
    assert "crypto.writer" not in text and "GRANT EXECUTE" not in text
    assert text.count("SET MASK `main`.`crypto`.`decrypt_default` USING COLUMNS") == 3
    # Readers get nothing on the crypto schema; nobody is granted the unwrap function.
    assert "REVOKE ALL PRIVILEGES ON SCHEMA `main`.`crypto` FROM `account users`" in text
    for private in ("unwrap_key", "decrypt_cells"):
        assert not re.search(rf"GRANT [A-Z ]+ ON FUNCTION `main`.`crypto`.`{private}`", text)
        assert (f"REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`{private}` FROM "
                "`account users`") in text
    assert not re.search(r"GRANT (SELECT|USE SCHEMA)[^;]*`main.default.crypto.user`", text)
    # Fail closed by default.
    assert "THEN CAST(NULL AS STRING)" in text
    # Cells are opened by the batch function, with keys that never are a value of the query:
    # no native decryption, no key map.
    assert "`main`.`crypto`.`decrypt_cells`(value, place, k.keyring)" in text
    assert "aes_decrypt(" not in text and "MAP<INT, BINARY>" not in text
    decrypt = text[text.index("FUNCTION `main`.`crypto`.`decrypt_default`("):]
    assert "unwrap_key" not in decrypt[:decrypt.index(";")]
    # The keyring source: the table, or (aws-sm) the secret through dek_records.
    if settings.backend == "aws-sm":
        assert "`main`.`crypto`.`dek_records`('main.default')" in text
        assert "`dek_keyring`" not in text
    else:
        assert "FROM `main`.`crypto`.`dek_keyring`" in text
    # Nothing but names in the rendered settings: no secret of any kind.
    assert "secret_access_key" not in text.lower() and "password" not in text.lower()


def test_writer_grants_only_when_a_writer_group_is_configured():
    settings = TARGETS["aws-kms"]
    default = render_script(settings, SqlOptions())
    assert "GRANT USE SCHEMA" not in default and "GRANT EXECUTE" not in default
    configured = render_script(
        settings, SqlOptions(writer_group="{catalog}.{schema}.crypto.writer"))
    for schema in settings.schemas:
        assert f"GRANT EXECUTE ON FUNCTION `main`.`crypto`.`encrypt_{schema}` TO " \
               f"`main.{schema}.crypto.writer`" in configured
        assert "GRANT USE SCHEMA ON SCHEMA `main`.`crypto` TO " \
               f"`main.{schema}.crypto.writer`" in configured


def test_no_job_group_renders_no_exemption():
    text = render_script(TARGETS["azure"], SqlOptions(job_group=""))
    assert "'job', FALSE" in text and "crypto.jobs" not in text
    assert "WHERE is_account_group_member('main.default.crypto.user'))" in text


def test_a_dedicated_crypto_catalog_holds_the_functions_not_the_data_catalog():
    settings = TARGETS["aws-kms"]
    text = render_script(settings, SqlOptions(crypto_catalog="keys"), masks=MASKS)
    assert "CREATE SCHEMA IF NOT EXISTS `keys`.`crypto`" in text
    assert "CREATE OR REPLACE FUNCTION `keys`.`crypto`.`unwrap_key`(" in text
    assert "/Volumes/keys/crypto/packages/envelope_encryption-" in text
    assert text.count("SET MASK `keys`.`crypto`.`decrypt_default` USING COLUMNS") == 3
    assert "REVOKE ALL PRIVILEGES ON SCHEMA `keys`.`crypto` FROM `account users`" in text
    # The keyring table stays where the settings put it; no function is left in main.
    assert "FROM `main`.`crypto`.`dek_keyring`" in text
    assert "FUNCTION `main`.`crypto`." not in text


def test_the_unwrap_function_takes_the_collected_records_after_the_aggregation():
    text = (GOLDEN / "aws-kms.sql").read_text("utf-8")
    # The keyring text is made in the projection over collect_list's result, never inside
    # it; nothing in the decrypt function unwraps in SQL (decrypt_cells does, in Python).
    assert "collect_list(named_struct('key_alias', r.key_alias, 'key_version', r.key_version" \
        in text
    decrypt = text.split("CREATE OR REPLACE FUNCTION `main`.`crypto`.`decrypt_default`")[1]
    assert not re.search(r"collect_list\([^;]*(unwrap_key|decrypt_cells)",
                         decrypt.split("AS records")[0])
    assert "unwrap_key" not in decrypt.split(";")[0]
    # encrypt_<schema> unwraps the newest record after max_by.
    assert "`main`.`crypto`.`unwrap_key`('main.default'," in text


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_unwrap_function_takes_whole_records_and_the_integrity_record(target):
    """What the function verifies: every column a record's tag covers, and (table back
    ends) the newest integrity record; not bare wrapped bytes."""
    text = (GOLDEN / f"{target}.sql").read_text("utf-8")
    assert ("`unwrap_key`(key_alias STRING, records ARRAY<STRING>, keyring_integrity STRING)"
            in text)
    # The decrypt mask passes decrypt_cells the records as one JSON text; encrypt passes
    # unwrap_key the newest record.
    assert "'records', c.records," in text and "array(to_json(c.record))" in text
    assert "'record_tag', hex(r.record_tag)" in text and "'revision', r.revision" in text
    if target == "aws-sm":
        # The function reads the secret itself; no integrity row is passed.
        assert "KEYRING_INTEGRITY_KEY" not in text
    else:
        assert ("FROM `main`.`crypto`.`dek_keyring` i\n" in text
                and "WHERE i.key_type = 'KEYRING_INTEGRITY_KEY'" in text
                and "ORDER BY i.revision DESC" in text)


# With equality domains: the masks also pass the domains' records to readers of plaintext,
# and the lookup functions exist, granted to the lookup group. aws-kms and aws-sm (whose
# domain records come from the secret through dek_records).
EQUALITY = SqlOptions(equality_domains=parse_domain_specs("ssn:digits:64,email:casefold"),
                      lookup_group="{catalog}.crypto.lookup")


@pytest.mark.parametrize("target", ["aws-kms", "aws-sm"])
def test_golden_file_with_equality_domains(target):
    rendered = render_script(TARGETS[target], EQUALITY, masks=MASKS)
    path = GOLDEN / f"{target}-equality.sql"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(rendered, "utf-8")
    assert path.read_text("utf-8") == rendered, (
        f"{path} is out of date: run UPDATE_GOLDEN=1 pytest {__file__} and review the diff"
    )
    default = render_script(TARGETS[target], SqlOptions(), masks=MASKS)
    assert "equality" not in default and "blind_index" not in default
    for domain in ("email", "ssn"):
        scope = f"'main.$equality.{domain}'"
        # Each mask gates the domain's records like the scope's: readers of plaintext only.
        decrypt = rendered.split("FUNCTION `main`.`crypto`.`decrypt_default`(")[1].split(";\n\n")[0]
        assert f"named_struct('key_alias', {scope}, 'records', dom" in decrypt
        for kind in ("blind_index", "deterministic"):
            assert (f"RETURN `main`.`crypto`.`equality_values`('{kind}', '{domain}', value, "
                    in rendered)
            assert (f"GRANT EXECUTE ON FUNCTION `main`.`crypto`.`{kind}_{domain}` TO "
                    "`main.crypto.lookup`") in rendered
    assert decrypt.count("AND NOT is_account_group_member('main.crypto.jobs')) dom") == 2
    assert not re.search(r"GRANT [A-Z ]+ ON FUNCTION `main`.`crypto`.`equality_values`",
                         rendered)
    if target == "aws-sm":
        assert "`main`.`crypto`.`dek_records`('main.$equality.ssn')" in rendered
