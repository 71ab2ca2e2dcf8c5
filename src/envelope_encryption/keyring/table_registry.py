"""The registry of encrypted columns: which tables and columns each DEK scope encrypts.

``encrypt_columns`` registers the columns it writes in
``<catalog>.<crypto schema>.encrypted_columns``; ``retire_dek``, ``reencrypt_columns
--retire-legacy`` and ``status`` read it to know where a scope's cells live without being
told each time. Users edit it with the ``table_registry`` job (register a table written by
other means, unregister a dropped one).

The table holds names only (scope, table, column, the row key column), never key material
or data values. Every change is an INSERT of a new revision of a (table, column) entry, as
in the keyring table, so the same statements work on Delta and on local parquet (which has
no UPDATE) and the history of each entry stays readable; an entry's highest revision is its
current state. Registering what is already registered, with the same row key column, adds
no row.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..errors import ConcurrentModification, ConfigError
from ..identifiers import parse_key_scope, validate_identifier
from ..lakehouse import CryptoTable, Lakehouse

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

REGISTRY_TABLE = "encrypted_columns"

COLUMNS = """
    table_name STRING NOT NULL COMMENT 'Table <catalog>.<schema>.<table> holding the cells',
    column_name STRING NOT NULL COMMENT 'Encrypted column of the table',
    revision INT NOT NULL COMMENT 'Revision of the entry; the highest is current',
    scope STRING NOT NULL COMMENT 'DEK scope <catalog>.<schema> whose keys encrypt the column',
    row_key_column STRING NOT NULL COMMENT 'Column the cells are bound to; empty: not bound',
    active BOOLEAN NOT NULL COMMENT 'false: unregistered (no longer checked for cells)',
    first_registered_at TIMESTAMP NOT NULL COMMENT 'When the column was first registered',
    last_registered_at TIMESTAMP NOT NULL COMMENT 'When it was last registered',
    registered_by STRING NOT NULL COMMENT 'Who last registered it',
    modified_at TIMESTAMP NOT NULL COMMENT 'When this revision was written',
    modified_by STRING NOT NULL COMMENT 'Who wrote this revision',
    change_id STRING NOT NULL COMMENT 'Unique id of this revision'
"""
# (name, type) of each column, for the DataFrame of new revisions.
_FIELDS = [tuple(line.split()[:2]) for line in COLUMNS.strip().splitlines()]
_NAMES = [name for name, _ in _FIELDS]

# One change at a time in this driver: the read of the current entries and the INSERT of
# their new revisions must not interleave with another thread's (local parquet detects no
# conflicting commit). Across drivers, the INSERT's NOT EXISTS guard and Delta's conflict
# detection keep one revision per number; the read-back reports a lost race.
_CHANGE_LOCK = threading.Lock()


@dataclass(frozen=True)
class RegisteredColumn:
    """The current state of one (table, column) entry."""

    table_name: str
    column_name: str
    revision: int
    scope: str
    row_key_column: str
    active: bool
    first_registered_at: datetime
    last_registered_at: datetime
    registered_by: str
    modified_at: datetime
    modified_by: str
    change_id: str


def qualified_table(catalog: str, schema: str, table: str) -> str:
    """The registry's spelling of a table: ``catalog.schema.table``, each part validated."""
    return ".".join(validate_identifier(part, what) for part, what in
                    ((catalog, "catalog"), (schema, "schema"), (table, "table")))


