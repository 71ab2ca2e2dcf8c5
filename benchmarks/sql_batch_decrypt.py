"""Prototype, for the benchmark only: the SQL decrypt as a batch Python (Arrow) function.

Today's SQL decrypt (``spark/sql``) opens each cell with Spark's native ``aes_decrypt`` and a
key map built per query by the unwrap function. The alternative measured here is one Arrow
UDF called from SQL as ``batch_decrypt(cell, table, column)``: each Arrow batch is opened
with one cipher per DEK version (``envelope_encryption.cell.batch.decrypt_many``: header
parsed once per distinct header, strict base64, AAD per cell), and the keys never enter a
Spark expression. Here the DEKs travel in the function's closure, unwrapped once on the
driver; a deployed Unity Catalog Python function would unwrap them inside the function
(once per worker process), which adds one key-service call per process and version.
"""

from __future__ import annotations

from collections.abc import Mapping


def register(spark, name: str, keys: Mapping[int, bytes], catalog: str, schema: str,
             strict: bool = True) -> str:
    """Register ``name(cell, table, column)`` for one scope; returns the name."""
    import pyarrow as pa
    from pyspark.sql.functions import arrow_udf

    keys = dict(keys)

    def batch_decrypt(cells: pa.Array, tables: pa.Array, columns: pa.Array) -> pa.Array:
        from envelope_encryption.cell.batch import decrypt_many

        values = cells.to_pylist()
        table_names, column_names = tables.to_pylist(), columns.to_pylist()
        out: list[str | None] = [None] * len(values)
        # Almost always one place per batch (the mask of one column): one call per place.
        places: dict[tuple[str, str], list[int]] = {}
        for position, place in enumerate(zip(table_names, column_names, strict=True)):
            places.setdefault(place, []).append(position)
        if len(places) == 1:
            (table, column), = places
            return pa.array(decrypt_many(values, keys, f"{catalog}.{schema}.{table}.{column}",
                                         strict=strict), type=pa.string())
        for (table, column), positions in places.items():
            opened = decrypt_many([values[p] for p in positions], keys,
                                  f"{catalog}.{schema}.{table}.{column}", strict=strict)
            for position, plain in zip(positions, opened, strict=True):
                out[position] = plain
        return pa.array(out, type=pa.string())

    batch_decrypt.__annotations__ = {"cells": pa.Array, "tables": pa.Array,
                                     "columns": pa.Array, "return": pa.Array}
    spark.udf.register(name, arrow_udf(batch_decrypt, "string"))
    return name
