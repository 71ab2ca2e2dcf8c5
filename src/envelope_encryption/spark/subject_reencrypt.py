"""Re-encrypt subject-keyed columns after a DEK rotation (erasure scopes).

A subject cell ``ee1:<v>:<type>+subj:<payload>`` of an older DEK version ``v`` moves to the
active version under the **same subject salt**: the new key is
``HKDF(DEK of the active version, same salt, ...)`` (:mod:`..cell.subject`), so rotating
the DEK never creates salts and erasing a subject keeps working on every version.

- Every cell read is authenticated under its subject's key, the ones kept under the active
  version too; a cell that does not open (wrong subject, moved, tampered, a subject without
  a salt) fails the query: nothing is rewritten from, or kept as, a value that could not be
  read.
- An **erased** subject's cells cannot be opened by anyone: they are left exactly as they
  are (never rewritten, never made readable), counted and reported, never an error.
- The batched re-encryption selects rows by their cells' version prefix; rows whose subject
  is erased would match it for ever, so :func:`live_subject_function` gives the predicate a
  function that excludes them, and a re-run selects nothing.

Subject keys are derived on the executors from the DEKs shipped in the UDF's closure (never
in a plan); subjects are named by their hash only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..cell.format import CELL_PREFIX
from ..cell.subject import (
    SUBJECT_HEADER_REGEX,
    SubjectCiphers,
    decrypt_subject_many,
    encrypt_subject_many,
    parse_subject_cell,
)
from ..errors import FormatError
from ..identifiers import quote
from ..keyring.keyring import Keyring
from ..keyring.subjects import SubjectStore
from ..lakehouse import Lakehouse
from ..logs import guard_key_loggers
from .cells_guard import CellCensus, NotCellsError, census_matching, require_job_group
from .columns import TableRef, _check_columns, _require_string_columns
from .subject_columns import (
    _deks,
    _hashed,
    _map_subject_cells,
    _subject_text,
    _with_salts,
    _worker_ciphers,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# A whole subject cell, for Spark's rlike (Java).
SUBJECT_CELL_RLIKE = SUBJECT_HEADER_REGEX + r"[A-Za-z0-9+/]+={0,2}\z"


def reencrypt_subject_many(
    values: Sequence[str | None], hashes: Sequence[str | None],
    salts: Sequence[bytes | None], erased: Sequence[bool | None], ciphers: SubjectCiphers,
    version: int, place: str,
) -> list[str | None]:
    """Move a batch of subject cells to DEK ``version``, each under its row's subject salt.

    NULL stays NULL. A value that is not a subject cell raises :class:`FormatError`. An
    erased subject's cell is kept unchanged. Every other cell is opened (strict: the first
    that does not open raises); those of other versions are sealed again under
    ``version``, with their own type tag."""
    opened: list[str | None] = [None] * len(values)
    tags: dict[int, str] = {}
    for position, value in enumerate(values):
        if value is None:
            continue
        try:
            cell_version, tag, _, _ = parse_subject_cell(value)
        except FormatError as error:
            raise FormatError(f"{error} (value {position} of its batch)") from None
        if erased[position]:
            continue  # no salt: no one can open it, so it stays exactly as it is
        opened[position] = value
        if cell_version != version:
            tags[position] = tag
    plains = decrypt_subject_many(opened, hashes, salts, erased, ciphers, place, strict=True)
    out = list(values)
    for tag in sorted(set(tags.values())):
        moving = [plains[p] if tags.get(p) == tag else None for p in range(len(values))]
        sealed = encrypt_subject_many(moving, hashes, salts, erased, ciphers, version, tag,
                                      place)
        for position, cell in enumerate(sealed):
            if moving[position] is not None:
                out[position] = cell
    return out


def reencrypt_subject_columns(
    df: DataFrame, columns: Sequence[str], *, keyring: Keyring, table: TableRef,
    subject_column: str, subjects: SubjectStore, dek_version: int | None = None,
    broadcast: bool | None = None,
) -> DataFrame:
    """Move the subject cells of ``columns`` to the active DEK version (or ``dek_version``,
    the version the usage limits reserved), each under its subject's salt; erased
    subjects' cells are kept as they are (see the module's doc). ``broadcast=True`` keeps
    the rows' partitioning (the salts are broadcast), which a rewrite file by file needs."""
    guard_key_loggers()
    _check_columns(df, columns)
    _require_string_columns(df, columns)
    subject = _subject_text(df, subject_column, columns)
    id_key = subjects.id_key(keyring, table.scope).reveal()
    version = dek_version if dek_version is not None \
        else keyring.active_dek(table.scope)[0]
    ciphers = _worker_ciphers(table.scope, _deks(keyring, table.scope))
    places = {c: table.place(c) for c in columns}

    def reencrypt(name: str, values: list, hashes: list, salts: list, erased: list) -> list:
        from envelope_encryption.spark.subject_reencrypt import reencrypt_subject_many

        return reencrypt_subject_many(values, hashes, salts, erased, ciphers(), version,
                                      places[name])

    joined = _with_salts(_hashed(df, subject, id_key), subjects.salts(table.scope), broadcast)
    return _map_subject_cells(joined, columns, reencrypt, deterministic=False)


