"""The ``status`` inventory as tables, one snapshot per run, for the key management dashboard.

``status --write-inventory true`` appends the inventory it reports to three tables of the crypto
schema (docs/dashboard.md):

- ``<catalog>.<crypto schema>.key_inventory``: one row per DEK scope and version (a scope
  whose records do not verify gets one row with its problem and no version);
- ``<catalog>.<crypto schema>.cell_inventory``: one row per counted table and DEK version,
  legacy versions flagged;
- ``<catalog>.<crypto schema>.usage_inventory``: one row per DEK scope and version, its
  encryptions (from the usage table, docs/usage-limits.md) against the soft and hard limits;
- ``<catalog>.<crypto schema>.domain_cell_inventory``: one row per registered column of an
  equality domain and domain key version, its deterministic cells or blind indexes
  (docs/equality.md).

Rows are appended, never updated: each run is a snapshot (``snapshot_time``, ``run_id``), so
the tables keep the history for trends, and a dashboard reads the latest snapshot. The rows
hold what ``status`` prints (scopes, versions, states, KEK ids, counts), never key material.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ..lakehouse import Lakehouse

KEY_INVENTORY = "key_inventory"
CELL_INVENTORY = "cell_inventory"
USAGE_INVENTORY = "usage_inventory"
DOMAIN_CELL_INVENTORY = "domain_cell_inventory"

KEY_INVENTORY_COLUMNS = """
    snapshot_time TIMESTAMP NOT NULL COMMENT 'When the status run took this snapshot (UTC)',
    run_id STRING NOT NULL COMMENT 'Databricks job run id (empty outside a job run)',
    scope STRING NOT NULL COMMENT 'DEK scope <catalog>.<schema>',
    version INT COMMENT 'DEK version (NULL when the scope did not verify)',
    state STRING COMMENT 'ENABLED, RETIRED, ... as the keyring verified it',
    active BOOLEAN COMMENT 'The version new cells are encrypted with',
    key_type STRING COMMENT 'Kind of DEK (current or imported legacy)',
    kek_id STRING COMMENT 'KEK that wraps this version (ARN, key URL, secret name)',
    kek_version STRING COMMENT 'KEK version that wraps this version',
    created_at TIMESTAMP COMMENT 'When the version was created (UTC)',
    created_by STRING COMMENT 'Principal that created the version',
    age_days INT COMMENT 'Whole days from created_at to snapshot_time',
    problem STRING NOT NULL COMMENT 'Why the scope did not verify (empty when it did)'
"""

CELL_INVENTORY_COLUMNS = """
    snapshot_time TIMESTAMP NOT NULL COMMENT 'When the status run took this snapshot (UTC)',
    run_id STRING NOT NULL COMMENT 'Databricks job run id (empty outside a job run)',
    table_name STRING NOT NULL COMMENT 'Counted table <catalog>.<schema>.<table>',
    version INT NOT NULL COMMENT 'DEK version the cells are encrypted with',
    legacy BOOLEAN NOT NULL COMMENT 'Header-less cells of the original notebooks',
    cells BIGINT NOT NULL COMMENT 'Cells of this version in the table'
"""

USAGE_INVENTORY_COLUMNS = """
    snapshot_time TIMESTAMP NOT NULL COMMENT 'When the status run took this snapshot (UTC)',
    run_id STRING NOT NULL COMMENT 'Databricks job run id (empty outside a job run)',
    scope STRING NOT NULL COMMENT 'DEK scope <catalog>.<schema>',
    version INT NOT NULL COMMENT 'DEK version',
    state STRING NOT NULL COMMENT 'ENABLED, RETIRED, ... as the keyring verified it',
    active BOOLEAN NOT NULL COMMENT 'The version new cells are encrypted with',
    encryptions BIGINT NOT NULL COMMENT 'Values encrypted under the version (usage table)',
    soft_limit BIGINT NOT NULL COMMENT 'Encryptions after which jobs warn or rotate',
    hard_limit BIGINT NOT NULL COMMENT 'Encryptions after which encrypting is refused'
