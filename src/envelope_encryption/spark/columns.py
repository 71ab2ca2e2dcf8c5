"""Encrypt and decrypt DataFrame columns, Arrow-batched on the executors.

The driver unwraps the DEKs it needs through the keyring (once per version per process) and
ships them to the executors inside the batch function's closure. The closure travels as
serialized bytes in the task, held in memory: the plaintext key never appears in a logical
or physical plan string (``explain()``), a column expression, the Spark UI or a log. That is
why this uses ``mapInArrow`` with a Python closure, not ``aes_encrypt`` with a key literal,
which would print the key in every plan.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..cell.format import CELL_PREFIX
from ..cell.types import canonical_type_tag
from ..errors import ConfigError, FormatError
from ..identifiers import ColumnPlace
from ..keyring.base import LEGACY_KEY_TYPE, DekState
from ..keyring.keyring import Keyring

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame

TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"
TIMESTAMP_NTZ_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"


@dataclass(frozen=True)
class TableRef:
    """The logical table a DataFrame's cells belong to (their AAD place)."""

    catalog: str
    schema: str
    table: str

    def place(self, column: str) -> str:
        return str(ColumnPlace(self.catalog, self.schema, self.table, column))

    @property
    def scope(self) -> str:
        return f"{self.catalog}.{self.schema}"


def _check_columns(df: DataFrame, columns: Sequence[str]) -> None:
    if not columns:
        raise ConfigError("no columns to encrypt or decrypt were given")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(
            f"column(s) {', '.join(missing)} not found; the data has {', '.join(df.columns)}"
        )
    if len(set(columns)) != len(columns):
        raise ConfigError("a column is named twice")


def _canonical(df: DataFrame, column: str, tag: str) -> Column:
    """The canonical string form of a column (see cell/types.py)."""
    from pyspark.sql import functions as F

    col = F.col(f"`{column}`")
    if tag == "string":
        return col
    if tag == "timestamp":
        return F.date_format(col, TIMESTAMP_FORMAT)
    if tag == "timestamp_ntz":
        return F.date_format(col, TIMESTAMP_NTZ_FORMAT)
    if tag == "binary":
        return F.base64(col)
    return col.cast("string")


def _typed(column: str, tag: str) -> Column:
    """A decrypted canonical string back to its type."""
    from pyspark.sql import functions as F

    col = F.col(f"`{column}`")
    if tag == "string":
        return col
    if tag == "binary":
        return F.unbase64(col)
    return col.cast(tag)


def _string_schema(df: DataFrame, columns: Sequence[str]):
    from pyspark.sql.types import StringType, StructField, StructType

    return StructType([
        StructField(f.name, StringType(), True) if f.name in columns else f
        for f in df.schema.fields
    ])


def encrypt_columns(
    df: DataFrame, columns: Sequence[str], *, keyring: Keyring, table: TableRef
) -> DataFrame:
    """Encrypt ``columns`` of ``df`` with the active DEK of the table's scope.

    Encrypted columns become STRING cells; NULL stays NULL; values that already are cells of
    this place (a re-run) are kept, not encrypted twice.
    """
    _check_columns(df, columns)
    tags = {c: canonical_type_tag(df.schema[c].dataType.simpleString()) for c in columns}
    version, active = keyring.active_dek(table.scope)
    keep = {v: k.reveal() for v, k in keyring.deks(table.scope).items()}
    key = active.reveal()
    plan = [(c, tags[c], table.place(c)) for c in columns]
    string_columns = {c for c in columns if tags[c] == "string"}

    prepared = df.select([
        _canonical(df, f.name, tags[f.name]).alias(f.name) if f.name in tags else f"`{f.name}`"
        for f in df.schema.fields
    ])

    def encrypt_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        from envelope_encryption.cell import format as cell_format

        for batch in batches:
            arrays = list(batch.columns)
            for name, tag, place in plan:
                i = batch.schema.get_field_index(name)
                values = arrays[i].to_pylist()
                arrays[i] = pa.array(
                    cell_format.encrypt_many(
                        values, key, version, tag, place,
                        keep=keep if name in string_columns else None,
                    ),
                    type=pa.string(),
                )
            yield pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)

    return prepared.mapInArrow(encrypt_batches, _string_schema(df, columns))


def _legacy_key(keyring: Keyring, scope: str) -> bytes | None:
    for record in keyring.versions(scope):
        if record.key_type == LEGACY_KEY_TYPE and record.state is DekState.ENABLED:
            return keyring.dek(scope, record.version).reveal()
    return None


