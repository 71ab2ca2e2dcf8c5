"""Usage limits per DEK version: how many values each version encrypted, and when to stop.

AES-GCM with random 96-bit IVs is safe only for a bounded number of encryptions per key
(NIST SP 800-38D, section 8.3: at most 2^32). Every job that encrypts (``encrypt_columns``
per micro-batch or per table INSERT, ``reencrypt_columns`` per table) calls
:meth:`UsageGuard.reserve` *before* it encrypts, with an upper bound of the values it is
about to encrypt (its non-NULL input values). The guard

- refuses (:class:`UsageLimitReached`, naming scope, version, used and limit) when the
  version's recorded count plus that bound would pass the hard limit, and records the
  refusal in the audit trail (``dek_usage_limit_reached``);
- with ``--auto-rotate true``, first creates a new DEK version when the active one has
  reached its soft limit (or the batch would not fit under the hard limit), records
  ``dek_rotated_on_usage``, and lets the batch go to the new version;
- records the bound in the usage ledger, then returns the version to encrypt with.

The bound is recorded before anything is encrypted or written, so a job that dies after
recording over-counts (safe: the version retires a little early); no path under-counts,
since every value encrypted is a non-NULL value of the input counted. Values kept as they
are (cells already under the version) are counted only where the caller says so
(``kept``). See docs/usage-limits.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..errors import ConfigError, KeyringError
from ..lakehouse import CryptoTable, Lakehouse
from .audit import NO_AUDIT_TABLE, audit_table_name
from .keyring import Keyring

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# NIST SP 800-38D 8.3: random 96-bit IVs, at most 2^32 invocations per key.
GCM_RANDOM_IV_BOUND = 2**32
# Defaults (docs/usage-limits.md): the hard limit keeps the chance of an IV collision under
# 2^-37, a quarter of the bound's budget leaving room for concurrent writers; the soft limit
# is where rotation starts (or warnings, without --auto-rotate).
DEFAULT_HARD_LIMIT = 2**30
DEFAULT_SOFT_LIMIT = 2**29
# The value of --usage-table that keeps no table: counts live in the process only.
NO_USAGE_TABLE = NO_AUDIT_TABLE

USAGE_COLUMNS = """
    scope STRING NOT NULL COMMENT 'DEK scope <catalog>.<schema>',
    version INT NOT NULL COMMENT 'DEK version that encrypted the values',
    encryptions BIGINT NOT NULL COMMENT 'Values encrypted (an upper bound: never fewer)',
    batch_id BIGINT COMMENT 'Micro-batch of a file source (a replay shows twice); else NULL',
    table_name STRING NOT NULL COMMENT 'Table the encrypted values were written to',
    run_id STRING NOT NULL COMMENT 'Databricks job run id (empty outside a job run)',
    recorded_at TIMESTAMP NOT NULL COMMENT 'When the count was recorded (UTC), before the write'
