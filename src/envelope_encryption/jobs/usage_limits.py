"""The usage limits of a job, from its settings (docs/usage-limits.md).

``--usage-table`` (default ``dek_usage``, or ``none``), ``--dek-usage-hard-limit``,
``--dek-usage-soft-limit`` and ``--auto-rotate`` build the :class:`UsageGuard` that the jobs
which encrypt (``encrypt_columns``, ``reencrypt_columns``) ask before each batch, and the
ledger ``status`` reads the counts from.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings, parse_bool
from ..keyring.usage import (
    TableUsageLedger,
    UsageGuard,
    UsageLedger,
    UsageLimits,
    parse_limit,
    usage_table_name,
)
from .common import JobContext


def usage_limits(settings: Settings) -> UsageLimits:
    """The configured limits, checked (1 <= soft <= hard <= 2^32)."""
    return UsageLimits(
        hard=parse_limit(settings.option("dek-usage-hard-limit"), "dek-usage-hard-limit"),
        soft=parse_limit(settings.option("dek-usage-soft-limit"), "dek-usage-soft-limit"),
        auto_rotate=parse_bool(settings.option("auto-rotate"), "auto-rotate"),
    )


def usage_ledger(ctx: JobContext) -> UsageLedger:
    """Where encryptions are counted: the usage table of the crypto schema (on every back
    end, aws-sm too), or this process only with ``--usage-table none``."""
    settings = ctx.settings
    run_id = settings.option("run-id")
    table = usage_table_name(settings.option("usage-table"))
    if table is None:
        return UsageLedger(run_id)
    return TableUsageLedger(ctx.spark, ctx.lakehouse, settings.catalog, settings.crypto_schema,
                            table, run_id)


def usage_guard(ctx: JobContext) -> UsageGuard:
    """The guard a job asks before each batch it encrypts (one per run)."""
    return UsageGuard(ctx.keyring, usage_ledger(ctx), usage_limits(ctx.settings))


@dataclass(frozen=True)
class UsageSummary:
    """The limits in force and where encryptions are counted, as ``status`` shows them."""

    table: str
    hard_limit: int
    soft_limit: int
    auto_rotate: bool

    def to_text(self) -> str:
        return (f"usage limits per DEK version: hard {self.hard_limit}, soft "
                f"{self.soft_limit} encryptions, auto-rotate "
                f"{'on' if self.auto_rotate else 'off'}; counted in {self.table}")


def usage_summary(ctx: JobContext) -> tuple[UsageSummary, dict[tuple[str, int], int] | None]:
    """The limits, and the encryptions recorded per (scope, version) (None when no usage
    table keeps them: ``--usage-table none``). Reads only; creates no table."""
    limits, ledger = usage_limits(ctx.settings), usage_ledger(ctx)
    summary = UsageSummary(ledger.description, limits.hard, limits.soft, limits.auto_rotate)
    return summary, (ledger.totals() if isinstance(ledger, TableUsageLedger) else None)
