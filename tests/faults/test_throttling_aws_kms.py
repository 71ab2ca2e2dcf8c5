"""Every job completes on the aws-kms back end while the fault proxy in front of moto throttles
30 % of the calls (status 400, ``ThrottlingException``) and, more rarely, answers 5xx, answers
slowly or drops the connection before the call reaches the service. boto3's adaptive retries
(``kek/aws/session.py``) absorb all of it; every value is encrypted exactly once."""

from __future__ import annotations

import pytest

from tests.faults.throttling import every_job_completes
from tests.support.fault_proxy import FaultPlan


@pytest.mark.slow
def test_every_job_completes_with_30_percent_throttling(faulty_backend, spark, tmp_path):
    plan = FaultPlan(seed=11, throttle=0.30, error=0.05, slow=0.05, drop=0.03,
                     max_faults=200, duration=600)
    every_job_completes("aws-kms", plan, faulty_backend, spark, tmp_path)
