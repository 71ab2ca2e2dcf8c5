"""Outages that end a run part-way where "as before" is not the guarantee, or where the
client does not retry: rotate_kek is resumable (no DEK lost, the re-run finishes the
re-wrap), and a Key Vault dropping connections fails encrypt_columns at once, changing
nothing, after which a re-run completes.
"""

from __future__ import annotations

import pytest

from envelope_encryption.errors import KeyServiceError
from envelope_encryption.jobs import dek_generation, kek_setup, rotate_kek
from envelope_encryption.jobs.common import build_context
from tests.faults.outage import (
    fails_and_changes_nothing,
    keyring_records,
    plaintext_deks,
)
from tests.faults.scenario import SCHEMA, Landing, assert_encrypted_exactly_once, encrypt
from tests.support.fault_proxy import DROP, OUTAGE, FaultPlan


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["aws-kms", "aws-sm"])
def test_rotate_kek_outage_mid_rewrap_loses_no_key_and_the_rerun_finishes(
        backend, faulty_backend, short_retries, spark):
    """rotate_kek is resumable rather than atomic: each DEK's new wrapping is verified before
    it is stored, so an outage part-way leaves every DEK on a wrapping that unwraps to the same
    key, and the re-run finishes the re-wrap without rotating the KEK again."""
    plan = FaultPlan(seed=2)
    with faulty_backend(backend, plan) as settings:
        kek_setup.run(settings, spark)
        for _ in range(2):
            dek_generation.run(settings, spark, schema=SCHEMA)
        deks = plaintext_deks(settings, spark)
        before = keyring_records(settings, spark)
        # Outages beginning later and later, until one falls after some DEKs were re-wrapped
        # (the exact count of calls before that point depends on the back end). Every try
        # must fail with a project error and lose nothing.
        for calls in range(2, 80):
            plan.start_outage_after(calls)
            with pytest.raises(KeyServiceError):
                rotate_kek.run(settings, spark)
            plan.heal()
            partial = keyring_records(settings, spark)
            assert plaintext_deks(settings, spark) == deks
            assert {r.record_id for r in before} <= {r.record_id for r in partial}
            if len(partial) > len(before):
                break
        else:
            pytest.fail("no outage fell after a re-wrap")
        report = rotate_kek.run(settings, spark)
        assert report.rewrapped and report.already_current  # finished, did not start over
        with build_context(settings, spark) as ctx:
            current = ctx.store.current(settings.scope(SCHEMA))
            kek = ctx.kek.describe()
        assert {(r.wrapped.kek_id, r.wrapped.kek_version) for r in current} == {
            (kek.kek_id, kek.kek_version)}
        assert plaintext_deks(settings, spark) == deks


@pytest.mark.slow
def test_azure_dropped_connections_mid_encrypt_change_nothing_and_a_rerun_completes(
        faulty_backend, short_retries, spark, tmp_path):
    """Key Vault drops every connection from the second call of encrypt_columns on. azure-core
    does not retry a POST whose connection dropped (an unwrap is a POST), so the job fails at
    once, with the project's error; nothing is written; the re-run completes."""
    plan = FaultPlan(seed=3, outage_kind=DROP)
    landing = Landing(tmp_path / "landing", [])
    with faulty_backend("azure", plan) as settings:
        kek_setup.run(settings, spark)
        landing.add_batch(30)
        encrypt(settings, spark, landing)
        dek_generation.run(settings, spark, schema=SCHEMA)
        landing.add_batch(30)
        message = fails_and_changes_nothing(
            plan, 1, lambda: encrypt(settings, spark, landing), settings, spark)
        assert "cannot reach Key Vault" in message
        assert encrypt(settings, spark, landing).rows_written == 30
        assert_encrypted_exactly_once(settings, spark, landing.rows)
    print(f"\nazure: dropped {plan.injected[OUTAGE]} connection(s): {message}")
