"""The audit trail of key operations: who did what to which key, when, and how it ended.

Every key operation of the project (a DEK created, retired or re-wrapped, the KEK created or
rotated, cells re-encrypted) is recorded as one :class:`AuditEvent`, including the ones that
were refused or failed. An event names scopes, versions, KEK ids, tables and counts, never
key material: no field ever holds a key, wrapped or plain, or a value of the data.

Where events go (``--audit-table``, docs/audit.md):

- the append-only table ``<catalog>.<crypto schema>.<audit table>`` (default ``key_audit``;
  Delta with ``delta.appendOnly``, so rows cannot be updated or deleted through the table),
  and always
- one JSON line per event on the ``envelope_encryption.audit`` logger, so the job's driver
  log holds the same trail when the table cannot be written (``--audit-table none`` turns
  the table off, e.g. for processes without Spark).

A failure to write the audit table fails the operation's job after the operation: an
operation that happened is never undone because its audit row could not be written, but the
job does not report success without its trail.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, EnvelopeError, KeyringError
from ..identifiers import validate_identifier
from ..lakehouse import CryptoTable, Lakehouse

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

AUDIT_LOGGER = "envelope_encryption.audit"
log = logging.getLogger(AUDIT_LOGGER)

# The value of --audit-table that keeps the trail in the job log only.
NO_AUDIT_TABLE = "none"

OK, REFUSED, FAILED = "ok", "refused", "failed"

COLUMNS = """
    event_id STRING NOT NULL COMMENT 'Unique id of the event',
    event_time TIMESTAMP NOT NULL COMMENT 'When the operation ended (UTC)',
    actor STRING NOT NULL COMMENT 'Principal that ran the operation',
    run_id STRING NOT NULL COMMENT 'Databricks job run id (empty outside a job run)',
    operation STRING NOT NULL COMMENT 'dek_created, dek_retired, dek_rewrapped, kek_created, ...',
    outcome STRING NOT NULL COMMENT 'ok, refused or failed',
    scope STRING NOT NULL COMMENT 'DEK scope <catalog>.<schema> (empty for KEK operations)',
    key_version INT COMMENT 'DEK version',
    kek_id STRING NOT NULL COMMENT 'KEK id (ARN, key URL, secret name)',
    kek_version STRING NOT NULL COMMENT 'KEK version',
    table_name STRING NOT NULL COMMENT 'Table whose cells the operation touched',
    detail STRING NOT NULL COMMENT 'What else an auditor needs: counts, previous state, error'
"""


@dataclass(frozen=True)
class AuditEvent:
    """One key operation as recorded. Never holds key material or data values."""

    operation: str
    outcome: str = OK
    scope: str = ""
    key_version: int | None = None
    kek_id: str = ""
    kek_version: str = ""
    table_name: str = ""
    detail: str = ""


class AuditLog:
    """Records key operations in the job log, and (:class:`TableAuditLog`) in a table."""

    def __init__(self, actor: str, run_id: str = "") -> None:
        self.actor = actor
        self.run_id = run_id

    def record(self, event: AuditEvent) -> None:
        row = {
            "event_id": str(uuid.uuid4()),
            "event_time": datetime.now(timezone.utc),
            "actor": self.actor,
            "run_id": self.run_id,
            **asdict(event),
        }
        log.info("%s", json.dumps(row, default=str, sort_keys=True))
        self._store(row)

    @contextmanager
    def attempt(self, operation: str, **facts: Any) -> Iterator[dict[str, Any]]:
        """Record ``operation`` when the block ends: ``ok``, or ``refused`` (the keyring or
        the configuration said no) / ``failed`` (anything else of the project's errors) with
        the error's message, which never holds key material. The block may add facts
        (``facts["key_version"] = 3``) as it learns them."""
        try:
            yield facts
        except EnvelopeError as error:
            outcome = REFUSED if isinstance(error, (KeyringError, ConfigError)) else FAILED
            try:
                self.record(AuditEvent(operation, outcome, **{
                    **facts, "detail": f"{type(error).__name__}: {error}"}))
            except Exception as audit_error:  # the operation's own error is what matters
                log.warning("could not record the %s audit event: %s", outcome,
                            type(audit_error).__name__)
            raise
        self.record(AuditEvent(operation, OK, **facts))

    def _store(self, row: Mapping[str, Any]) -> None:
        """Keep the event somewhere more durable than the log; the log-only trail keeps none."""


# One INSERT at a time in this driver: the local parquet table is not safe for concurrent
# appends from threads of one process (Delta is, across drivers too).
_INSERT_LOCK = threading.Lock()


class TableAuditLog(AuditLog, CryptoTable):
    """The audit trail in ``<catalog>.<crypto schema>.<table>``, one row per event."""

    COLUMNS = COLUMNS
    COMMENT = "Audit trail of key operations (no key material)"
    APPEND_ONLY = True

    def __init__(self, spark: SparkSession, lakehouse: Lakehouse, catalog: str,
                 crypto_schema: str, table: str, actor: str, run_id: str = "") -> None:
        AuditLog.__init__(self, actor, run_id)
        CryptoTable.__init__(self, spark, lakehouse, catalog, crypto_schema, table)

    def _store(self, row: Mapping[str, Any]) -> None:
        self.ensure()
        names = [name for name in row]
        with _INSERT_LOCK:
            self.spark.sql(
                f"INSERT INTO {self.table} ({', '.join(names)}) "
                f"VALUES ({', '.join(':' + name for name in names)})",
                args=dict(row),
            )

    def events(self) -> list[dict[str, Any]]:
        """Every recorded event, oldest first (for status, tests and the dashboard)."""
        self.ensure()
        rows = self.spark.table(self.table).orderBy("event_time", "event_id").collect()
        return [row.asDict() for row in rows]


def audit_table_name(value: str) -> str | None:
    """The audit table of ``--audit-table``: a validated name, or None for ``none``."""
    if value.strip().lower() == NO_AUDIT_TABLE:
        return None
    try:
        return validate_identifier(value, "audit table")
    except ConfigError:
        raise ConfigError(
            f"--audit-table must be a table name or {NO_AUDIT_TABLE!r}, not {value!r}"
        ) from None
