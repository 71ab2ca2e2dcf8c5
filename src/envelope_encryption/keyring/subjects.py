"""The subject table: one random salt per data subject of a scope (``dek_subjects``).

A scope whose columns are keyed by a subject (``--subject-column``) derives each subject's
key from the scope's DEK and the subject's salt (:mod:`..cell.subject`). The salts live in
``<catalog>.<crypto schema>.dek_subjects``; erasing a subject removes its salt, after which
its cells cannot be opened by anyone (crypto-shredding), while every other subject's still
can. See ``docs/erasure-scopes.md``.

Subjects are named by their hash (HMAC of the id under a key derived from the keyring's
integrity key), never in clear: not in the table, the audit trail, the logs or errors.

Creating salts (first encryption of a subject): one guarded ``INSERT ... WHERE NOT EXISTS``
of every new subject of a batch, then a read-back. Two writers creating the same subject:
on Delta, the INSERT reads the rows the other writer appends, so Delta's conflict detection
fails one of the two commits (``ConcurrentAppendException``) and its run fails before it
encrypts anything; its re-run finds the winner's salt. In one driver a lock serializes the
INSERTs (local parquet detects no conflicts). Encryption only ever uses the salts read back
after the INSERT, and readers take one row per subject (the earliest), so one salt is used.

Erasing: on Delta an ``UPDATE`` sets the salt to NULL and ``erased_at`` (the row stays as a
tombstone, so a strict read names the erased subject and a later write of the subject is
refused); the salt's bytes stay in older Delta files until ``VACUUM`` (``docs/key-lifecycle.md``).
Locally (parquet, no UPDATE) the table is rewritten without the salt.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..cell.subject import SALT_BYTES, subject_hash, subject_id_key
from ..errors import ConfigError, KeyringError
from ..identifiers import parse_scope
from ..lakehouse import CryptoTable, Lakehouse
from ..secret import SecretKey
from .audit import AuditLog

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from .keyring import Keyring

SUBJECT_TABLE = "dek_subjects"

COLUMNS = """
    scope STRING NOT NULL COMMENT 'DEK scope <catalog>.<schema>',
    subject_hash STRING NOT NULL COMMENT 'HMAC of the subject id (never the id itself)',
    salt BINARY COMMENT 'Random salt of the subject key; NULL once the subject is erased',
    created_at TIMESTAMP NOT NULL COMMENT 'When the salt was created',
    erased_at TIMESTAMP COMMENT 'When the subject was erased (NULL: not erased)',
    salt_id STRING NOT NULL COMMENT 'Unique id of the row'
