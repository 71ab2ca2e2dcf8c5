"""DEK records in the Unity Catalog table ``<catalog>.<crypto schema>.dek_keyring``.

Written through Spark SQL, so the same statements make a Delta table on Databricks and a
parquet table locally. Every change is an INSERT of a new revision guarded by a
``NOT EXISTS`` on the same statement: on Delta, a concurrent writer of the same record makes
one of the two commits fail; the read-back then tells whether our row landed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConcurrentModification
from ..identifiers import parse_key_scope
from ..kek.base import WrappedDek
from ..lakehouse import Lakehouse
from .base import INTEGRITY_KEY_TYPE, DekRecord, DekState, DekStore, PurgeReport

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

COLUMNS = """
    record_id STRING NOT NULL COMMENT 'Unique id of this revision',
    key_alias STRING NOT NULL COMMENT 'DEK scope: <catalog>.<schema>',
    key_version INT NOT NULL COMMENT 'DEK version, 1, 2, ... per scope; named in every cell',
    revision INT NOT NULL COMMENT 'Revision of the record; the highest is current',
    key_state STRING NOT NULL COMMENT 'ENABLED, DECRYPT_ONLY, RETIRED or DESTROYED',
    key_type STRING NOT NULL COMMENT 'ENCRYPTED_DEK',
    wrapped_key BINARY NOT NULL COMMENT 'The DEK wrapped by the KEK (never plaintext)',
    kek_backend STRING NOT NULL COMMENT 'local, aws-kms, aws-sm or azure',
    kek_id STRING NOT NULL COMMENT 'The KEK that wrapped this DEK',
    kek_version STRING NOT NULL COMMENT 'The KEK version that wrapped this DEK',
    created_at TIMESTAMP NOT NULL,
    created_by STRING NOT NULL,
    modified_at TIMESTAMP NOT NULL,
    modified_by STRING NOT NULL,
    record_tag BINARY COMMENT 'HMAC of the record under the keyring integrity key',
    integrity STRING COMMENT 'Authenticated keyring metadata (integrity record only)'