def infer_type_tags(df: DataFrame, columns: Sequence[str]) -> dict[str, str]:
    """The type tag of each encrypted column, read from the first cell found (string if none)."""
    from pyspark.sql import functions as F

    tags = {}
    for column in columns:
        col = F.col(f"`{column}`")
        row = (
            df.where(col.startswith(CELL_PREFIX))
            .select(F.split(col, ":").getItem(2).alias("tag"))
            .limit(1)
            .collect()
        )
        tags[column] = canonical_type_tag(row[0]["tag"]) if row else "string"
    return tags


def decrypt_columns(
    df: DataFrame,
    columns: Sequence[str],
    *,
    keyring: Keyring,
    table: TableRef,
    strict: bool = True,
    types: Mapping[str, str] | None = None,
) -> DataFrame:
    """Decrypt cells of any DEK version of the table's scope.

    ``strict=True`` fails the query on the first value that does not decrypt (wrong key,
    wrong column, tampered, truncated, unknown version) with an error naming the column;
    ``strict=False`` turns such values into NULL. Columns come back in their original type
    (from ``types``, or from the cells' type tag).
    """
    _check_columns(df, columns)
    for column in columns:
        if df.schema[column].dataType.simpleString() != "string":
            raise ConfigError(f"column {column} is not a STRING column of encrypted cells")
    tags = dict(types) if types is not None else infer_type_tags(df, columns)
    tags = {c: canonical_type_tag(tags[c]) for c in columns}
    keys = {v: k.reveal() for v, k in keyring.deks(table.scope).items()}
    legacy = _legacy_key(keyring, table.scope)
    plan = [(c, tags[c], table.place(c)) for c in columns]

    def decrypt_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        from envelope_encryption.cell import format as cell_format
        from envelope_encryption.errors import EnvelopeError

        for batch in batches:
            arrays = list(batch.columns)
            for name, tag, place in plan:
                i = batch.schema.get_field_index(name)
                try:
                    values = cell_format.decrypt_many(
                        arrays[i].to_pylist(), keys, place, strict=strict,
                        expected_tag=tag, legacy_key=legacy,
                    )
                except EnvelopeError as error:
                    raise type(error)(f"column {name}: {error}") from None
                arrays[i] = pa.array(values, type=pa.string())
            yield pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)

    decrypted = df.mapInArrow(decrypt_batches, df.schema)
    return decrypted.select([
        _typed(f.name, tags[f.name]).alias(f.name) if f.name in tags else f"`{f.name}`"
        for f in df.schema.fields
    ])


def reencrypt_columns(
    df: DataFrame, columns: Sequence[str], *, keyring: Keyring, table: TableRef
) -> DataFrame:
    """Re-encrypt cells of older DEK versions (and legacy cells) under the active version.

    Cells already under the active version are kept as they are. A cell that does not
    decrypt fails the query: nothing is rewritten from a value that could not be read.
    """
    _check_columns(df, columns)
    version, active = keyring.active_dek(table.scope)
    keys = {v: k.reveal() for v, k in keyring.deks(table.scope).items()}
    legacy = _legacy_key(keyring, table.scope)
    key = active.reveal()
    plan = [(c, table.place(c)) for c in columns]
    current_prefix = f"ee1:{version}:"

    def reencrypt_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        from envelope_encryption.cell import format as cell_format

        for batch in batches:
            arrays = list(batch.columns)
            for name, place in plan:
                i = batch.schema.get_field_index(name)
                out = []
                for value in arrays[i].to_pylist():
                    if value is None or value.startswith(current_prefix):
                        out.append(value)
                        continue
                    if legacy is not None and not value.startswith(CELL_PREFIX):
                        plain, tag = cell_format.decrypt_legacy_cell(value, legacy), "string"
                    else:
                        plain, header = cell_format.decrypt_cell(value, keys, place)
                        tag = header.type_tag
                    out.append(cell_format.encrypt_value(plain, key, version, tag, place))
                arrays[i] = pa.array(out, type=pa.string())
            yield pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)

    for column in columns:
        if df.schema[column].dataType.simpleString() != "string":
            raise FormatError(f"column {column} is not a STRING column of encrypted cells")
    return df.mapInArrow(reencrypt_batches, df.schema)


def cells_per_version(df: DataFrame, columns: Sequence[str] | None = None) -> dict[int, int]:
    """How many cells of each DEK version ``columns`` hold (all STRING columns by default).

    One pass over the data; used to decide whether a DEK version is still in use.
    """
    from pyspark.sql import functions as F

    if columns is None:
        columns = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]
    _check_columns(df, columns)
    counts: dict[int, int] = {}
    for column in columns:
        col = F.col(f"`{column}`")
        rows = (
            df.where(col.rlike(r"^ee1:[1-9][0-9]*:"))
            .groupBy(F.split(col, ":").getItem(1).cast("int").alias("version"))
            .count()
            .collect()
        )
        for row in rows:
            counts[row["version"]] = counts.get(row["version"], 0) + row["count"]
    return counts
