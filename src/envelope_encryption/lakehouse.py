"""Where tables live: Databricks (Unity Catalog, Delta) or local Spark (session catalog, parquet).

Everything that writes SQL names tables through :class:`Lakehouse`, which validates and
quotes identifiers and hides the few dialect differences:

- Unity Catalog has three-part names ``catalog.schema.table``. Local Spark's session catalog
  has one level of databases, so ``catalog.schema`` maps to the database ``catalog__schema``.
- DDL is written without ``USING``: Databricks makes Delta tables, local Spark parquet.
- Column masks: Unity Catalog masks a table in place. Locally a masked table's rows move to
  ``<table>__unmasked`` and a view that applies the masks takes the table's name (see
  ``spark/sql/local_masks.py``). Reads use the table's name (:meth:`Lakehouse.table`), as
  on Databricks; writes go to :meth:`Lakehouse.storage_table`, as masks affect reads only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .identifiers import quote, validate_identifier

# Where a locally masked table keeps its rows; the table's own name is the masking view.
UNMASKED_SUFFIX = "__unmasked"
# The comment of the crypto schema, whichever of its tables creates it first.
CRYPTO_SCHEMA_COMMENT = "Envelope encryption: keyring and SQL functions. No grants for readers."

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def running_on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


@dataclass(frozen=True)
class Lakehouse:
    """Names and dialect for one Spark session."""

    databricks: bool

    @classmethod
    def detect(cls) -> Lakehouse:
        return cls(databricks=running_on_databricks())

    def schema(self, catalog: str, schema: str) -> str:
        if self.databricks:
            return f"{quote(catalog, 'catalog')}.{quote(schema, 'schema')}"
        validate_identifier(catalog, "catalog")
        validate_identifier(schema, "schema")
        return quote(f"{catalog}__{schema}", "schema")

    def table(self, catalog: str, schema: str, table: str) -> str:
        return f"{self.schema(catalog, schema)}.{quote(table, 'table')}"

    def ensure_schema(self, spark: SparkSession, catalog: str, schema: str, comment: str) -> None:
        spark.sql(
            f"CREATE SCHEMA IF NOT EXISTS {self.schema(catalog, schema)} COMMENT :comment",
            args={"comment": comment},
        )

    def ensure_crypto_table(self, spark: SparkSession, catalog: str, crypto_schema: str,
                            table: str, columns: str, comment: str, *,
                            append_only: bool = False) -> str:
        """Create a table of the crypto schema (and the schema) when missing; idempotent.
        ``columns`` is the DDL column list; returns the table's quoted name.
        ``append_only``: on Delta, ``delta.appendOnly`` (rows can be added, never updated or
        deleted through the table); local parquet has no such property."""
        self.ensure_schema(spark, catalog, crypto_schema, CRYPTO_SCHEMA_COMMENT)
        name = self.table(catalog, crypto_schema, table)
        properties = (" TBLPROPERTIES ('delta.appendOnly' = 'true')"
                      if append_only and self.databricks else "")
        spark.sql(f"CREATE TABLE IF NOT EXISTS {name} ({columns}) COMMENT :comment{properties}",
                  args={"comment": comment})
        return name

    def table_exists(self, spark: SparkSession, catalog: str, schema: str, table: str) -> bool:
        if self.databricks:
            name = f"{catalog}.{schema}.{table}"
        else:
            name = f"{catalog}__{schema}.{table}"
        return spark.catalog.tableExists(name)

    def storage_table(self, spark: SparkSession, catalog: str, schema: str, table: str) -> str:
        """The name to write a table's rows to: the table itself, except a locally masked
        table, whose rows live under ``<table>__unmasked`` (its name is the masking view)."""
        if not self.databricks and self.table_exists(spark, catalog, schema,
                                                     table + UNMASKED_SUFFIX):
            return self.table(catalog, schema, table + UNMASKED_SUFFIX)
        return self.table(catalog, schema, table)


class CryptoTable:
    """A table of the crypto schema that one component owns (the audit trail, the usage
    counts, the subject salts): named once, created on first use. Subclasses set
    ``COLUMNS`` (DDL column list), ``COMMENT`` and ``APPEND_ONLY``."""

    COLUMNS = ""
    COMMENT = ""
    APPEND_ONLY = False

    def __init__(self, spark: SparkSession, lakehouse: Lakehouse, catalog: str,
                 crypto_schema: str, table: str) -> None:
        self.spark = spark
        self.lakehouse = lakehouse
        self.catalog = catalog
        self.crypto_schema = crypto_schema
        self.table_name = table
        self.table = lakehouse.table(catalog, crypto_schema, table)
        self._ready = False

    def ensure(self) -> None:
        """Create the table when missing (append-only on Delta where so set); idempotent."""
        if not self._ready:
            self.lakehouse.ensure_crypto_table(
                self.spark, self.catalog, self.crypto_schema, self.table_name, self.COLUMNS,
                self.COMMENT, append_only=self.APPEND_ONLY)
            self._ready = True

    def exists(self) -> bool:
        """Whether the table exists (reading creates nothing)."""
        return self._ready or self.lakehouse.table_exists(
            self.spark, self.catalog, self.crypto_schema, self.table_name)