"""


class UsageLimitReached(KeyringError):
    """Encrypting more under a DEK version would pass its hard usage limit."""


@dataclass(frozen=True)
class UsageLimits:
    """The soft and hard limits of encryptions per DEK version, and whether to rotate."""

    hard: int = DEFAULT_HARD_LIMIT
    soft: int = DEFAULT_SOFT_LIMIT
    auto_rotate: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.hard <= GCM_RANDOM_IV_BOUND:
            raise ConfigError(f"--dek-usage-hard-limit must be in [1, 2^32 = "
                              f"{GCM_RANDOM_IV_BOUND}] (NIST SP 800-38D), not {self.hard}")
        if not 0 < self.soft <= self.hard:
            raise ConfigError(f"--dek-usage-soft-limit must be in [1, the hard limit "
                              f"{self.hard}], not {self.soft}")


def parse_limit(value: str, name: str) -> int:
    """A limit option as a whole number (``1073741824``, ``1_073_741_824`` or ``2^30``)."""
    text = value.strip().replace("_", "")
    try:
        if "^" in text:
            base, exponent = text.split("^", 1)
            return int(base) ** int(exponent)
        return int(text)
    except ValueError:
        raise ConfigError(f"--{name} must be a whole number such as 1073741824 or 2^30, "
                          f"not {value!r}") from None


class UsageLedger:
    """Encryptions per (scope, version) recorded by this process only (``--usage-table
    none``): the limits then hold within one run, not across runs."""

    description = "this process only (no usage table)"

    def __init__(self, run_id: str = "") -> None:
        self.run_id = run_id
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def used(self, scope: str, version: int) -> int:
        return self.totals().get((scope, version), 0)

    def totals(self) -> dict[tuple[str, int], int]:
        """Encryptions recorded per (scope, version)."""
        with self._lock:
            return dict(self._counts)

    def add(self, scope: str, version: int, encryptions: int, table_name: str,
            batch_id: int | None = None) -> None:
        with self._lock:
            self._counts[(scope, version)] = self._counts.get((scope, version), 0) + encryptions


class TableUsageLedger(UsageLedger, CryptoTable):
    """Encryptions per DEK version in ``<catalog>.<crypto schema>.<table>``, one row per
    batch (append-only on Delta), summed when read."""

    COLUMNS = USAGE_COLUMNS
    COMMENT = "Encryptions per DEK version (counts only, no key material)"
    APPEND_ONLY = True

    def __init__(self, spark: SparkSession, lakehouse: Lakehouse, catalog: str,
                 crypto_schema: str, table: str, run_id: str = "") -> None:
        UsageLedger.__init__(self, run_id)
        CryptoTable.__init__(self, spark, lakehouse, catalog, crypto_schema, table)
        self.description = f"{catalog}.{crypto_schema}.{table}"

    def used(self, scope: str, version: int) -> int:
        self.ensure()
        (row,) = self.spark.sql(
            f"SELECT coalesce(sum(encryptions), 0) AS used FROM {self.table} "
            "WHERE scope = :scope AND version = :version",
            args={"scope": scope, "version": version}).collect()
        return int(row["used"])

    def totals(self) -> dict[tuple[str, int], int]:
        if not self.exists():  # status reads; it creates nothing
            return {}
        rows = self.spark.sql(
            f"SELECT scope, version, sum(encryptions) AS used FROM {self.table} "
            "GROUP BY scope, version").collect()
        return {(r["scope"], r["version"]): int(r["used"]) for r in rows}

    def add(self, scope: str, version: int, encryptions: int, table_name: str,
            batch_id: int | None = None) -> None:
        self.ensure()
        with self._lock:  # one INSERT at a time: local parquet appends are not thread-safe
            # In the table's column order; a NULL marker has no type of its own: CAST.
            self.spark.sql(
                f"INSERT INTO {self.table} VALUES (:scope, :version, :encryptions, "
                "CAST(:batch_id AS BIGINT), :table_name, :run_id, :recorded_at)",
                args={"scope": scope, "version": version, "encryptions": encryptions,
                      "batch_id": batch_id, "table_name": table_name, "run_id": self.run_id,
                      "recorded_at": datetime.now(timezone.utc)})


def usage_table_name(value: str) -> str | None:
    """The usage table of ``--usage-table``: a validated name, or None for ``none``."""
    try:
        return audit_table_name(value)  # the same rule: a table name, or none
    except ConfigError:
        raise ConfigError(f"--usage-table must be a table name or {NO_USAGE_TABLE!r}, not "
                          f"{value!r}") from None


class UsageGuard:
    """Checks each batch against the limits before it is encrypted, and counts it."""

    def __init__(self, keyring: Keyring, ledger: UsageLedger, limits: UsageLimits) -> None:
        self.keyring = keyring
        self.ledger = ledger
        self.limits = limits

    def reserve(self, scope: str, table_name: str, values: int,
                kept: Mapping[int, int] | None = None, batch_id: int | None = None) -> int:
        """The DEK version to encrypt the next batch with, its ``values`` counted.

        ``values``: an upper bound of the values the batch encrypts (its non-NULL input
        values); ``kept``: of those, how many are already cells of each version and stay as
        they are; ``batch_id``: the micro-batch, recorded with the count. Raises
        :class:`UsageLimitReached` (nothing counted) when the batch would pass the hard
        limit; rotates first with ``auto_rotate`` (see the module's doc).
        """
        kept = kept or {}
        version = self.keyring.active(scope).version
        used = self.ledger.used(scope, version)
        needed = max(0, values - kept.get(version, 0))
        limits = self.limits
        if limits.auto_rotate and needed and (used >= limits.soft
                                              or used + needed > limits.hard):
            version, used = self._rotate(scope, table_name, version, used, needed)
            needed = max(0, values - kept.get(version, 0))
        if used + needed > limits.hard:
            with self.keyring.audit.attempt(
                    "dek_usage_limit_reached", scope=scope, key_version=version,
                    table_name=table_name):
                raise UsageLimitReached(
                    f"DEK {scope} v{version} has encrypted {used} value(s); {needed} more "
                    f"would pass its hard usage limit of {limits.hard} (AES-GCM random IVs, "
                    "docs/usage-limits.md). Nothing of this batch was encrypted. Create a new "
                    "DEK version (dek_generation), or set --auto-rotate true")
        if used + needed >= limits.soft:
            log.warning("DEK %s v%d has encrypted %d of its soft usage limit %d (hard %d): "
                        "rotate it (dek_generation, or --auto-rotate true)", scope, version,
                        used + needed, limits.soft, limits.hard)
        if needed:
            self.ledger.add(scope, version, needed, table_name, batch_id)
        return version

    def _rotate(self, scope: str, table_name: str, version: int, used: int,
                needed: int) -> tuple[int, int]:
        """Create the next DEK version because ``version`` is used up; (new version, its use)."""
        reason = (f"v{version} has encrypted {used} value(s), soft limit {self.limits.soft}, "
                  f"hard limit {self.limits.hard}; next batch {needed}")
        with self.keyring.audit.attempt("dek_rotated_on_usage", scope=scope,
                                        key_version=version, table_name=table_name,
                                        detail=reason) as facts:
            created = self.keyring.create_version(scope)
            facts["detail"] = f"{reason}; v{created.version} is now active"
        log.info("rotated DEK %s on usage: v%d -> v%d", scope, version, created.version)
        return created.version, self.ledger.used(scope, created.version)
