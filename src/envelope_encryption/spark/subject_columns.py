"""Encrypt and decrypt DataFrame columns under per-subject keys (erasure scopes).

Each row's subject (the ``subject_column``, e.g. ``customer_id``) selects its own key,
derived from the scope's DEK and the subject's salt (:mod:`..cell.subject`), so erasing the
subject (:meth:`SubjectStore.erase`) makes exactly its cells unreadable.

How a query runs:

1. an Arrow UDF hashes each row's subject id (HMAC under the scope's subject-id key, shipped
   in the closure like a DEK, never in a plan);
2. the salts of the scope are joined in by hash (``broadcast=True``: a broadcast join, each
   executor holds every salt of the scope; ``False``: a shuffle join; ``None``: Spark
   chooses by size, see docs/erasure-scopes.md for the measured figures);
3. an Arrow UDF per column encrypts or decrypts each value under its subject's key, derived
   once per distinct subject and kept in a bounded LRU per Python worker.

The scope's DEKs are unwrapped once per keyring (versions touched), whatever the number of
subjects: subject keys are derived, never unwrapped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..cell.subject import SUBJECT_HEADER_REGEX, SubjectErased
from ..cell.types import canonical_type_tag
from ..errors import ConfigError
from ..keyring.keyring import Keyring
from ..keyring.subjects import SubjectStore
from ..logs import guard_key_loggers
from .columns import TableRef, _canonical, _check_columns, _typed, key_column_text

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# The helper columns a query adds (and drops): the subject's hash, salt and erased flag.
_SUBJECT = "__ee_subject"
_HASH, _SALT, _ERASED = "subject_hash", "salt", "erased"


def _subject_text(df: DataFrame, subject_column: str, columns: Sequence[str]) -> Column:
    """The canonical string of the subject column (Spark's CAST AS STRING)."""
    return key_column_text(df, subject_column, columns, "subject column")


def _arrow(function, argc: int, return_type: str):
    """An Arrow array-to-array UDF of ``argc`` arguments calling ``function(*arrays)``."""
    import pyarrow as pa
    from pyspark.sql.functions import arrow_udf

    def one(a: pa.Array) -> pa.Array:
        return function(a)

    def two(a: pa.Array, b: pa.Array) -> pa.Array:
        return function(a, b)

    udf = one if argc == 1 else two
    # Postponed annotations are strings naming this module's lazily imported ``pa``.
    udf.__annotations__ = {**dict.fromkeys(udf.__code__.co_varnames[:argc], pa.Array),
                           "return": pa.Array}
    return arrow_udf(udf, return_type)


def _hashed(df: DataFrame, subject: Column, id_key: bytes) -> DataFrame:
    """``df`` with the hash of each row's subject id (NULL for a NULL id)."""
    def hash_ids(ids):
        import pyarrow as pa

        from envelope_encryption.cell.subject import subject_hash

        return pa.array([None if s is None else subject_hash(id_key, s)
                         for s in ids.to_pylist()], type=pa.string())

    return df.withColumn(_HASH, _arrow(hash_ids, 1, "string")(subject))


def _with_salts(hashed: DataFrame, salts: DataFrame, broadcast: bool | None) -> DataFrame:
    """The rows with their subject as one struct column (hash, salt, erased)."""
    from pyspark.sql import functions as F

    if broadcast is True:
        salts = F.broadcast(salts)
    joined = hashed.join(salts if broadcast is not False else salts.hint("shuffle_hash"),
                         _HASH, "left")
    return joined.withColumn(_SUBJECT, F.struct(_HASH, _SALT, _ERASED)).drop(
        _HASH, _SALT, _ERASED)


def _subject_udf(name: str, transform, deterministic: bool):
    """An Arrow UDF of (values, subject struct) applying ``transform(name, values, hashes,
    salts, erased)``; its errors name the column, never a value."""
    def apply(values, subjects):
        import pyarrow as pa

        from envelope_encryption.errors import EnvelopeError

        try:
            out = transform(name, values.to_pylist(), subjects.field(_HASH).to_pylist(),
                            subjects.field(_SALT).to_pylist(),
                            subjects.field(_ERASED).to_pylist())
        except EnvelopeError as error:
            raise type(error)(f"column {name}: {error}") from None
        return pa.array(out, type=pa.string())

    udf = _arrow(apply, 2, "string")
    return udf if deterministic else udf.asNondeterministic()


def _map_subject_cells(df: DataFrame, columns: Sequence[str], transform, *,
                       deterministic: bool) -> DataFrame:
    from pyspark.sql import functions as F

    subject = F.col(_SUBJECT)
    return df.select([
        _subject_udf(f.name, transform, deterministic)(F.col(f"`{f.name}`"), subject)
        .alias(f.name) if f.name in columns else F.col(f"`{f.name}`")
        for f in df.schema.fields if f.name != _SUBJECT
    ])


def _deks(keyring: Keyring, scope: str) -> dict[int, bytes]:
    return {v: k.reveal() for v, k in keyring.deks(scope).items()}


def encrypt_subject_columns(
    df: DataFrame, columns: Sequence[str], *, keyring: Keyring, table: TableRef,
    subject_column: str, subjects: SubjectStore, broadcast: bool | None = None,
    dek_version: int | None = None,
) -> DataFrame:
    """Encrypt ``columns`` of ``df``, each row under its subject's key (active DEK version,
    or ``dek_version``: the version the usage limits reserved for this batch).

    Subjects seen for the first time get a salt first (one guarded INSERT, counted in the
    audit trail). A row whose subject is NULL or erased is refused (the job fails, nothing
    is written): an erased subject is not written again. Values that already are subject
    cells of this place and subject are kept, not encrypted twice.

    The salts are created when this function is called (an action); the returned DataFrame
    encrypts when it is written.
    """
    guard_key_loggers()
    _check_columns(df, columns)
    tags = {c: canonical_type_tag(df.schema[c].dataType.simpleString()) for c in columns}
    subject = _subject_text(df, subject_column, columns)
    id_key = subjects.id_key(keyring, table.scope).reveal()
    version = dek_version if dek_version is not None else keyring.active_dek(table.scope)[0]
    deks = _deks(keyring, table.scope)
    places = {c: table.place(c) for c in columns}
    prepared = df.select([
        _canonical(df, f.name, tags[f.name]).alias(f.name) if f.name in tags else f"`{f.name}`"
        for f in df.schema.fields
    ])
    hashed = _hashed(prepared, subject, id_key)
    _refuse_erased(hashed, subjects.salts(table.scope))
    subjects.ensure_salts(table.scope, hashed, keyring.audit)
    ciphers = _worker_ciphers(table.scope, deks)

    def encrypt(name: str, values: list, hashes: list, salts: list, erased: list) -> list:
        from envelope_encryption.cell.subject import encrypt_subject_many

        return encrypt_subject_many(values, hashes, salts, erased, ciphers(), version,
                                    tags[name], places[name])

    joined = _with_salts(hashed, subjects.salts(table.scope), broadcast)
    return _map_subject_cells(joined, columns, encrypt, deterministic=False)


def _refuse_erased(hashed: DataFrame, salts: DataFrame) -> None:
    """Refuse input holding rows of erased subjects before anything is written or a salt
    created: an erased subject is not written again (the rows are counted, never named)."""
    from pyspark.sql import functions as F

    found = hashed.join(salts.where(F.col(_ERASED)), _HASH, "left_semi").count()
    if found:
        raise SubjectErased(
            f"{found} input row(s) belong to erased subjects: an erased subject is not "
            "written again. Nothing was written; remove those rows from the input (their "
            "subject's hash: SubjectStore.hash_of) and run again")


def _worker_ciphers(scope: str, deks: dict[int, bytes]):
    """A function giving the subject-key cache of the Python worker running it: created at
    the first batch a worker runs, then reused by its later batches and tasks."""
    import uuid

    token = uuid.uuid4().hex

    def ciphers():
        from envelope_encryption.cell.subject import worker_ciphers

        return worker_ciphers(token, scope, deks)

    return ciphers


def subject_type_tags(df: DataFrame, columns: Sequence[str]) -> dict[str, str]:
    """The type tag of each subject-keyed column, read from its first cell (string if none)."""
    from pyspark.sql import functions as F

    tags = {}
    for column in columns:
        col = F.col(f"`{column}`")
        row = df.where(col.rlike(SUBJECT_HEADER_REGEX)).select(
            F.regexp_extract(col, SUBJECT_HEADER_REGEX, 2).alias("tag")).limit(1).collect()
        tags[column] = canonical_type_tag(row[0]["tag"] if row else "string")
    return tags


def decrypt_subject_columns(
    df: DataFrame, columns: Sequence[str], *, keyring: Keyring, table: TableRef,
    subject_column: str, subjects: SubjectStore, strict: bool = True,
    types: Mapping[str, str] | None = None, broadcast: bool | None = None,
) -> DataFrame:
    """Decrypt subject-keyed cells of any enabled DEK version of the table's scope.

    ``strict=True`` fails the query on the first value that does not open, an erased
    subject's cell with :class:`~envelope_encryption.cell.subject.SubjectErased` naming the
    subject's hash; ``strict=False`` turns such values into NULL and reads the rest.
    Columns come back in their original type (from ``types`` or the cells' type tag).
    """
    guard_key_loggers()
    _check_columns(df, columns)
    for column in columns:
        if df.schema[column].dataType.simpleString() != "string":
            raise ConfigError(f"column {column} is not a STRING column of encrypted cells")
    subject = _subject_text(df, subject_column, columns)
    tags = dict(types) if types is not None else subject_type_tags(df, columns)
    tags = {c: canonical_type_tag(tags[c]) for c in columns}
    id_key = subjects.id_key(keyring, table.scope).reveal()
    ciphers = _worker_ciphers(table.scope, _deks(keyring, table.scope))
    places = {c: table.place(c) for c in columns}

    def decrypt(name: str, values: list, hashes: list, salts: list, erased: list) -> list:
        from envelope_encryption.cell.subject import decrypt_subject_many

        return decrypt_subject_many(values, hashes, salts, erased, ciphers(), places[name],
                                    strict=strict, expected_tag=tags[name])

    joined = _with_salts(_hashed(df, subject, id_key), subjects.salts(table.scope), broadcast)
    decrypted = _map_subject_cells(joined, columns, decrypt, deterministic=True)
    return decrypted.select([
        _typed(f.name, tags[f.name]).alias(f.name) if f.name in tags else f"`{f.name}`"
        for f in df.schema.fields
    ])
