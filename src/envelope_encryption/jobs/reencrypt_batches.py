"""Bounded, resumable re-encryption: only the rows holding cells that are not yet under the
active DEK version are rewritten, in batches of about ``batch_rows`` rows, each batch one
atomic commit.

**The predicate is the checkpoint.** A row is selected by a predicate on its cells' version
prefix (:func:`pending_predicate`: ``startswith(cell, 'ee1:<old version>:')`` for each
older version the table holds, legacy values where the scope has a legacy key). A batch
that committed left only cells of the active version in its rows, so no later batch, and no
re-run after a crash, selects them again: every cell is rewritten exactly once, and a crash
between batches loses nothing, since a batch that did not commit changed nothing. Prefix
predicates are what Delta's data skipping reads from its per-file min/max statistics: files
without older cells are not even opened.

- **Delta** (Databricks): the pending rows are split into ``ceil(pending / batch_rows)``
  buckets by a hash of their cells (stable until the row is rewritten; no row id needed).
  Each bucket is one ``MERGE INTO`` (one Delta commit) whose source is the bucket
  re-encrypted, matched on the old cells and restricted, on the target side, by the same
  predicate and bucket.
- **Local parquet** (no MERGE, no Delta): batches are groups of the table's files holding
  pending rows; each file is rewritten whole and put in place of the old one by one atomic
  rename, through a redo journal in the table's folder (:mod:`.reencrypt_files`).

Progress (rows done of rows to do, per batch) goes to the job log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..cell.format import CELL_PREFIX, ROW_BOUND_SUFFIX
from ..errors import ConfigError
from ..identifiers import quote, validate_identifier
from ..spark.cells_guard import CellCensus, ColumnCensus, checked_rewrite
from .common import log

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# What the prefixes built here are made of: the marker, digits, ':' and '+'.
_PREFIX = re.compile(r"[A-Za-z0-9:+]*")

# Rows per batch when not told: one batch of a few minutes on a small cluster.
DEFAULT_BATCH_ROWS = 1_000_000
# The old cells of a Delta batch, carried beside the new ones to match the target's rows.
_OLD = "__envelope_old_"

# A batch's rows re-encrypted (the columns' cells moved to the active version).
Rewrite = Callable[["DataFrame"], "DataFrame"]


def _literal(text: str) -> str:
    """A SQL string literal of a cell prefix (checked: no quote can reach the SQL)."""
    if not _PREFIX.fullmatch(text):
        raise ValueError("not a cell prefix")
    return f"'{text}'"


@dataclass(frozen=True)
class Pending:
    """Which cells of a table are not yet under the active version."""

    columns: tuple[str, ...]
    active_version: int
    old_versions: tuple[int, ...]  # versions other than the active one found in the table
    legacy: bool = False  # header-less legacy values count as pending
    bind_rows: bool = False  # unbound cells of the active version count as pending
    # What the columns' values start with: "ee1:" cells of a DEK scope, or an equality
    # domain's "ed1:" cells or "bi1:" indexes (their versions are the domain key's).
    marker: str = CELL_PREFIX

    def predicate(self, alias: str = "") -> str:
        """SQL: the row holds at least one pending cell (FALSE when none can be)."""
        terms = [self._column_terms(f"{alias}{quote(c, 'column')}") for c in self.columns]
        terms = [t for t in terms if t]
        return " OR ".join(f"({t})" for t in terms) if terms else "FALSE"

    def _column_terms(self, col: str) -> str:
        terms = [f"startswith({col}, {_literal(f'{self.marker}{v}:')})"
                 for v in self.old_versions]
        if self.legacy:  # legacy values carry no header at all
            terms.append(f"({col} IS NOT NULL AND NOT startswith({col}, "
                         f"{_literal(CELL_PREFIX)}))")
        if self.bind_rows:
            active = _literal(f"{self.marker}{self.active_version}:")
            terms.append(f"(startswith({col}, {active}) AND NOT endswith("
                         f"substring_index({col}, ':', 3), {_literal(ROW_BOUND_SUFFIX)}))")
        return " OR ".join(terms)


def pending_cells(columns: Sequence[str], active_version: int, versions_found: Sequence[int],
                  *, legacy: bool, bind_rows: bool) -> Pending:
    """The pending cells of a table whose cells per version were counted as
    ``versions_found`` (every version found but the active one is old)."""
    old = tuple(sorted(v for v in versions_found if v != active_version))
    return Pending(tuple(columns), active_version, old, legacy, bind_rows)


def hash_bucket(columns: Sequence[str], buckets: int, alias: str = "") -> str:
    """SQL: the bucket (0 .. buckets-1) of a row, from a hash of its cells."""
    cells = ", ".join(f"{alias}{quote(c, 'column')}" for c in columns)
    return f"pmod(xxhash64({cells}), {int(buckets)})"


@dataclass
class BatchProgress:
    """Rows done of rows to do, logged after every batch."""

    table: str
    to_do: int
    batches: int
    done: int = 0
    committed: int = 0

    def batch_done(self, rows: int) -> None:
        self.done += rows
        self.committed += 1
        log.info("re-encrypt %s: batch %d of %d committed, %d rows; %d of %d rows done",
                 self.table, self.committed, self.batches, rows, self.done, self.to_do)


def batch_census(df: DataFrame, table: str, columns: Sequence[str],
                 by: str | None = None) -> tuple[CellCensus, dict]:
    """Rows and non-NULL values per column of a batch (what :func:`checked_rewrite` checks
    the rewrite against), and with ``by`` the rows per value of that column."""
    from pyspark.sql import functions as F

    counts = [F.count(F.lit(1)).alias("rows")]
    counts += [F.count(F.col(quote(c, "column"))).alias(f"n{i}") for i, c in enumerate(columns)]
    rows = (df.groupBy(by).agg(*counts) if by else df.agg(*counts)).collect()
    total = sum(r["rows"] for r in rows)
    per_column = {c: sum(r[f"n{i}"] or 0 for r in rows) for i, c in enumerate(columns)}
    census = CellCensus(table, total, {c: ColumnCensus(total, n, n, 0)
                                       for c, n in per_column.items()})
    return census, ({r[by]: r["rows"] for r in rows} if by else {})


def delta_batches(spark: SparkSession, storage: str, name: str, pending: Pending,
                  row_key: str | None, batch_rows: int, rewrite: Rewrite, *,
                  also_match: Sequence[str] = ()) -> BatchProgress:
    """Re-encrypt the pending rows of a Delta table, one ``MERGE`` per bucket.

    A target row is matched to its rewrite by its old values of the pending columns (and
    the row key); ``also_match`` names more unchanged columns to match on, where equal old
    values need not mean equal new ones (a truncated blind index: match its source cell
    too)."""
    from pyspark.sql import functions as F

    columns = list(pending.columns)
    stored = spark.table(storage)
    to_do = stored.where(pending.predicate()).count()
    buckets = max(1, math.ceil(to_do / batch_rows))
    progress = BatchProgress(name, to_do, buckets if to_do else 0)
    keys = [*columns, *([validate_identifier(row_key, "row key column")] if row_key else []),
            *[validate_identifier(c, "column") for c in also_match]]
    keys = list(dict.fromkeys(keys))
    for bucket in range(buckets if to_do else 0):
        selected = f"({pending.predicate()}) AND {hash_bucket(columns, buckets)} = {bucket}"
        batch = stored.where(selected)
        seen, _ = batch_census(batch, name, columns)
        if not seen.rows:
            progress.batch_done(0)
            continue
        with_old = batch.select("*", *[F.col(quote(k, "column")).alias(_OLD + k) for k in keys])
        moved = checked_rewrite(spark, rewrite(with_old), seen, f"_reencrypt_batch_{bucket}")
        # Byte-identical rows (a copied row) match each other's source: one source each.
        source = moved.dropDuplicates([_OLD + k for k in keys])
        view = f"_reencrypt_source_{bucket}"
        source.createOrReplaceTempView(view)
        match = " AND ".join(f"t.{quote(k, 'column')} <=> s.{quote(_OLD + k, 'column')}"
                             for k in keys)
        target = (f"({pending.predicate('t.')}) AND "
                  f"{hash_bucket(columns, buckets, 't.')} = {bucket}")
        updates = ", ".join(f"t.{quote(c, 'column')} = s.{quote(c, 'column')}" for c in columns)
        result = spark.sql(f"MERGE INTO {storage} AS t USING {quote(view)} AS s "
                           f"ON {match} AND {target} WHEN MATCHED THEN UPDATE SET {updates}")
        first = result.first()
        metrics = first.asDict() if first is not None else {}
        progress.batch_done(int(metrics.get("num_updated_rows", seen.rows)))
    return progress


def check_batch_rows(batch_rows: int) -> int:
    if batch_rows < 1:
        raise ConfigError(f"--batch-rows must be at least 1, not {batch_rows}")
    return batch_rows
