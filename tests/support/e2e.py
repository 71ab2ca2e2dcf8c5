"""What every back end's end-to-end test reads back: the customers table, decrypted."""

from __future__ import annotations

from envelope_encryption.jobs.common import JobContext
from envelope_encryption.spark.columns import TableRef, decrypt_columns

CHECKED = ("name", "email", "ssn")


def decrypted_customers(ctx: JobContext, catalog: str, schema: str) -> dict[int, tuple]:
    """id -> the checked columns, decrypted through the keyring (strict)."""
    ref = TableRef(catalog, schema, "customers")
    stored = ctx.spark.table(ctx.lakehouse.table(catalog, schema, "customers"))
    rows = decrypt_columns(stored, list(CHECKED), keyring=ctx.keyring, table=ref).collect()
    return {row["id"]: tuple(row[c] for c in CHECKED) for row in rows}


def expected_customers(rows: list[dict]) -> dict[int, tuple]:
    """id -> the checked columns of the synthetic rows that were landed."""
    return {row["id"]: tuple(row[c] for c in CHECKED) for row in rows}
