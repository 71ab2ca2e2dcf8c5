"""Deterministic cells and blind indexes for DataFrame columns (``docs/equality.md``).

The same Arrow batching as :mod:`.columns`: the driver derives the domain's sub-keys once,
the batch functions carry them in their closures, and no key enters a Spark expression.
Deterministic encryption and blind indexes are pure functions of their input, so their
UDFs are declared deterministic: Spark may evaluate them once for equal inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..cell.equality import DEFAULT_INDEX_BITS, check_index_bits, normaliser
from ..cell.types import canonical_type_tag
from ..errors import ConfigError
from ..identifiers import validate_identifier
from ..keyring.domains import EqualityDomains
from ..logs import guard_key_loggers
from .columns import _canonical, _check_columns, _map_cells, _require_string_columns, _typed

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class BlindIndex:
    """A blind index of ``column`` in ``domain``, written to ``index_column``."""

    column: str
    domain: str
    bits: int = DEFAULT_INDEX_BITS
    normal_form: str = "exact"
    index_column: str = ""

    def __post_init__(self) -> None:
        validate_identifier(self.column, "column")
        validate_identifier(self.domain, "equality domain")
        check_index_bits(self.bits)
        normaliser(self.normal_form)
        if self.index_column:
            validate_identifier(self.index_column, "blind index column")

    @property
    def target(self) -> str:
        return self.index_column or f"{self.column}_bidx"


def encrypt_deterministic_columns(
    df: DataFrame, columns: Mapping[str, str], *, domains: EqualityDomains,
) -> DataFrame:
    """Replace each column by deterministic cells under the active key of its domain
    (``columns``: column -> domain). NULL stays NULL; equal values give equal cells across
    every column of a domain, so joins and ``GROUP BY`` work on the cells. A STRING value
    that already is a deterministic cell of the domain's active version (a re-run over the
    job's own output) is kept, not encrypted twice."""
    guard_key_loggers()
    _check_columns(df, list(columns))
    tags = {c: canonical_type_tag(df.schema[c].dataType.simpleString()) for c in columns}
    keys = {c: domains.active(domain) for c, domain in columns.items()}
    prepared = df.select([
        _canonical(df, f.name, tags[f.name]).alias(f.name) if f.name in tags else f"`{f.name}`"
        for f in df.schema.fields
    ])

    def seal(name: str, values: list, _rows: list | None) -> list:
        from envelope_encryption.cell.equality import (
            DETERMINISTIC_MARKER,
            DeterministicOpener,
            DeterministicSealer,
        )
        from envelope_encryption.errors import EnvelopeError

        sealer = DeterministicSealer(keys[name])
        opener = DeterministicOpener(keys[name].domain, [keys[name]])

        def already_sealed(value: str) -> bool:
            if tags[name] != "string" or not value.startswith(DETERMINISTIC_MARKER + ":"):
                return False
            try:
                opener.open(value)
            except EnvelopeError:
                return False
            return True

        return [None if value is None else value if already_sealed(value)
                else sealer.seal(value, tags[name]) for value in values]

    return _map_cells(prepared, list(columns), seal, None, deterministic=True)


def decrypt_deterministic_columns(
    df: DataFrame, columns: Mapping[str, str], *, domains: EqualityDomains,
    types: Mapping[str, str] | None = None, strict: bool = True,
) -> DataFrame:
    """Open deterministic cells of each column's domain (any readable version).

    ``strict=True`` fails on the first value that does not open (another domain, wrong or
    unknown version, tampered, not a deterministic cell), naming the column; ``strict=False``
    turns such values into NULL. A cell whose type tag is not the column's expected type
    (``types``, default ``string``) is refused like a tampered one.
    """
    guard_key_loggers()
    _check_columns(df, list(columns))
    _require_string_columns(df, list(columns))
    tags = {c: canonical_type_tag((types or {}).get(c, "string")) for c in columns}
    readable = {c: domains.readable(domain) for c, domain in columns.items()}
    names = dict(columns)

    def open_all(name: str, values: list, _rows: list | None) -> list:
        from envelope_encryption.cell.equality import DeterministicOpener
        from envelope_encryption.errors import EnvelopeError, FormatError

        opener = DeterministicOpener(names[name], readable[name])
        out = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            try:
                plain, _, tag = opener.open(value)
                if tag != tags[name]:
                    raise FormatError(f"cell holds a {tag}, the column is {tags[name]}")
            except EnvelopeError:
                if strict:
                    raise
                plain = None
            out.append(plain)
        return out

    opened = _map_cells(df, list(columns), open_all, None, deterministic=True)
    return opened.select([
        _typed(f.name, tags[f.name]).alias(f.name) if f.name in tags else f"`{f.name}`"
        for f in df.schema.fields
    ])


def add_blind_indexes(
    df: DataFrame, indexes: Sequence[BlindIndex], *, domains: EqualityDomains,
) -> DataFrame:
    """``df`` with one more STRING column per index: the blind index of the plaintext column
    under the active key of its domain. Run it before the column is encrypted."""
    guard_key_loggers()
    if not indexes:
        raise ConfigError("no blind index was given")
    _check_columns(df, [i.column for i in indexes])
    targets = [i.target for i in indexes]
    clashes = sorted({t for t in targets if t in df.columns or targets.count(t) > 1})
    if clashes:
        raise ConfigError(f"blind index column(s) {', '.join(clashes)} already exist or are "
                          "named twice")
    specs = {i.target: (i, domains.active(i.domain)) for i in indexes}
    tags = {i.target: canonical_type_tag(df.schema[i.column].dataType.simpleString())
            for i in indexes}
    # Each index column starts as the canonical plaintext of its source column; the batch
    # function turns it into the index.
    prepared = df.select(["*", *[
        _canonical(df, i.column, tags[i.target]).alias(i.target) for i in indexes]])

    def index(name: str, values: list, _rows: list | None) -> list:
        from envelope_encryption.cell.equality import BlindIndexer

        spec, keys = specs[name]
        return BlindIndexer(keys, spec.bits, spec.normal_form).index_many(values)

    return _map_cells(prepared, targets, index, None, deterministic=True)


def domain_versions(df: DataFrame, column: str) -> dict[int, int]:
    """How many deterministic cells or blind indexes of each domain key version ``column``
    holds: both sides of a join must hold one and the same version (docs/equality.md,
    "Rotation")."""
    from pyspark.sql import functions as F

    _check_columns(df, [column])
    col = F.col(f"`{column}`")
    rows = (df.where(col.rlike(r"^(ed1|bi1):[1-9][0-9]*:"))
            .groupBy(F.split(col, ":").getItem(1).cast("int").alias("version")).count()
            .collect())
    return {row["version"]: row["count"] for row in rows}
