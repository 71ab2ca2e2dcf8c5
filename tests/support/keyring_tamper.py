"""What a writer of the keyring table can do: rewrite, delete or add rows by hand.

Local tables are parquet (no UPDATE/DELETE), so every change collects the rows, changes
them in memory and overwrites the table, as an attacker with write access could.
"""

from __future__ import annotations

from collections.abc import Callable

from envelope_encryption.keyring.table_store import TableDekStore

Row = dict


def rewrite(store: TableDekStore, change: Callable[[list[Row]], list[Row]]) -> None:
    """Replace the table's rows by ``change(rows)`` (rows as dicts, column -> value)."""
    spark = store.spark
    table = spark.table(store.table)
    rows = [row.asDict() for row in table.collect()]
    new = change(rows)
    frame = spark.createDataFrame([tuple(r[c] for c in table.columns) for r in new],
                                  schema=table.schema)
    frame.localCheckpoint().write.mode("overwrite").insertInto(store.table, overwrite=True)


def where(rows: list[Row], **match) -> list[Row]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]
