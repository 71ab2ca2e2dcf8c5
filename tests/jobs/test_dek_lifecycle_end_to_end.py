"""The DEK lifecycle through the bundle's jobs, on every back end, on local Spark.

rotate (dek_generation) -> re-encrypt -> old version decrypt-only -> retired -> destroyed.
A copy of the table taken before the re-encryption (what a clone or a backup keeps) still
holds cells of the old version: it stops a retirement while given, and once the version is
destroyed it reads as NULL (lenient) or fails naming the version (strict), never as
plaintext. The store is scanned for the destroyed key's wrapped bytes, every change is run
twice (the second a "no change"), a destroy without the typed confirmation is refused, and
every operation is in the audit table.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.errors import PySparkException

from envelope_encryption.config import Settings
from envelope_encryption.errors import DestroyedKey
from envelope_encryption.jobs import status
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.local_run import run_job
from envelope_encryption.jobs.sample_data import customers, write_csv
from envelope_encryption.keyring.base import DekState
from envelope_encryption.spark.columns import TableRef, decrypt_columns
from tests.support.aws_fixtures import REGION, SM_REGION
from tests.support.e2e import CHECKED, decrypted_customers, expected_customers

REPO = Path(__file__).resolve().parents[2]
SCHEMA = "sales"
SECRET_ENV = "ENVELOPE_E2E_AKV_SECRET"


@dataclass
class Target:
    name: str
    variables: dict[str, str]
    settings: Settings
    sm: object = None  # the test's own Secrets Manager client (aws-sm)


def _target(name: str, request, tmp_path) -> Target:
    catalog = f"life_{name.replace('-', '_')}"
    common = {"catalog": catalog, "schemas": SCHEMA, "metastore_id": "ms-e2e",
              "service_credential": "", "new_dek_schema": SCHEMA,
              "source_path": str(tmp_path / "landing"), "source_format": "csv",
              "target_table": f"{SCHEMA}.customers", "mask_columns": "false"}
    if name == "local":
        kek = str(tmp_path / "kek.key")
        return Target(name, {**common, "local_kek_file": kek},
                      Settings(backend="local", catalog=catalog, schemas=(SCHEMA,),
                               options={"local-kek-file": kek}))
    if name == "aws-kms":
        url = request.getfixturevalue("kms_url")
        return Target(name, {**common, "aws_region": REGION, "aws_endpoint_url": url},
                      Settings(backend="aws-kms", catalog=catalog, schemas=(SCHEMA,),
                               metastore_id="ms-e2e",
                               options={"aws-region": REGION, "aws-endpoint-url": url}))
    if name == "aws-sm":
        sm = request.getfixturevalue("sm")
        url = request.getfixturevalue("moto").url
        return Target(name, {**common, "aws_region": SM_REGION, "aws_endpoint_url": url},
                      Settings(backend="aws-sm", catalog=catalog, schemas=(SCHEMA,),
                               metastore_id="ms-e2e",
                               options={"aws-region": SM_REGION, "aws-endpoint-url": url}),
                      sm)
    vault = request.getfixturevalue("vault")
    vault.register_client("life-app", "life-client-secret")
    request.getfixturevalue("monkeypatch").setenv(SECRET_ENV, "life-client-secret")
    options = {"azure-vault-url": vault.vault_url, "azure-ca-bundle": str(vault.ca_file),
               "azure-tenant-id": vault.tenant_id, "azure-client-id": "life-app",
               "azure-client-secret-env": SECRET_ENV, "azure-authority-host": vault.authority,
               "azure-key-size": "2048"}
    return Target(name, {**common, **{k.replace("-", "_"): v for k, v in options.items()}},
                  Settings(backend="azure", catalog=catalog, schemas=(SCHEMA,),
                           metastore_id="ms-e2e", options=options))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "aws-kms", "aws-sm", "azure"])
def test_rotate_reencrypt_decrypt_only_retire_destroy(backend, spark, request, tmp_path,
                                                      monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # run_job changes directory; restored afterwards
    target = _target(backend, request, tmp_path)
    catalog = target.settings.catalog
    scope = f"{catalog}.{SCHEMA}"

    def run(job: str, **params: str) -> tuple[int, str]:
        capsys.readouterr()
        code = run_job(job, backend, target.variables, root=REPO, params=params)
        out = capsys.readouterr()
        return code, out.out + out.err

    def ok(job: str, **params: str) -> str:
        code, out = run(job, **params)
        assert code == 0, f"{job} {params} failed: {out}"
        return out

    # Set up, encrypt a batch under v1, and keep a copy of the cells (a clone, a backup).
    ok("kek_setup")
    rows = customers(12, first_id=1)
    write_csv(rows, tmp_path / "landing" / "batch-0001.csv")
    ok("encrypt_columns")
    ctx = build_context(target.settings, spark)
    table = ctx.lakehouse.table(catalog, SCHEMA, "customers")
    backup = ctx.lakehouse.table(catalog, SCHEMA, "customers_backup")
    spark.sql(f"CREATE TABLE {backup} AS SELECT * FROM {table}")

    # Rotate and move every cell of the registered table to v2.
    ok("dek_generation")
    ok("reencrypt_columns")
    versions = {r["v"] for r in spark.table(table)
                .selectExpr("split_part(ssn, ':', 2) AS v").collect()}
    assert versions == {"2"}

    # v1 decrypt-only, twice.
    assert "ENABLED -> DECRYPT_ONLY" in ok("dek_state", version="1", to="decrypt-only")
    assert "no change" in ok("dek_state", version="1", to="decrypt-only")

    # v2 is now the only ENABLED version: it cannot stop encrypting.
    code, out = run("dek_state", version="2", to="decrypt-only")
    assert code == 2 and "only ENABLED version" in out and "dek_generation" in out
    assert ctx.keyring.active(scope).version == 2
    assert _states(ctx, scope) == {1: DekState.DECRYPT_ONLY, 2: DekState.ENABLED}

    # Retiring is refused while a table given still holds v1's cells; the registered table
    # (re-encrypted) holds none.
    code, out = run("dek_state", version="1", to="retired", tables=f"{SCHEMA}.customers_backup")
    assert code == 2 and "still use it" in out
    assert "DECRYPT_ONLY -> RETIRED" in ok("dek_state", version="1", to="retired")
    assert "no change" in ok("dek_state", version="1", to="retired")

    # Destroy: refused without the scope and version typed out again, or with another one.
    wrapped_v1 = [r.wrapped.blob for r in ctx.store.history(scope) if r.version == 1]
    assert wrapped_v1 and all(wrapped_v1)
    for confirm in ("", f"{scope}:v2", "yes"):
        code, out = run("dek_state", version="1", to="destroyed", confirm=confirm)
        assert code == 2 and f"--confirm {scope}:v1" in out
    assert _states(ctx, scope)[1] is DekState.RETIRED
    out = ok("dek_state", version="1", to="destroyed", confirm=f"{scope}:v1")
    assert "RETIRED -> DESTROYED" in out
    assert "no change" in ok("dek_state", version="1", to="destroyed", confirm=f"{scope}:v1")
    code, out = run("dek_state", version="1", to="enabled")
    assert code == 2 and "never comes back" in out

    # No stored copy of v1's wrapped key is left where the project can remove it.
    _assert_store_clean(target, ctx, scope, wrapped_v1)

    # The copy's cells of v1: NULL when lenient, an error naming v1 when strict; the live
    # table reads in full.
    fresh = build_context(target.settings, spark)
    with pytest.raises(DestroyedKey, match=f"{scope} v1 was destroyed"):
        fresh.keyring.dek(scope, 1)
    ref = TableRef(catalog, SCHEMA, "customers")
    lenient = decrypt_columns(spark.table(backup), list(CHECKED), keyring=fresh.keyring,
                              table=ref, strict=False).collect()
    assert len(lenient) == 12
    assert {tuple(r[c] for c in CHECKED) for r in lenient} == {(None, None, None)}
    with pytest.raises(PySparkException, match="DEK version 1"):
        decrypt_columns(spark.table(backup), list(CHECKED), keyring=fresh.keyring,
                        table=ref).collect()
    assert decrypted_customers(fresh, catalog, SCHEMA) == expected_customers(rows)

    # status shows the states.
    shown = status.inventory(fresh)
    (info,) = [s for s in shown.scopes if s.scope == scope]
    assert [(v.version, v.state) for v in info.versions] == [(1, "DESTROYED"), (2, "ENABLED")]

    # purge_residue: locally nothing to vacuum, said so.
    assert "nothing to vacuum" in ok("purge_residue", retain_hours="168")
    code, out = run("purge_residue", retain_hours="1")
    assert code == 2 and '--confirm-short-retention "1 hours"' in out

    # Every operation is in the audit table, the refused ones too.
    events = {(e["operation"], e["outcome"], e["key_version"])
              for e in fresh.keyring.audit.events() if e["scope"] == scope}
    for expected in [("dek_state_changed", "ok", 1), ("dek_state_changed", "refused", 2),
                     ("dek_state_changed", "refused", 1), ("dek_destroyed", "refused", 1),
                     ("dek_destroyed", "ok", 1), ("dek_created", "ok", 2)]:
        assert expected in events, expected
    details = [e["detail"] for e in fresh.keyring.audit.events()
               if e["operation"] == "dek_destroyed" and e["outcome"] == "ok"]
    assert details[0].startswith("RETIRED -> DESTROYED") and "removed" in details[0]
    assert "no change" in details[-1]
    assert not any(base64.b64encode(b).decode() in json.dumps(e, default=str)
                   for e in fresh.keyring.audit.events() for b in wrapped_v1)


def _states(ctx, scope: str) -> dict[int, DekState]:
    return {r.version: r.state for r in ctx.keyring.versions(scope)}


def _assert_store_clean(target: Target, ctx, scope: str, wrapped: list[bytes]) -> None:
    encoded = [base64.b64encode(b).decode() for b in wrapped]
    if target.sm is None:
        s = target.settings
        keyring = ctx.lakehouse.table(s.catalog, s.crypto_schema, s.keyring_table)
        rows = ctx.spark.table(keyring).collect()
        v1 = [r for r in rows if r["key_alias"] == scope and r["key_version"] == 1]
        assert [(r["key_state"], bytes(r["wrapped_key"])) for r in v1] == [("DESTROYED", b"")]
        assert v1[0]["modified_by"]  # the tombstone says who destroyed it, and when
        assert not any(bytes(r["wrapped_key"]) in wrapped for r in rows)
        return
    # aws-sm: every version of the DEK secret that still has a label is clean; the
    # unlabelled ones AWS keeps until it purges them are the ones the job reported.
    secret = ctx.store.secret_name
    listed = target.sm.list_secret_version_ids(SecretId=secret, IncludeDeprecated=True)
    labelled = unlabelled = 0
    for version in listed["Versions"]:
        value = target.sm.get_secret_value(SecretId=secret, VersionId=version["VersionId"])
        holds = any(e in value["SecretString"] for e in encoded)
        if version.get("VersionStages"):
            labelled += 1
            assert not holds, version
        else:
            unlabelled += holds
    assert labelled >= 2 and unlabelled >= 1
    document = json.loads(target.sm.get_secret_value(
        SecretId=secret, VersionStage="AWSCURRENT")["SecretString"])
    (tombstone,) = document["scopes"][scope]["1"]
    assert tombstone["state"] == "DESTROYED" and tombstone["wrapped"] == ""