class TableRegistry(CryptoTable):
    """The registry table of one catalog's crypto schema."""

    COLUMNS = COLUMNS
    COMMENT = "Tables and columns each DEK scope encrypts (no key material)"

    def __init__(self, spark: SparkSession, lakehouse: Lakehouse, catalog: str,
                 crypto_schema: str, actor: str, table: str = REGISTRY_TABLE) -> None:
        super().__init__(spark, lakehouse, catalog, crypto_schema, table)
        self.actor = actor
        self.name = table

    def entries(self, scope: str | None = None, *,
                include_inactive: bool = False) -> list[RegisteredColumn]:
        """The current entries (active only unless ``include_inactive``), sorted by table
        and column; empty when the table does not exist yet (reading creates nothing)."""
        if scope is not None:
            parse_key_scope(scope)
        if not self.exists():
            return []
        rows = self.spark.sql(
            f"""SELECT * FROM (
                  SELECT *, row_number() OVER (PARTITION BY table_name, column_name
                                               ORDER BY revision DESC) AS _rank
                  FROM {self.table}) WHERE _rank = 1"""
        ).collect()
        current = [RegisteredColumn(**{n: row[n] for n in _NAMES}) for row in rows]
        return sorted(
            (e for e in current
             if (include_inactive or e.active) and (scope is None or e.scope == scope)),
            key=lambda e: (e.table_name, e.column_name))

    def tables(self, scope: str | None = None) -> list[str]:
        """The tables with at least one active registered column (of ``scope``)."""
        return sorted({e.table_name for e in self.entries(scope)})

    def register(self, catalog: str, schema: str, table: str, columns: Sequence[str],
                 row_key_column: str = "", scope: str = "") -> list[RegisteredColumn]:
        """Register ``columns`` of a table as encrypted under ``scope``: its schema's
        (default), or an equality domain's (``catalog.$equality.domain``) for deterministic
        and blind-index columns. Returns the revisions written: none if every column is
        already registered as given."""
        name = qualified_table(catalog, schema, table)
        columns = [validate_identifier(c, "column") for c in columns]
        if not columns:
            raise ConfigError(f"no column to register for {name}")
        if row_key_column:
            validate_identifier(row_key_column, "row key column")
        scope = parse_key_scope(scope) if scope else f"{catalog}.{schema}"
        now = _now()
        with _CHANGE_LOCK:
            self.ensure()
            current = {e.column_name: e for e in self.entries(include_inactive=True)
                       if e.table_name == name}
            changes = []
            for column in dict.fromkeys(columns):
                before = current.get(column)
                if (before is not None and before.active and before.scope == scope
                        and before.row_key_column == row_key_column):
                    continue
                changes.append(RegisteredColumn(
                    name, column, before.revision + 1 if before else 1, scope,
                    row_key_column, True, before.first_registered_at if before else now,
                    now, self.actor, now, self.actor, _change_id()))
            self._insert(changes)
        return changes

    def unregister(self, catalog: str, schema: str, table: str,
                   columns: Sequence[str] = ()) -> list[RegisteredColumn]:
        """Mark ``columns`` of a table (all its columns if none given) unregistered. Returns
        the revisions written; unregistering what is not registered is refused."""
        name = qualified_table(catalog, schema, table)
        wanted = [validate_identifier(c, "column") for c in columns]
        now = _now()
        with _CHANGE_LOCK:
            active = {e.column_name: e for e in self.entries() if e.table_name == name}
            unknown = [c for c in wanted if c not in active]
            if not active or unknown:
                what = f"column(s) {', '.join(unknown)} of " if unknown else ""
                raise ConfigError(f"{what}{name} not registered: nothing to unregister")
            changes = [
                RegisteredColumn(
                    name, e.column_name, e.revision + 1, e.scope, e.row_key_column, False,
                    e.first_registered_at, e.last_registered_at, e.registered_by, now,
                    self.actor, _change_id())
                for column, e in sorted(active.items()) if not wanted or column in wanted]
            self._insert(changes)
        return changes

    def _insert(self, changes: list[RegisteredColumn]) -> None:
        if not changes:
            return
        rows = [tuple(getattr(c, n) for n in _NAMES) for c in changes]
        schema = ", ".join(f"{name} {kind}" for name, kind in _FIELDS)
        view = f"_registry_insert_{threading.get_ident()}"
        self.spark.createDataFrame(rows, schema=schema).createOrReplaceTempView(view)
        try:
            self.spark.sql(
                f"""INSERT INTO {self.table} ({', '.join(_NAMES)})
                SELECT {', '.join('n.' + n for n in _NAMES)} FROM {view} n
                WHERE NOT EXISTS (
                    SELECT 1 FROM {self.table} t
                    WHERE t.table_name = n.table_name AND t.column_name = n.column_name
                      AND t.revision >= n.revision)"""
            )
        finally:
            self.spark.catalog.dropTempView(view)
        stored = {e.change_id for e in self.entries(include_inactive=True)}
        lost = [c for c in changes if c.change_id not in stored]
        if lost:
            raise ConcurrentModification(
                f"{self.lakehouse.table(self.catalog, self.crypto_schema, self.name)}: "
                f"{', '.join(f'{c.table_name}.{c.column_name}' for c in lost)} changed by "
                "another writer first; run again")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _change_id() -> str:
    return str(uuid.uuid4())
