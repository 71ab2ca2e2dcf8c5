"""Job ``demo``: the whole flow on synthetic PII, on embedded defaults.

kek_setup -> land a first batch -> encrypt_columns, masking the encrypted columns -> show the
stored cells -> show what a member of ``<catalog>.<schema>.crypto.user`` and a non-member
read -> dek_generation -> land and encrypt a second batch into the masked table -> show rows
of both DEK versions decrypting. Re-running it is safe: every step is idempotent and
batches already ingested are skipped.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from ..config import Settings
from ..spark.columns import TableRef
from ..spark.sql.local_unity_catalog import read_table_as
from . import dek_generation, encrypt_columns, kek_setup
from .common import build_context, job_parser, run_main
from .sample_data import PII_COLUMNS, customers, write_csv


def _banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def run(
    settings: Settings, spark=None, *, landing: str = ".envelope/landing/customers",
    table: str = "customers", rows: int = 1000,
) -> None:
    from pyspark.sql import functions as F

    started = time.monotonic()
    with build_context(settings, spark) as ctx:
        schema = settings.schemas[0]
        ref = TableRef(settings.catalog, schema, table)
        group = f"{settings.catalog}.{schema}.crypto.user"

        _banner("1. kek_setup: KEK, keyring table, an active DEK per schema")
        print(kek_setup.run(settings, ctx.spark))

        _banner(f"2. encrypt_columns: {rows} synthetic customers -> {ref.catalog}.{schema}.{table}")
        write_csv(customers(rows, first_id=1), Path(landing) / "batch-0001.csv")
        print(encrypt_columns.run(
            settings, ctx.spark, source=landing, source_format="csv",
            target_table=f"{schema}.{table}", columns=list(PII_COLUMNS), mask=True,
        ))

        # The masks apply to every reader of the table's name; the stored rows are elsewhere.
        storage = ctx.lakehouse.storage_table(ctx.spark, ref.catalog, schema, table)
        stored = ctx.spark.table(storage)
        _banner("3. what the table stores (cells name their DEK version; no plaintext)")
        stored.orderBy("id").select("id", *PII_COLUMNS).show(3, truncate=48)

        # Readers go through the decrypt SQL the column masks run on Databricks; locally only
        # the group answer (is_account_group_member) is simulated.
        _banner(f"4. a member of {group} reads plaintext (through the column masks' SQL)")
        as_member = read_table_as(ctx.spark, settings, ref, list(PII_COLUMNS), member=True)
        as_member.orderBy("id").select("id", *PII_COLUMNS).show(3, truncate=False)
        _banner(f"   a non-member of {group} reads no plaintext")
        as_other = read_table_as(ctx.spark, settings, ref, list(PII_COLUMNS), member=False)
        as_other.orderBy("id").select("id", *PII_COLUMNS).show(3, truncate=False)

        _banner(f"5. dek_generation: a new DEK version for {settings.catalog}.{schema}")
        record = dek_generation.run(settings, ctx.spark, schema=schema)
        print(f"DEK {record.scope} v{record.version} is active")

        _banner("6. encrypt_columns: a second batch, under the new version")
        write_csv(customers(rows, first_id=rows + 1), Path(landing) / "batch-0002.csv")
        print(encrypt_columns.run(
            settings, ctx.spark, source=landing, source_format="csv",
            target_table=f"{schema}.{table}", columns=list(PII_COLUMNS), mask=True,
        ))

        _banner("7. rows of both DEK versions, read by a member")
        stored = ctx.spark.table(storage)
        versions = stored.select("id", F.split("ssn", ":").getItem(1).alias("dek_version"))
        wanted = F.col("id").isin(1, 2, rows + 1, rows + 2)
        read_table_as(ctx.spark, settings, ref, list(PII_COLUMNS), member=True).where(wanted).join(
            versions, on="id"
        ).orderBy("id").select("id", "dek_version", *PII_COLUMNS).show(truncate=False)
        print(f"demo finished in {time.monotonic() - started:.1f} s")


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("demo", "The whole envelope-encryption flow on synthetic PII.")
    parser.add_argument("--landing", default=".envelope/landing/customers",
                        help="Folder (or volume path) where the demo lands its CSV batches.")
    parser.add_argument("--table", default="customers", help="Target table in the first schema.")
    parser.add_argument("--rows", type=int, default=1000, help="Rows per batch.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> None:
        run(settings, landing=args.landing, table=args.table, rows=args.rows)

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