def subject_keyed_columns(df: DataFrame, columns: Sequence[str]) -> list[str]:
    """The columns whose first cell is a subject cell (a column is keyed one way: by the
    scope's DEK or by subject; a mixed column is refused by the census of either path)."""
    from pyspark.sql import functions as F

    found = []
    for column in columns:
        if column not in df.columns:
            continue
        col = F.col(quote(column, "column"))
        first = df.where(col.startswith(CELL_PREFIX)).select(col.rlike(SUBJECT_HEADER_REGEX)
                                                        .alias("s")).limit(1).collect()
        if first and first[0]["s"]:
            found.append(column)
    return found


def require_subject_cells(
    spark: SparkSession, df: DataFrame, table: TableRef, columns: Sequence[str], *,
    lakehouse: Lakehouse, job_group: str, allow_null_columns: bool = False,
) -> CellCensus:
    """Refuse (:class:`NotCellsError`) unless ``columns`` of ``df`` hold subject cells only,
    read as cells (a masked table: the principal is in ``job_group``). Returns what was
    read, for :func:`~.cells_guard.checked_rewrite`."""

    name = f"{table.catalog}.{table.schema}.{table.table}"
    require_job_group(spark, lakehouse, table, job_group)
    census = census_matching(df, name, columns, SUBJECT_CELL_RLIKE)
    rows = census.rows
    for column, counts in census.columns.items():
        if counts.others:
            raise NotCellsError(
                f"{name}, column {column}: {counts.others} of {counts.non_null} non-NULL "
                "values are not subject-keyed cells (plaintext, a mask's output, or cells "
                "of the scope's key in a subject-keyed column). Nothing was changed")
        if rows and not counts.non_null and not allow_null_columns:
            raise NotCellsError(
                f"{name}, column {column}: every value is NULL, which is what a non-member "
                "reads through the default mask. Nothing was changed; if the column really "
                "holds no value, pass --allow-null-columns=true")
    return census


def live_subject_function(spark: SparkSession, keyring: Keyring, subjects: SubjectStore,
                          scope: str) -> str | None:
    """Register a temporary SQL function ``<name>(subject id as STRING)``: FALSE for an
    erased subject of ``scope``, TRUE otherwise (a NULL id too: its row then fails the
    rewrite). Returns its name, or None when no subject of the scope is erased. The id key
    travels in the function's closure, never in a plan; drop it with
    :func:`drop_live_subject_function`."""
    from pyspark.sql import functions as F

    erased = frozenset(r["subject_hash"] for r in subjects.salts(scope).where("erased")
                       .select("subject_hash").collect())
    if not erased:
        return None
    id_key = subjects.id_key(keyring, scope).reveal()

    def live(subject_id):  # no hints: Spark reads them to pick a UDF kind
        from envelope_encryption.cell.subject import subject_hash

        return subject_id is None or subject_hash(id_key, subject_id) not in erased

    name = f"_ee_live_subject_{uuid.uuid4().hex}"
    spark.udf.register(name, F.udf(live, "boolean"))
    return name


def drop_live_subject_function(spark: SparkSession, name: str | None) -> None:
    if name is not None:
        spark.sql(f"DROP TEMPORARY FUNCTION IF EXISTS {quote(name, 'function')}")


def live_condition(function: str, subject_column: str, alias: str = "") -> str:
    """SQL: the row's subject is not erased (``function`` from :func:`live_subject_function`)."""
    return (f"{quote(function, 'function')}(CAST({alias}{quote(subject_column, 'column')} "
            "AS STRING))")


def erased_cells_per_version(df: DataFrame, columns: Sequence[str], subject_column: str,
                             function: str | None) -> dict[int, int]:
    """Cells per DEK version of ``columns`` in rows whose subject is erased."""
    from .columns import cells_per_version

    if function is None:
        return {}
    return cells_per_version(df.where(f"NOT {live_condition(function, subject_column)}"),
                             columns)
