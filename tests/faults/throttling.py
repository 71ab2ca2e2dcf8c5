"""The check every throttling test makes: all jobs complete under a fault plan whose main
fault is 30 % throttling, and every value ends up encrypted exactly once."""

from __future__ import annotations

from tests.faults.scenario import Landing, assert_encrypted_exactly_once, run_every_job
from tests.support.fault_proxy import DROP, ERROR, SLOW, THROTTLE, FaultPlan

JOBS = ["kek_setup", "encrypt_columns", "dek_generation", "encrypt_columns", "rotate_kek",
        "reencrypt_columns", "status"]


def every_job_completes(backend: str, plan: FaultPlan, faulty_backend, spark,
                        tmp_path) -> None:
    landing = Landing(tmp_path / "landing", [])
    with faulty_backend(backend, plan) as settings:
        assert run_every_job(settings, spark, landing) == JOBS
        assert_encrypted_exactly_once(settings, spark, landing.rows)
    calls = plan.passed + plan.total_injected
    print(f"\n{backend}: {dict(plan.injected)} in {calls} calls; by operation: "
          f"{dict(sorted(plan.by_operation.items()))}")
    # Throttles were really injected, at about the set rate; the other faults too.
    assert plan.injected[THROTTLE] >= 5
    assert 0.15 <= plan.injected[THROTTLE] / calls <= 0.45
    assert plan.injected[ERROR] + plan.injected[SLOW] + plan.injected[DROP] >= 1