"""

DOMAIN_CELL_INVENTORY_COLUMNS = """
    snapshot_time TIMESTAMP NOT NULL COMMENT 'When the status run took this snapshot (UTC)',
    run_id STRING NOT NULL COMMENT 'Databricks job run id (empty outside a job run)',
    scope STRING NOT NULL COMMENT 'Key scope of the equality domain <catalog>.$equality.<domain>',
    table_name STRING NOT NULL COMMENT 'Table <catalog>.<schema>.<table> of the column',
    column_name STRING NOT NULL COMMENT 'Registered column of the domain',
    version INT NOT NULL COMMENT 'Domain key version of the cells or indexes',
    cells BIGINT NOT NULL COMMENT 'Deterministic cells or blind indexes of this version'
"""

# Column order of the tables above, which the inserted rows follow.
KEY_FIELDS = ("snapshot_time", "run_id", "scope", "version", "state", "active", "key_type",
              "kek_id", "kek_version", "created_at", "created_by", "age_days", "problem")
CELL_FIELDS = ("snapshot_time", "run_id", "table_name", "version", "legacy", "cells")
USAGE_FIELDS = ("snapshot_time", "run_id", "scope", "version", "state", "active",
                "encryptions", "soft_limit", "hard_limit")
DOMAIN_CELL_FIELDS = ("snapshot_time", "run_id", "scope", "table_name", "column_name",
                      "version", "cells")


@dataclass(frozen=True)
class InventoryTables:
    """Where the snapshots go: the two tables of one crypto schema."""

    spark: SparkSession
    lakehouse: Lakehouse
    catalog: str
    crypto_schema: str

    def name(self, table: str) -> str:
        return self.lakehouse.table(self.catalog, self.crypto_schema, table)

    def ensure(self) -> None:
        """Create the schema and both tables when missing; idempotent."""
        for table, columns, comment in (
            (KEY_INVENTORY, KEY_INVENTORY_COLUMNS, "DEK versions per status snapshot"),
            (CELL_INVENTORY, CELL_INVENTORY_COLUMNS, "Cells per DEK version per status snapshot"),
            (USAGE_INVENTORY, USAGE_INVENTORY_COLUMNS,
             "Encryptions per DEK version against the usage limits, per status snapshot"),
            (DOMAIN_CELL_INVENTORY, DOMAIN_CELL_INVENTORY_COLUMNS,
             "Values per equality domain key version per registered column, per status "
             "snapshot"),
        ):
            self.lakehouse.ensure_crypto_table(self.spark, self.catalog, self.crypto_schema,
                                               table, columns, f"{comment} (no key material)")

    def append(self, key_rows: Iterable[Mapping[str, Any]],
               cell_rows: Iterable[Mapping[str, Any]],
               usage_rows: Iterable[Mapping[str, Any]] = (),
               domain_cell_rows: Iterable[Mapping[str, Any]] = ()) -> None:
        """Append one snapshot: rows with the fields of KEY_FIELDS, CELL_FIELDS,
        USAGE_FIELDS and DOMAIN_CELL_FIELDS (the inventory's rows, ``jobs/status.py``), all of
        the same ``snapshot_time``."""
        self.ensure()
        for table, fields, rows in (
            (KEY_INVENTORY, KEY_FIELDS, list(key_rows)),
            (CELL_INVENTORY, CELL_FIELDS, list(cell_rows)),
            (USAGE_INVENTORY, USAGE_FIELDS, list(usage_rows)),
            (DOMAIN_CELL_INVENTORY, DOMAIN_CELL_FIELDS, list(domain_cell_rows)),
        ):
            if rows:
                # The table's own schema types the rows, so they cannot drift from it.
                schema = self.spark.table(self.name(table)).schema
                frame = self.spark.createDataFrame([[r[f] for f in fields] for r in rows],
                                                   schema=schema)
                frame.write.insertInto(self.name(table))
