"""Deterministic cells and blind indexes written by ``encrypt_columns`` (docs/equality.md, "Jobs").

``--equality-domains`` declares the domains once (normal form and index length, as
:func:`~envelope_encryption.cell.equality.parse_domain_specs` reads them);
``--deterministic-columns`` and ``--blind-index-columns`` map columns to them. Every batch,
from a table or from files, is transformed in the same order: the blind indexes first, from
the plaintext (``<column>_bidx``), then the randomized columns (``--columns``), then the
deterministic ones. Each domain's key is created on first use (audited by the keyring as
any DEK creation) under ``<catalog>.$equality.<domain>``, ``<catalog>`` being the
deployment's catalog (``--catalog``, where the keyring lives), so the tables of one
deployment share a domain whatever catalog they are in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..cell.equality import (
    DETERMINISTIC_MARKER,
    DomainSpec,
    parse_column_domains,
    parse_domain_specs,
)
from ..cell.format import MARKER
from ..errors import ConfigError
from ..identifiers import quote
from ..keyring.domains import EqualityDomains
from ..keyring.usage import UsageGuard
from .common import JobContext, log
from .table_registry import table_registry
from .usage_limits import usage_ledger, usage_limits

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, Row
    from pyspark.sql.types import StructType

    from ..keyring.keyring import Keyring
    from ..spark.columns import TableRef

# What an already encrypted value looks like (a blind index of it would index the cell's
# text, not the value, and match nothing).
_ANY_CELL = rf"^({MARKER}|{DETERMINISTIC_MARKER}):[0-9]+:"
_RANDOMIZED_CELL = rf"^{MARKER}:[0-9]+:"
INDEX_SUFFIX = "_bidx"


@dataclass(frozen=True)
class EqualityColumns:
    """The deterministic and blind-index columns of one run (column -> its domain's spec)."""

    deterministic: Mapping[str, DomainSpec]
    blind_indexes: Mapping[str, DomainSpec]

    @classmethod
    def parse(cls, domains: str = "", deterministic: str = "",
              blind_indexes: str = "") -> EqualityColumns:
        """The three parameters' text; an undeclared domain is a ConfigError."""
        specs = parse_domain_specs(domains)
        return cls(parse_column_domains(deterministic, specs, "--deterministic-columns"),
                   parse_column_domains(blind_indexes, specs, "--blind-index-columns"))

    def __bool__(self) -> bool:
        return bool(self.deterministic or self.blind_indexes)

    @property
    def index_columns(self) -> dict[str, str]:
        """Source column -> the column its blind index is written to."""
        return {c: c + INDEX_SUFFIX for c in self.blind_indexes}

    @property
    def domains(self) -> list[str]:
        return sorted({s.name for s in [*self.deterministic.values(),
                                        *self.blind_indexes.values()]})

    def check(self, columns: Sequence[str], *, id_column: str = "", row_key: str = "",
              subject_column: str = "") -> None:
        """Refuse combinations that would store wrong or unerasable values (before any read)."""
        both = sorted(set(self.deterministic) & set(columns))
        if both:
            raise ConfigError(
                f"column(s) {', '.join(both)} are in --columns and in --deterministic-columns: "
                "a column is either randomized (ee1) or deterministic (ed1), not both")
        if not columns and not self.deterministic:
            raise ConfigError("nothing to encrypt: give --columns or --deterministic-columns")
        indexed = sorted(set(self.deterministic) & set(self.blind_indexes))
        if indexed:
            raise ConfigError(
                f"column(s) {', '.join(indexed)} are deterministic: their cells compare equal "
                "themselves, they need no blind index")
        for what, name in (("--id-column", id_column), ("--row-key-column", row_key)):
            if name and name in self.deterministic:
                raise ConfigError(
                    f"{what} {name} cannot be deterministic: the job and the readers compare "
                    "its plaintext")
        if subject_column and self:
            raise ConfigError(
                "--subject-column does not go with deterministic or blind-index columns: "
                "they are under the domain's key, not the subject's, so erase_subject would "
                "leave them readable (docs/equality.md, 'Jobs')")
        clashes = sorted(set(self.index_columns.values())
                         & {*columns, *self.deterministic, id_column, row_key})
        if clashes:
            raise ConfigError(f"blind index column(s) {', '.join(clashes)} are also named as "
                              "input columns")

    def check_source(self, schema: StructType) -> None:
        """The input has every column named, and none of the index columns the job adds."""
        missing = sorted(c for c in [*self.deterministic, *self.blind_indexes]
                         if c not in schema.names)
        if missing:
            raise ConfigError(f"input has no column(s) {', '.join(missing)}; it has "
                              f"{', '.join(schema.names)}")
        present = sorted(c for c in self.index_columns.values() if c in schema.names)
        if present:
            raise ConfigError(
                f"the input already has column(s) {', '.join(present)}, which the job writes "
                "(the blind indexes): rename them in the input")

    def prepare(self, ctx: JobContext, schema: StructType) -> EqualityDomains:
        """Check the input's columns, then ensure each domain's key: created when the domain
        has none (the keyring's ``dek_created`` audit event, as for a DEK)."""
        domains = equality_domains(ctx)
        if not self:
            return domains
        self.check_source(schema)
        for name in self.domains:
            version, created = domains.ensure(name)
            if created:
                log.info("equality domain %s: key v%d created (%s)", name, version,
                         domains.scope(name))
        return domains

    def aggregates(self, domains: EqualityDomains) -> list[Column]:
        """Columns to add to the aggregation a job runs over each batch: values already
        encrypted where plaintext is needed, and the deterministic values to count."""
        from pyspark.sql import functions as F

        versions = {name: domains.keyring.active(domains.scope(name)).version
                    for name in self.domains}

        def count_if(condition: Column, alias: str) -> Column:
            return F.sum(F.when(condition, 1).otherwise(0)).alias(alias)

        checks = [count_if(_text(c).rlike(_ANY_CELL), f"_eq_cells_{i}")
                  for i, c in enumerate(self.blind_indexes)]
        # An ed1 cell of the domain's active version is kept (a re-run); of another version
        # it would be sealed again, and decrypt to the old cell's text.
        checks += [
            count_if(_text(c).rlike(_RANDOMIZED_CELL)
                     | (_text(c).rlike(rf"^{DETERMINISTIC_MARKER}:[0-9]+:")
                        & ~_text(c).startswith(f"{DETERMINISTIC_MARKER}:{versions[s.name]}:")),
                     f"_ed_cells_{i}")
            for i, (c, s) in enumerate(self.deterministic.items())]
        counts = [F.count(F.col(quote(c, "column"))).alias(f"_ed_values_{i}")
                  for i, c in enumerate(self.deterministic)]
        return [*checks, *counts]

    def refuse_cells(self, row: Row) -> None:
        """Refuse a batch whose blind-index columns hold cells, or whose deterministic
        columns hold randomized cells or deterministic cells of another version."""
        cells = [c for i, c in enumerate(self.blind_indexes) if row[f"_eq_cells_{i}"]]
        if cells:
            raise ConfigError(
                f"blind-index column(s) {', '.join(cells)} of the input hold encrypted cells: "
                "an index needs the plaintext. Nothing was written")
        foreign = [c for i, c in enumerate(self.deterministic) if row[f"_ed_cells_{i}"]]
        if foreign:
            raise ConfigError(
                f"deterministic column(s) {', '.join(foreign)} of the input hold randomized "
                "(ee1) cells or deterministic cells of another domain key version: they would "
                "be encrypted as if they were values. Decrypt them first. Nothing was written")

    def values(self, row: Row) -> dict[str, int]:
        """Non-NULL deterministic values per domain, from a row of :meth:`aggregates`."""
        counts: dict[str, int] = {}
        for i, spec in enumerate(self.deterministic.values()):
            counts[spec.name] = counts.get(spec.name, 0) + int(row[f"_ed_values_{i}"])
        return counts

    def transform(self, rows: DataFrame, domains: EqualityDomains,
                  encrypt: Callable[[DataFrame], DataFrame]) -> DataFrame:
        """Blind indexes of the plaintext, then ``encrypt`` (the randomized columns), then
        the deterministic cells."""
        from ..spark.equality_columns import (
            BlindIndex,
            add_blind_indexes,
            encrypt_deterministic_columns,
        )

        if self.blind_indexes:
            rows = add_blind_indexes(rows, [
                BlindIndex(c, s.name, s.bits, s.normal_form, self.index_columns[c])
                for c, s in self.blind_indexes.items()], domains=domains)
        rows = encrypt(rows)
        if self.deterministic:
            rows = encrypt_deterministic_columns(
                rows, {c: s.name for c, s in self.deterministic.items()}, domains=domains)
        return rows

    def notes(self) -> dict[str, str]:
        """Column comments of a new target: what each deterministic or index column holds."""
        notes = {c: f"deterministic cells (ed1), equality domain {s.name}"
                 for c, s in self.deterministic.items()}
        notes.update({self.index_columns[c]: f"blind index (bi1) of {c}, equality domain "
                      f"{s.name}, {s.normal_form}, {s.bits} bits"
                      for c, s in self.blind_indexes.items()})
        return notes

    def register(self, ctx: JobContext, catalog: str, schema: str, table: str) -> None:
        """Register the deterministic and index columns under their domains' scopes."""
        domains = equality_domains(ctx)
        by_domain: dict[str, list[str]] = {}
        for column, spec in self.deterministic.items():
            by_domain.setdefault(spec.name, []).append(column)
        for column, spec in self.blind_indexes.items():
            by_domain.setdefault(spec.name, []).append(self.index_columns[column])
        registry = table_registry(ctx)
        for name, columns in sorted(by_domain.items()):
            registry.register(catalog, schema, table, columns, scope=domains.scope(name))

    def describe(self) -> str:
        parts = []
        if self.deterministic:
            parts.append("deterministic " + ", ".join(
                f"{c} ({s.name})" for c, s in self.deterministic.items()))
        if self.blind_indexes:
            parts.append("blind indexes " + ", ".join(
                f"{self.index_columns[c]} ({s.name})" for c, s in self.blind_indexes.items()))
        return "; ".join(parts)


NO_EQUALITY = EqualityColumns({}, {})


def encrypt_rows(ctx: JobContext, ref: TableRef, rows: DataFrame, columns: Sequence[str],
                 equality: EqualityColumns, domains: EqualityDomains, *, row_key: str = "",
                 dek_version: int | None = None, keyring: Keyring | None = None) -> DataFrame:
    """One batch as the target stores it: blind indexes, randomized cells under the DEK
    version the usage guard reserved, deterministic cells. ``keyring``: the one the DEKs
    are read from (default: the job's; a file run passes its batch's snapshot)."""
    from ..spark.columns import encrypt_columns

    def randomized(indexed: DataFrame) -> DataFrame:
        if not columns:
            return indexed
        return encrypt_columns(indexed, columns, keyring=keyring or ctx.keyring, table=ref,
                               row_key=row_key or None, dek_version=dek_version)

    return equality.transform(rows, domains, randomized)


def equality_domains(ctx: JobContext) -> EqualityDomains:
    """The equality domains of the deployment's catalog (where its keyring lives)."""
    return EqualityDomains(ctx.keyring, ctx.settings.catalog)


def domain_usage_guard(ctx: JobContext) -> UsageGuard:
    """The usage guard of domain keys: the same ledger and limits as DEKs, never rotating
    on its own, since a domain rotated under one table only would silently break its joins
    (docs/equality.md, 'Rotation')."""
    return UsageGuard(ctx.keyring, usage_ledger(ctx),
                      replace(usage_limits(ctx.settings), auto_rotate=False))


def reserve_domains(guard: UsageGuard, domains: EqualityDomains, table_name: str,
                    values: Mapping[str, int], batch_id: int | None = None) -> None:
    """Count the deterministic encryptions of a batch per domain version (an upper bound of
    the distinct values, which the construction's bound limits; docs/equality.md)."""
    for name, count in sorted(values.items()):
        guard.reserve(domains.scope(name), table_name, count, batch_id=batch_id)


def _text(column: str) -> Column:
    from pyspark.sql import functions as F

    return F.col(quote(column, "column")).cast("string")
