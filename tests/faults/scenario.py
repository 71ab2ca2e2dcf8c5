"""The job sequence the fault tests run, the settings of each back end, and the checks.

Jobs are called through their ``run(...)`` functions on the test's Spark session, exactly as
a wheel task calls them; only the endpoints differ (the fault proxy in front of moto, the
local Key Vault with a fault plan).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from envelope_encryption.config import Settings
from envelope_encryption.jobs import (
    dek_generation,
    encrypt_columns,
    kek_setup,
    reencrypt_columns,
    rotate_kek,
    status,
)
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.sample_data import PII_COLUMNS, customers, write_csv
from envelope_encryption.spark.columns import TableRef, cells_per_version, decrypt_columns

SCHEMA = "sales"
TABLE = f"{SCHEMA}.customers"
AWS_REGION = "eu-west-1"
AZURE_SECRET_ENV = "ENVELOPE_FAULTS_AKV_SECRET"
AZURE_CLIENT = "faults-app"
AZURE_CLIENT_SECRET = "faults-client-secret"


def unique_catalog(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def aws_settings(backend: str, endpoint: str, catalog: str, *, audit_table: str = "") -> Settings:
    """``audit_table="none"``: the audit trail in the log only, for runs without Spark."""
    return Settings(backend=backend, catalog=catalog, schemas=(SCHEMA,), metastore_id="ms-f",
                    options={"aws-region": AWS_REGION, "aws-endpoint-url": endpoint,
                             "audit-table": audit_table})


def azure_settings(vault, catalog: str, monkeypatch) -> Settings:
    """Settings of the azure back end on the local vault, with a real client-secret login."""
    vault.register_client(AZURE_CLIENT, AZURE_CLIENT_SECRET)
    monkeypatch.setenv(AZURE_SECRET_ENV, AZURE_CLIENT_SECRET)
    return Settings(
        backend="azure", catalog=catalog, schemas=(SCHEMA,), metastore_id="ms-f",
        options={"azure-vault-url": vault.vault_url, "azure-ca-bundle": str(vault.ca_file),
                 "azure-tenant-id": vault.tenant_id, "azure-client-id": AZURE_CLIENT,
                 "azure-client-secret-env": AZURE_SECRET_ENV,
                 "azure-authority-host": vault.authority, "azure-key-size": "2048"},
    )


@dataclass
class Landing:
    """The landing folder and the batches written into it so far."""

    folder: Path
    rows: list[dict]

    def add_batch(self, count: int) -> None:
        first = len(self.rows) + 1
        batch = customers(count, first_id=first)
        write_csv(batch, self.folder / f"batch-{first:05d}.csv")
        self.rows += batch


def encrypt(settings: Settings, spark, landing: Landing) -> encrypt_columns.EncryptReport:
    return encrypt_columns.run(settings, spark, source=str(landing.folder), source_format="csv",
                               target_table=TABLE, columns=list(PII_COLUMNS))


def reencrypt(settings: Settings, spark) -> reencrypt_columns.ReencryptReport:
    return reencrypt_columns.run(settings, spark, table=TABLE, columns=list(PII_COLUMNS))


def run_every_job(settings: Settings, spark, landing: Landing, batch: int = 40) -> list[str]:
    """kek_setup, encrypt, dek_generation, encrypt, rotate_kek, reencrypt, status.

    Returns the names of the jobs that completed, in order.
    """
    done = []
    kek_setup.run(settings, spark)
    done.append("kek_setup")
    landing.add_batch(batch)
    assert encrypt(settings, spark, landing).rows_written == batch
    done.append("encrypt_columns")
    assert dek_generation.run(settings, spark, schema=SCHEMA).version == 2
    done.append("dek_generation")
    landing.add_batch(batch)
    assert encrypt(settings, spark, landing).rows_written == batch
    done.append("encrypt_columns")
    assert rotate_kek.run(settings, spark).rewrapped == [(settings.scope(SCHEMA), 1),
                                                        (settings.scope(SCHEMA), 2)]
    done.append("rotate_kek")
    cells = len(landing.rows) * len(PII_COLUMNS)
    assert reencrypt(settings, spark).after == {2: cells}
    done.append("reencrypt_columns")
    text = status.run(settings, spark, tables=[TABLE])
    assert f"{{2: {cells}}}" in text, text
    done.append("status")
    return done


def stored_table(settings: Settings, spark):
    ctx = build_context(settings, spark)
    return spark.table(ctx.lakehouse.table(settings.catalog, SCHEMA, "customers"))


def table_snapshot(settings: Settings, spark) -> list[tuple]:
    """Every stored row, every cell as stored, sorted: equal snapshots mean an unchanged table."""
    return sorted(tuple(row) for row in stored_table(settings, spark).collect())


def assert_encrypted_exactly_once(settings: Settings, spark, rows: list[dict]) -> None:
    """One stored row per source row, every PII cell one ``ee1`` cell, decrypting (strictly,
    in a fresh keyring) to the source value, not to another cell."""
    with build_context(settings, spark) as ctx:
        stored = stored_table(settings, spark)
        ids = [row["id"] for row in stored.select("id").collect()]
        assert sorted(ids) == [row["id"] for row in rows], "rows missing or duplicated"
        assert sum(cells_per_version(stored, list(PII_COLUMNS)).values()) == \
            len(rows) * len(PII_COLUMNS)
        ref = TableRef(settings.catalog, SCHEMA, "customers")
        plain = decrypt_columns(stored, list(PII_COLUMNS), keyring=ctx.keyring, table=ref)
        source = {row["id"]: row for row in rows}
        for row in plain.collect():
            expected = source[row["id"]]
            for column in ("name", "email", "ssn"):
                assert row[column] == expected[column]
            assert str(row["birth_date"]) == expected["birth_date"]
            assert f"{row['salary']:.2f}" == expected["salary"]
