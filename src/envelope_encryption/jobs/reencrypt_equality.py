"""``reencrypt_columns`` for equality domains: move a table's deterministic cells and blind
indexes to the active version of their domain's key (docs/equality.md, "Rotation").

- ``--deterministic-columns ssn=ssn``: each ``ed1`` cell of an older domain version is
  opened with the domain's readable versions and sealed again under the active one (same
  plaintext, same type); cells already of the active version are authenticated and kept.
- ``--blind-index-columns ssn=ssn``: the index column ``ssn_bidx`` is recomputed, for the
  rows whose index is of an older version, from the source column ``ssn``: its ``ee1``
  cell is decrypted in the worker (or, for a plaintext source, read as it is), indexed, and
  the plaintext written nowhere. Indexes of the active version are kept.

``--equality-domains`` declares each domain's normal form and index length, as for
``encrypt_columns``; an index column whose indexes have another length is refused, since
indexes of two lengths never match.

Both modes run as for DEKs. ``batched``: the rows selected by a predicate on the version
prefix (``startswith(c, 'ed1:<old>:')``, ``startswith(c, 'bi1:<old>:')``) are rewritten in
bounded, atomic batches, one pass per domain and form; the predicate is the checkpoint, so a
killed run is completed by running it again and every value is rewritten once, and a run
after completion changes nothing. ``whole``: the table is replaced in one step.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..cell.equality import (
    BLIND_INDEX_MARKER,
    DETERMINISTIC_MARKER,
    DomainSpec,
    parse_column_domains,
    parse_domain_specs,
)
from ..config import Settings
from ..errors import ConfigError
from ..identifiers import parse_table_name, quote
from ..keyring.audit import AuditEvent
from ..keyring.domains import EqualityDomains
from ..spark.cells_guard import checked_rewrite, require_cells
from ..spark.columns import TableRef, cells_per_version
from ..spark.equality_columns import (
    EQUALITY_MARKERS,
    BlindIndex,
    reindex_blind_indexes,
    reseal_deterministic_columns,
)
from ..spark.sql.target import SqlOptions
from .common import JobContext, build_context, log
from .domain_columns import read_domain_values
from .reencrypt_batches import (
    DEFAULT_BATCH_ROWS,
    BatchProgress,
    Pending,
    check_batch_rows,
    delta_batches,
)
from .reencrypt_files import local_file_batches, rewrite_whole

BATCHED, WHOLE = "batched", "whole"


@dataclass
class EqualityReencryptReport:
    """Values per domain key version of each column, before and after."""

    table: str
    active_versions: dict[str, int]  # domain -> its active version
    before: dict[str, dict[int, int]]  # column -> values per version
    after: dict[str, dict[int, int]]
    mode: str = BATCHED
    rows_to_do: int = 0
    rows_done: int = 0
    batches: int = 0
    columns: dict[str, str] = field(default_factory=dict)  # column -> domain

    @property
    def progress(self) -> str:
        return (f"{self.rows_done} of {self.rows_to_do} rows rewritten in {self.batches} "
                f"batch(es), mode {self.mode}")

    def __str__(self) -> str:
        per_column = "; ".join(
            f"{c} (domain {d}, active v{self.active_versions[d]}): before "
            f"{dict(sorted(self.before[c].items()))}, after {dict(sorted(self.after[c].items()))}"
            for c, d in self.columns.items())
        return (f"{self.table}: values per domain key version: {per_column}; "
                f"{self.progress}")


@dataclass(frozen=True)
class _Plan:
    """What one run rewrites: the index and deterministic columns, each with its domain."""

    deterministic: dict[str, DomainSpec]
    indexes: dict[str, BlindIndex]  # index column -> its index (source column, domain)

    @classmethod
    def parse(cls, equality_domains: str, deterministic_columns: str,
              blind_index_columns: str) -> _Plan:
        specs = parse_domain_specs(equality_domains)
        deterministic = parse_column_domains(deterministic_columns, specs,
                                             "--deterministic-columns")
        indexed = parse_column_domains(blind_index_columns, specs, "--blind-index-columns")
        indexes = {i.target: i for i in (BlindIndex(c, s.name, s.bits, s.normal_form)
                                         for c, s in indexed.items())}
        if not deterministic and not indexes:
            raise ConfigError("no equality column to re-encrypt: give --deterministic-columns "
                              "or --blind-index-columns")
        clash = sorted(set(deterministic) & {*indexes, *indexed})
        if clash:
            raise ConfigError(f"column(s) {', '.join(clash)} named both as deterministic and "
                              "as a blind index (or its source)")
        return cls(deterministic, indexes)

    @property
    def columns(self) -> dict[str, str]:
        """Every rewritten column and its domain."""
        return {**{c: s.name for c, s in self.deterministic.items()},
                **{t: i.domain for t, i in self.indexes.items()}}

    def groups(self) -> list[tuple[str, str, list[str]]]:
        """(marker, domain, columns): one batched pass each, since a pass's predicate names
        one form and one domain's versions."""
        found: dict[tuple[str, str], list[str]] = {}
        for column, spec in self.deterministic.items():
            found.setdefault((DETERMINISTIC_MARKER, spec.name), []).append(column)
        for target, index in self.indexes.items():
            found.setdefault((BLIND_INDEX_MARKER, index.domain), []).append(target)
        return [(marker, domain, columns) for (marker, domain), columns in found.items()]


