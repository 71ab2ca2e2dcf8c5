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

from ..cell.equality import (
    _BLIND_INDEX,
    _DETERMINISTIC,
    BLIND_INDEX_MARKER,
    DEFAULT_INDEX_BITS,
    DETERMINISTIC_MARKER,
    check_index_bits,
    normaliser,
)
from ..cell.types import canonical_type_tag
from ..errors import ConfigError
from ..identifiers import validate_identifier
from ..keyring.domains import EqualityDomains
from ..keyring.keyring import Keyring
from ..logs import guard_key_loggers
from .columns import (
    TableRef,
    _canonical,
    _check_columns,
    _map_cells,
    _require_string_columns,
    _typed,
    cells_per_version,
    key_column_text,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# The forms an equality domain's keys make: what counts as "a value of the domain".
EQUALITY_MARKERS = (DETERMINISTIC_MARKER, BLIND_INDEX_MARKER)
# Their whole grammar, for whole-column checks in Spark (Java regex, anchored at both ends).
EQUALITY_REGEX = rf"\A(?:{_DETERMINISTIC.pattern}|{_BLIND_INDEX.pattern})\z"


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
    return cells_per_version(df, [column], markers=EQUALITY_MARKERS)


def reseal_deterministic_columns(
    df: DataFrame, columns: Mapping[str, str], *, domains: EqualityDomains,
) -> DataFrame:
    """Move each column's deterministic cells (``columns``: column -> domain) to the active
    version of its domain: every cell is opened with the domain's readable versions; those
    of the active version are kept as they are, the others sealed again (same plaintext,
    same type) under it. NULL stays NULL; a value that does not open (another domain,
    retired version, tampered, not a deterministic cell) fails the query, naming the
    column: nothing is rewritten from, or kept as, a value that could not be read."""
    guard_key_loggers()
    _check_columns(df, list(columns))
    _require_string_columns(df, list(columns))
    active = {c: domains.active(domain) for c, domain in columns.items()}
    readable = {c: domains.readable(domain) for c, domain in columns.items()}

    def reseal(name: str, values: list, _rows: list | None) -> list:
        from envelope_encryption.cell.equality import DeterministicOpener, DeterministicSealer

        keys = active[name]
        sealer = DeterministicSealer(keys)
        opener = DeterministicOpener(keys.domain, readable[name])
        out = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            plain, version, tag = opener.open(value)
            out.append(value if version == keys.version else sealer.seal(plain, tag))
        return out

    # Deterministic: equal cells give equal cells, so Spark may evaluate it once per value.
    return _map_cells(df, list(columns), reseal, None, deterministic=True)


# A blind index column prepared for re-indexing: "k" + the index to keep (already of the
# active version), or "s" + the source value to index again. The tag keeps the two apart
# whatever the source holds.
_KEEP, _SOURCE = "k", "s"


def reindex_blind_indexes(
    df: DataFrame, indexes: Sequence[BlindIndex], *, domains: EqualityDomains,
    keyring: Keyring | None = None, table: TableRef | None = None,
    encrypted: Sequence[str] = (), row_key: str | None = None,
) -> DataFrame:
    """Recompute each index column whose value is of an older domain version from its
    source column, under the active version; indexes of the active version are kept.

    A source column named in ``encrypted`` holds ``ee1`` cells of ``table``'s scope: they are
    decrypted in the worker (with ``keyring``'s DEKs, bound to ``row_key`` if the table binds
    rows), indexed, and the plaintext goes nowhere else; any other source column holds the
    plaintext. A source cell that does not decrypt fails the query; an index whose source is
    NULL becomes NULL (which the caller's count check refuses)."""
    from pyspark.sql import functions as F

    guard_key_loggers()
    if not indexes:
        raise ConfigError("no blind index was given")
    targets = [i.target for i in indexes]
    _check_columns(df, [*targets, *{i.column for i in indexes}])
    _require_string_columns(df, targets)
    if encrypted and (keyring is None or table is None):
        raise ConfigError("encrypted source columns need the keyring and their table")
    specs = {i.target: (i, domains.active(i.domain)) for i in indexes}
    sources = {i.target: i.column for i in indexes}
    tags = {i.target: canonical_type_tag(df.schema[i.column].dataType.simpleString())
            for i in indexes}
    dek = {} if not encrypted else {v: k.reveal() for v, k in keyring.deks(table.scope).items()}
    places = {c: table.place(c) for c in encrypted} if encrypted else {}

    def prepared(index: BlindIndex) -> Column:
        current = F.col(f"`{index.target}`")
        active = f"{BLIND_INDEX_MARKER}:{specs[index.target][1].version}:"
        source = (F.col(f"`{index.column}`") if index.column in places
                  else _canonical(df, index.column, tags[index.target]))
        return (F.when(current.isNull(), F.lit(None))
                .when(current.startswith(active), F.concat(F.lit(_KEEP), current))
                .otherwise(F.concat(F.lit(_SOURCE), source)))

    wanted = {i.target: prepared(i) for i in indexes}
    rows = None if row_key is None else key_column_text(df, row_key, list(encrypted),
                                                        "row key column")
    ready = df.select([wanted[f.name].alias(f.name) if f.name in wanted else f"`{f.name}`"
                       for f in df.schema.fields])

    def reindex(name: str, values: list, row_values: list | None) -> list:
        from envelope_encryption.cell import batch as cell_batch
        from envelope_encryption.cell.equality import BlindIndexer

        spec, keys = specs[name]
        todo = [n for n, v in enumerate(values) if v is not None and v[0] == _SOURCE]
        plain = [values[n][1:] for n in todo]
        source = sources[name]
        if source in places:
            plain = cell_batch.decrypt_many(
                plain, dek, places[source], strict=True, row_column=row_key,
                row_values=None if row_values is None else [row_values[n] for n in todo])
        out = [None if v is None else v[1:] for v in values]
        for n, value in zip(todo, BlindIndexer(keys, spec.bits, spec.normal_form)
                            .index_many(plain), strict=True):
            out[n] = value
        return out

    return _map_cells(ready, targets, reindex, rows, deterministic=True)