"""
# Added after the first release: ensure() adds them to an existing table (nullable, so the
# change is additive and old rows read as untagged).
ADDED_COLUMNS = "record_tag BINARY, integrity STRING"
_INTEGRITY_FILTER = f"key_type = '{INTEGRITY_KEY_TYPE}'"


# One append at a time in this driver: a local parquet table detects no conflicting commit,
# and two threads' guarded INSERTs both landed the same new version. Across drivers, Delta's
# conflict detection refuses one of two commits that read the table.
_APPEND_LOCK = threading.Lock()


class TableDekStore(DekStore):
    def __init__(
        self,
        spark: SparkSession,
        catalog: str,
        crypto_schema: str = "crypto",
        table: str = "dek_keyring",
        lakehouse: Lakehouse | None = None,
    ) -> None:
        self.spark = spark
        self.catalog = catalog
        self.crypto_schema = crypto_schema
        self.lakehouse = lakehouse or Lakehouse.detect()
        self.table_name = table
        self.table = self.lakehouse.table(catalog, crypto_schema, table)
        self.description = f"table {catalog}.{crypto_schema}.{table}"
        self.identity = f"{catalog}.{crypto_schema}.{table}"

    def ensure(self) -> None:
        self.lakehouse.ensure_crypto_table(
            self.spark, self.catalog, self.crypto_schema, self.table_name, COLUMNS,
            "Wrapped data-encryption keys (envelope encryption keyring)")
        present = {field.name for field in self.spark.table(self.table).schema.fields}
        if "record_tag" not in present:
            self.spark.sql(f"ALTER TABLE {self.table} ADD COLUMNS ({ADDED_COLUMNS})")

    def history(self, scope: str | None = None) -> list[DekRecord]:
        query = f"SELECT * FROM {self.table} WHERE NOT ({_INTEGRITY_FILTER})"
        args = {}
        if scope is not None:
            parse_key_scope(scope)
            query += " AND key_alias = :scope"
            args["scope"] = scope
        return [_record(row) for row in self.spark.sql(query, args=args).collect()]

    def integrity_history(self) -> list[DekRecord]:
        rows = self.spark.sql(f"SELECT * FROM {self.table} WHERE {_INTEGRITY_FILTER}").collect()
        return [_record(row) for row in rows]

    def append(self, record: DekRecord) -> None:
        with _APPEND_LOCK:
            self._append(record)

    def _append(self, record: DekRecord) -> None:
        row = self.spark.createDataFrame([_row(record)], schema=f"struct<{COLUMNS_DDL}>")
        view = f"_keyring_append_{record.record_id.replace('-', '')}"
        row.createOrReplaceTempView(view)
        try:
            self.spark.sql(
                f"""
                INSERT INTO {self.table}
                SELECT n.* FROM {view} n
                WHERE NOT EXISTS (
                    SELECT 1 FROM {self.table} t
                    WHERE t.key_alias = n.key_alias AND t.key_version = n.key_version
                      AND t.revision >= n.revision)
                  AND (n.revision > 1 OR n.key_version = 1 + (
                    SELECT coalesce(max(t.key_version), 0) FROM {self.table} t
                    WHERE t.key_alias = n.key_alias))
                  AND (n.revision = 1 OR EXISTS (
                    SELECT 1 FROM {self.table} t
                    WHERE t.key_alias = n.key_alias AND t.key_version = n.key_version
                      AND t.revision = n.revision - 1))
                """
            )
        finally:
            self.spark.catalog.dropTempView(view)
        landed = self.spark.sql(
            f"SELECT count(*) AS n FROM {self.table} WHERE record_id = :id",
            args={"id": record.record_id},
        ).first()["n"]
        if landed != 1:
            raise ConcurrentModification(
                f"{self.description}: {record.scope} v{record.version} revision "
                f"{record.revision} was not stored: another writer changed it first"
            )


    def purge(self, scope: str, version: int, keep_record_id: str) -> PurgeReport:
        """Delete every row of ``(scope, version)`` but the tombstone ``keep_record_id``.

        On Databricks one ``DELETE`` (a Delta commit; the deleted rows stay in the table's
        earlier versions until ``VACUUM``: the purge_residue job). Locally (parquet, no
        DELETE) the table is rewritten without them from rows held in memory.
        """
        parse_key_scope(scope)
        where = "key_alias = :scope AND key_version = :version AND record_id <> :keep"
        args = {"scope": scope, "version": version, "keep": keep_record_id}
        with _APPEND_LOCK:
            doomed = self.spark.sql(f"SELECT count(*) AS n FROM {self.table} WHERE {where}",
                                    args=args).first()["n"]
            if doomed == 0:
                return PurgeReport()
            if self.lakehouse.databricks:
                self.spark.sql(f"DELETE FROM {self.table} WHERE {where}", args=args)
            else:
                self._rewrite_without(where, args)
        return PurgeReport(removed=[
            f"{doomed} earlier revision(s) from {self.description} (its Delta history keeps "
            "them until VACUUM: run purge_residue)"])

    def _rewrite_without(self, where: str, args: dict) -> None:
        table = self.spark.table(self.table)
        kept = self.spark.sql(f"SELECT * FROM {self.table} WHERE NOT ({where})",
                              args=args).collect()
        # Materialised in the driver first: parquet cannot overwrite a table it is reading.
        frame = self.spark.createDataFrame([tuple(row) for row in kept], schema=table.schema)
        frame.write.mode("overwrite").insertInto(self.table, overwrite=True)


# The table's columns without comments or NOT NULL, for the one-row DataFrame of an append.
COLUMNS_DDL = ", ".join(
    line.split(" COMMENT ")[0].replace(" NOT NULL", "").replace(" ", ":", 1).strip()
    for line in (part.strip() for part in COLUMNS.strip().split(",\n"))
)


def _row(record: DekRecord) -> tuple:
    return (
        record.record_id, record.scope, record.version, record.revision, record.state.value,
        record.key_type, bytearray(record.wrapped.blob), record.kek_backend,
        record.wrapped.kek_id, record.wrapped.kek_version, record.created_at,
        record.created_by, record.modified_at, record.modified_by,
        None if record.tag is None else bytearray(record.tag), record.integrity or None,
    )


def record_from_row(row: Mapping[str, Any]) -> DekRecord:
    """A record from a mapping of the keyring table's columns (a Row's ``asDict()``, or what
    the SQL functions pass as a ``named_struct``)."""
    return _record(_MappingRow(row))


class _MappingRow(dict):
    def asDict(self) -> dict:
        return dict(self)


def _record(row) -> DekRecord:
    extra = row.asDict()  # a table not yet upgraded by ensure() lacks the added columns
    tag = extra.get("record_tag")
    return DekRecord(
        scope=row["key_alias"],
        version=row["key_version"],
        wrapped=WrappedDek(bytes(row["wrapped_key"]), row["kek_id"], row["kek_version"]),
        kek_backend=row["kek_backend"],
        state=DekState(row["key_state"]),
        revision=row["revision"],
        created_by=row["created_by"],
        modified_by=row["modified_by"],
        created_at=row["created_at"],
        modified_at=row["modified_at"],
        record_id=row["record_id"],
        key_type=row["key_type"],
        tag=None if tag is None else bytes(tag),
        integrity=extra.get("integrity") or "",
    )
