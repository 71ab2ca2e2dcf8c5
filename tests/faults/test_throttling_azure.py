"""Every job completes on the azure back end while the local Key Vault throttles 30 % of the
calls (429 with ``Retry-After``) and, more rarely, answers 500/503/504 or answers slowly.
azure-core's retry policy absorbs all of it; every value is encrypted exactly once.

Not injected here, because azure-core does not retry them on a POST (every wrap, unwrap,
create and rotate is a POST): a dropped connection and a 502. ``test_outage.py`` shows what
they do (the job fails with a clear error, changes nothing, and a re-run completes).
"""

from __future__ import annotations

import pytest

from tests.faults.throttling import every_job_completes
from tests.support.fault_proxy import FaultPlan


@pytest.mark.slow
def test_every_job_completes_with_30_percent_throttling(faulty_backend, spark, tmp_path):
    plan = FaultPlan(seed=11, throttle=0.30, error=0.05, slow=0.05,
                     error_statuses=(500, 503, 504), max_faults=200, duration=600)
    every_job_completes("azure", plan, faulty_backend, spark, tmp_path)


def test_a_call_survives_more_than_three_throttles_in_a_row(vault):
    """azure-core stops after 3 bad statuses in a row unless told otherwise (retry_status);
    the provider allows as many as its retry_total, so a burst of 429s is waited out."""
    from envelope_encryption.kek.base import WrapContext
    from tests.support.azure_fixtures import make_provider

    provider = make_provider(vault)
    provider.ensure()
    context = WrapContext("main.sales", 1)
    dek, wrapped = provider.generate_dek(context)
    vault.inject(429, count=6, operations=["unwrapkey"], retry_after="0")
    assert provider.unwrap(wrapped, context) == dek
    assert vault.counts["unwrapkey"] == 7