def _check_index_lengths(df, plan: _Plan, name: str) -> None:
    """Refuse an index column holding indexes of another length than its domain's spec:
    re-indexed with the wrong spec, it would silently stop matching the domain's other
    columns."""
    from pyspark.sql import functions as F

    for target, index in plan.indexes.items():
        col = F.col(quote(target, "column"))
        digits = F.length(F.element_at(F.split(col, ":"), 3))
        wrong = df.where(col.isNotNull() & (digits != index.bits // 4)).limit(1).count()
        if wrong:
            raise ConfigError(
                f"{name}.{target}: holds blind indexes that are not {index.bits} bits long, "
                f"the length --equality-domains gives domain {index.domain}: declare the "
                "domain as its columns were indexed")


def _encrypted_sources(ctx: JobContext, df, ref: TableRef, plan: _Plan, *, job_group: str,
                       allow_null_columns: bool) -> list[str]:
    """The index sources holding ``ee1`` cells (checked to hold nothing else); the others are
    read as plaintext."""
    sources = sorted({i.column for i in plan.indexes.values()})
    encrypted = [s for s in sources if cells_per_version(df, [s])]
    if encrypted:
        require_cells(ctx.spark, df, ref, encrypted, lakehouse=ctx.lakehouse,
                      job_group=SqlOptions(job_group=job_group).job_group_name(
                          ref.catalog, ref.schema),
                      allow_null_columns=allow_null_columns)
    return encrypted


def _counts(df, columns: Mapping[str, str]) -> dict[str, dict[int, int]]:
    return {c: cells_per_version(df, [c], markers=EQUALITY_MARKERS) for c in columns}


def run(settings: Settings, spark=None, *, table: str, equality_domains: str,
        deterministic_columns: str = "", blind_index_columns: str = "",
        mode: str = BATCHED, batch_rows: int = DEFAULT_BATCH_ROWS, row_key_column: str = "",
        job_group: str = SqlOptions.job_group,
        allow_null_columns: bool = False) -> EqualityReencryptReport:
    """Move ``table``'s deterministic cells and blind indexes to their domains' active
    versions (module docstring)."""
    plan = _Plan.parse(equality_domains, deterministic_columns, blind_index_columns)
    check_batch_rows(batch_rows)
    with build_context(settings, spark) as ctx:
        catalog, schema, name = parse_table_name(table, settings.catalog)
        ref, full_name = TableRef(catalog, schema, name), f"{catalog}.{schema}.{name}"
        if not ctx.lakehouse.table_exists(ctx.spark, catalog, schema, name):
            raise ConfigError(f"table {full_name} does not exist")
        domains = EqualityDomains(ctx.keyring, catalog)
        active = {d: domains.active(d).version for d in dict.fromkeys(plan.columns.values())}
        target = ctx.lakehouse.table(catalog, schema, name)
        # Checked before anything is written: the job group, and that the columns hold a
        # domain's values (not a mask's output), the encrypted sources cells.
        _, current, seen = read_domain_values(ctx, full_name, list(plan.columns),
                                              job_group=job_group,
                                              allow_null_columns=allow_null_columns)
        _check_index_lengths(current, plan, full_name)
        encrypted = _encrypted_sources(ctx, current, ref, plan, job_group=job_group,
                                       allow_null_columns=allow_null_columns)
        before = _counts(current, plan.columns)

        def rewrite_of(columns: list[str]):
            deterministic = {c: plan.deterministic[c].name for c in columns
                             if c in plan.deterministic}
            indexes = [plan.indexes[c] for c in columns if c in plan.indexes]

            def rewrite(rows):
                if deterministic:
                    rows = reseal_deterministic_columns(rows, deterministic, domains=domains)
                if indexes:
                    rows = reindex_blind_indexes(
                        rows, indexes, domains=domains, keyring=ctx.keyring, table=ref,
                        encrypted=[s for s in encrypted if s in {i.column for i in indexes}],
                        row_key=row_key_column or None)
                return rows
            return rewrite

        if mode == WHOLE:
            rewrite_whole(ctx, ref, checked_rewrite(
                ctx.spark, rewrite_of(list(plan.columns))(current), seen,
                f"_reencrypt_equality_{name}"), name)
            progress = BatchProgress(full_name, seen.rows, 1, seen.rows, 1)
        elif mode == BATCHED:
            progress = _batched(ctx, ref, plan, active, before, batch_rows, row_key_column,
                                rewrite_of)
        else:
            raise ConfigError(f"--mode must be {BATCHED} or {WHOLE}, not {mode!r}")
        ctx.spark.catalog.refreshTable(target.replace("`", ""))
        after = _counts(ctx.spark.table(target), plan.columns)
        report = EqualityReencryptReport(full_name, active, before, after, mode,
                                         progress.to_do, progress.done, progress.committed,
                                         plan.columns)
        for domain, version in active.items():
            ctx.keyring.audit.record(AuditEvent(
                "cells_reencrypted", scope=domains.scope(domain), key_version=version,
                table_name=full_name,
                detail="values per domain key version: " + "; ".join(
                    f"{c} before {before[c]}, after {after[c]}"
                    for c, d in plan.columns.items() if d == domain)
                + f"; {report.progress}"))
        log.info("%s", report)
        return report


def _batched(ctx: JobContext, ref: TableRef, plan: _Plan, active: dict[str, int],
             before: dict[str, dict[int, int]], batch_rows: int, row_key_column: str,
             rewrite_of) -> BatchProgress:
    """One resumable batched pass per domain and form; their progress summed."""
    full_name = f"{ref.catalog}.{ref.schema}.{ref.table}"
    storage = ctx.lakehouse.storage_table(ctx.spark, ref.catalog, ref.schema, ref.table)
    total = BatchProgress(full_name, 0, 0)
    for marker, domain, columns in plan.groups():
        found = {v for c in columns for v in before[c]}
        pending = Pending(tuple(columns), active[domain],
                          tuple(sorted(v for v in found if v != active[domain])),
                          marker=f"{marker}:")
        if ctx.lakehouse.databricks:
            # A truncated index is shared by different values: match its source cell too.
            sources = [plan.indexes[c].column for c in columns if c in plan.indexes]
            progress = delta_batches(ctx.spark, storage, full_name, pending,
                                     row_key_column or None, batch_rows, rewrite_of(columns),
                                     also_match=sources)
        else:
            progress = local_file_batches(ctx.spark, storage, full_name, pending, batch_rows,
                                          rewrite_of(columns))
        total.to_do += progress.to_do
        total.batches += progress.batches
        total.done += progress.done
        total.committed += progress.committed
    return total


def add_equality_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``reencrypt_columns`` for equality domains."""
    parser.add_argument(
        "--equality-domains", default="",
        help="Equality domains of the columns below, name[:normal_form[:bits]], "
             "comma-separated, as they were indexed (e.g. ssn:digits:64,email:casefold).")
    parser.add_argument(
        "--deterministic-columns", default="",
        help="column=domain, comma-separated: deterministic cells (ed1) moved to the active "
             "version of their domain's key.")
    parser.add_argument(
        "--blind-index-columns", default="",
        help="column=domain, comma-separated: the blind index <column>_bidx recomputed under "
             "the active version, from <column> (an ee1 cell, decrypted in the worker, or "
             "plaintext).")


def equality_requested(args: argparse.Namespace) -> bool:
    return bool(args.deterministic_columns or args.blind_index_columns)


def run_from_args(settings: Settings, args: argparse.Namespace) -> EqualityReencryptReport:
    return run(settings, table=args.table, equality_domains=args.equality_domains,
               deterministic_columns=args.deterministic_columns,
               blind_index_columns=args.blind_index_columns, mode=args.mode,
               batch_rows=args.batch_rows, row_key_column=args.row_key_column,
               job_group=args.sql_job_group, allow_null_columns=args.allow_null_columns)
