"""How many values a batch may encrypt: its non-NULL values of the columns to encrypt.

The usage limits (docs/usage-limits.md) are checked before a batch is encrypted, so the count
comes from the input, not from the encryption: every value an encryption produces is a
non-NULL input value, so this bound never under-counts (NULL stays NULL and is not counted).
On serverless jobs (Spark Connect) there are no accumulators to count inside the Arrow UDF,
and the count is folded into an aggregation the jobs already run over each batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..identifiers import quote

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, Row


def non_null_counts(columns: Sequence[str]) -> list[Column]:
    """One ``count(column)`` per column, to add to an aggregation of the batch."""
    from pyspark.sql import functions as F

    return [F.count(F.col(quote(c, "column"))).alias(f"_values_{i}")
            for i, c in enumerate(columns)]


def values_in(row: Row, columns: Sequence[str]) -> int:
    """The non-NULL values of ``columns`` in an aggregated row of :func:`non_null_counts`."""
    return sum(int(row[f"_values_{i}"]) for i in range(len(columns)))


def values_to_encrypt(df: DataFrame, columns: Sequence[str]) -> int:
    """The non-NULL values of ``columns`` in ``df`` (one pass)."""
    return values_in(df.agg(*non_null_counts(columns)).first(), columns)