"""
_NAMES = ["scope", "subject_hash", "salt", "created_at", "erased_at", "salt_id"]

# One change at a time in this driver (local parquet detects no conflicting commit).
_CHANGE_LOCK = threading.Lock()


def _random_salt(marker):  # a column function's body, run on the executors
    import os

    return os.urandom(SALT_BYTES)


class SubjectStore(CryptoTable):
    """The salts of every subject of the scopes of one crypto schema."""

    COLUMNS = COLUMNS
    COMMENT = "Salts of per-subject keys (erasure scopes); subjects named by hash only"

    def __init__(self, spark: SparkSession, lakehouse: Lakehouse, catalog: str,
                 crypto_schema: str, table: str = SUBJECT_TABLE) -> None:
        super().__init__(spark, lakehouse, catalog, crypto_schema, table)

    @staticmethod
    def id_key(keyring: Keyring, scope: str) -> SecretKey:
        """The key hashing the subject ids of ``scope`` (no key-service call: the keyring's
        integrity key is unwrapped once per keyring anyway)."""
        parse_scope(scope)
        return subject_id_key(keyring.integrity.require().key, scope)

    def hash_of(self, keyring: Keyring, scope: str, subject_id: str) -> str:
        """The subject hash of one id (its canonical string, Spark's CAST AS STRING)."""
        return subject_hash(self.id_key(keyring, scope).reveal(), subject_id)

    def salts(self, scope: str) -> DataFrame:
        """One row per subject of ``scope``: (subject_hash, salt, erased). A subject with two
        rows (writers raced where nothing detects it) reads as its earliest; an erased row
        makes the subject erased."""
        from pyspark.sql import functions as F

        self.ensure()
        rows = self.spark.table(self.table).where(F.col("scope") == F.lit(scope))
        return rows.groupBy("subject_hash").agg(
            F.min_by("salt", F.struct("created_at", "salt_id")).alias("salt"),
            F.max(F.col("erased_at").isNotNull()).alias("erased"),
        ).select("subject_hash", F.when(F.col("erased"), F.lit(None).cast("binary"))
                 .otherwise(F.col("salt")).alias("salt"), "erased")

    def ensure_salts(self, scope: str, hashes: DataFrame, audit: AuditLog) -> int:
        """Create a salt for every subject of ``hashes`` (a column ``subject_hash``) that has
        none; returns how many were created. Salts are drawn on the executors from the OS
        CSPRNG and never reach the driver."""
        from pyspark.sql import functions as F

        self.ensure()
        parse_scope(scope)
        known = self.spark.table(self.table).where(F.col("scope") == F.lit(scope)) \
            .select("subject_hash")
        salt = F.udf(_random_salt, "binary").asNondeterministic()
        now = datetime.now(timezone.utc)
        fresh = (hashes.select("subject_hash").where(F.col("subject_hash").isNotNull())
                 .distinct().join(known, "subject_hash", "left_anti")
                 .select(F.lit(scope).alias("scope"), "subject_hash",
                         salt(F.col("subject_hash")).alias("salt"),
                         F.lit(now).alias("created_at"),
                         F.lit(None).cast("timestamp").alias("erased_at"),
                         F.expr("uuid()").alias("salt_id")))
        view = f"_subjects_new_{uuid.uuid4().hex}"
        with _CHANGE_LOCK, audit.attempt("subject_salts_created", scope=scope) as facts:
            before = self._count(scope)
            fresh.createOrReplaceTempView(view)
            try:
                self.spark.sql(
                    f"INSERT INTO {self.storage} SELECT n.* FROM {view} n WHERE NOT EXISTS ("
                    f"SELECT 1 FROM {self.table} t WHERE t.scope = n.scope "
                    "AND t.subject_hash = n.subject_hash)")
            finally:
                self.spark.catalog.dropTempView(view)
            created = self._count(scope) - before
            facts["detail"] = f"{created} new subject salt(s)"
        return created

    def erase(self, scope: str, hashed: str, audit: AuditLog) -> str:
        """Erase one subject: its salt is removed (NULL), a tombstone row kept. Idempotent:
        erasing an erased subject changes nothing; erasing one never written records a
        tombstone, so its later writes are refused too. Returns what was done."""
        from pyspark.sql import functions as F

        parse_scope(scope)
        if len(hashed) != 32 or any(c not in "0123456789abcdef" for c in hashed):
            raise ConfigError("a subject hash is 32 lowercase hex characters")
        self.ensure()
        with _CHANGE_LOCK, audit.attempt("subject_erased", scope=scope) as facts:
            facts["detail"] = f"subject {hashed}"
            rows = self.spark.table(self.table).where(
                (F.col("scope") == F.lit(scope)) & (F.col("subject_hash") == F.lit(hashed))
            ).select("salt", "erased_at").collect()
            if rows and all(r["salt"] is None and r["erased_at"] is not None for r in rows):
                outcome = "already erased: no change"
            elif not rows:
                self._insert_tombstone(scope, hashed)
                outcome = "no salt: tombstone recorded"
            else:
                self._remove_salt(scope, hashed)
                outcome = "salt removed"
            facts["detail"] = f"subject {hashed}: {outcome}"
        return outcome

    # -- helpers ---------------------------------------------------------------------------

    @property
    def storage(self) -> str:
        return self.lakehouse.storage_table(self.spark, self.catalog, self.crypto_schema,
                                            self.table_name)

    def _count(self, scope: str) -> int:
        return self.spark.sql(f"SELECT count(*) AS n FROM {self.table} WHERE scope = :scope",
                              args={"scope": scope}).first()["n"]

    def _insert_tombstone(self, scope: str, hashed: str) -> None:
        self.spark.sql(
            f"INSERT INTO {self.storage} ({', '.join(_NAMES)}) VALUES (:scope, :hash, NULL, "
            "current_timestamp(), current_timestamp(), :id)",
            args={"scope": scope, "hash": hashed, "id": str(uuid.uuid4())})

    def _remove_salt(self, scope: str, hashed: str) -> None:
        match = "scope = :scope AND subject_hash = :hash"
        args = {"scope": scope, "hash": hashed}
        if self.lakehouse.databricks:
            self.spark.sql(
                f"UPDATE {self.table} SET salt = NULL, erased_at = coalesce(erased_at, "
                f"current_timestamp()) WHERE {match}", args=args)
            return
        # Local parquet has no UPDATE: rewrite the table without the salt. The rows are
        # materialized first (Spark refuses to overwrite a table it is reading).
        rewritten = self.spark.sql(
            f"SELECT scope, subject_hash, CASE WHEN {match} THEN NULL ELSE salt END AS salt, "
            f"created_at, CASE WHEN {match} THEN coalesce(erased_at, current_timestamp()) "
            f"ELSE erased_at END AS erased_at, salt_id FROM {self.table}", args=args
        ).localCheckpoint(eager=True)
        rewritten.write.insertInto(self.storage, overwrite=True)
        left = self.spark.sql(f"SELECT count(*) AS n FROM {self.table} WHERE {match} AND "
                              "salt IS NOT NULL", args=args).first()["n"]
        if left:
            raise KeyringError(f"subject {hashed}: the salt is still stored after the rewrite")
