"""What the outage tests share: snapshots, and the check that a job
failing in an outage changed nothing."""

from __future__ import annotations

import pytest

from envelope_encryption.errors import EnvelopeError, KeyServiceError
from envelope_encryption.jobs.common import build_context
from tests.faults.scenario import SCHEMA, table_snapshot
from tests.support.fault_proxy import FaultPlan


def keyring_records(settings, spark) -> list:
    with build_context(settings, spark) as ctx:
        return sorted(ctx.store.history(), key=lambda r: r.record_id)


def plaintext_deks(settings, spark) -> dict:
    """(scope, version) -> DEK bytes, through a fresh keyring (only compared, never shown)."""
    with build_context(settings, spark) as ctx:
        scope = settings.scope(SCHEMA)
        return {(scope, v): k.reveal() for v, k in ctx.keyring.deks(scope).items()}


def fails_and_changes_nothing(plan: FaultPlan, calls: int, job, settings, spark) -> str:
    """Run ``job`` with an outage after ``calls`` calls; it must fail with a project error and
    leave table and keyring as they were. Ends the outage. Returns the error's message."""
    table, keyring = table_snapshot(settings, spark), keyring_records(settings, spark)
    plan.start_outage_after(calls)
    with pytest.raises(EnvelopeError) as caught:
        job()
    assert plan.in_outage, "the job failed before the outage began"
    plan.heal()
    assert isinstance(caught.value, KeyServiceError), repr(caught.value)
    assert table_snapshot(settings, spark) == table
    assert keyring_records(settings, spark) == keyring
    return str(caught.value)


