"""A hard outage of the key service mid-run: the job fails with a clear project error, the
table and the keyring are exactly as before, and a re-run after the outage completes with
every value encrypted exactly once.

The outage is a :class:`FaultPlan` that lets N calls through and then refuses every call
(503 from the fault proxy in front of moto; dropped connections at the local Key Vault). The
clients' retry budgets are shrunk for these tests only (3 attempts instead of 10 on AWS, 2
quick retries on Azure), so an outage is declared in seconds instead of a minute; what is
retried and how errors are translated is the production code's.
"""

from __future__ import annotations

import pytest

from envelope_encryption.jobs import dek_generation, kek_setup
from tests.faults.outage import (
    fails_and_changes_nothing,
    keyring_records,
    plaintext_deks,
)
from tests.faults.scenario import (
    SCHEMA,
    Landing,
    assert_encrypted_exactly_once,
    encrypt,
    reencrypt,
)
from tests.support.fault_proxy import OUTAGE, FaultPlan


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["aws-kms", "aws-sm"])
def test_outage_mid_run_changes_nothing_and_a_rerun_completes(
        backend, faulty_backend, short_retries, spark, tmp_path):
    plan = FaultPlan(seed=1)
    landing = Landing(tmp_path / "landing", [])
    with faulty_backend(backend, plan) as settings:
        kek_setup.run(settings, spark)
        landing.add_batch(30)
        encrypt(settings, spark, landing)
        dek_generation.run(settings, spark, schema=SCHEMA)
        landing.add_batch(30)
        deks = plaintext_deks(settings, spark)
        # aws-kms: 2 Decrypts per encrypt/reencrypt, 1 GenerateDataKey per new DEK; aws-sm:
        # 4 and 5 GetSecretValue, and dek_generation's PutSecretValue comes after 3 reads.
        # The outage begins half-way (for dek_generation: at the write).
        half = {"aws-kms": {"encrypt": 1, "reencrypt": 1, "dek": 0},
                "aws-sm": {"encrypt": 2, "reencrypt": 3, "dek": 3}}[backend]
        messages = [
            fails_and_changes_nothing(plan, half["encrypt"],
                                      lambda: encrypt(settings, spark, landing), settings, spark),
        ]
        assert encrypt(settings, spark, landing).rows_written == 30  # the re-run
        messages.append(fails_and_changes_nothing(
            plan, half["reencrypt"], lambda: reencrypt(settings, spark), settings, spark))
        assert reencrypt(settings, spark).after == {2: 60 * 5}
        messages.append(fails_and_changes_nothing(
            plan, half["dek"], lambda: dek_generation.run(settings, spark, schema=SCHEMA),
            settings, spark))
        assert dek_generation.run(settings, spark, schema=SCHEMA).version == 3
        assert sorted(r.version for r in keyring_records(settings, spark)
                      if r.revision == 1) == [1, 2, 3]
        assert_encrypted_exactly_once(settings, spark, landing.rows)
        assert {k: v for k, v in plaintext_deks(settings, spark).items() if k in deks} == deks
    print(f"\n{backend}: outage refusals {plan.injected[OUTAGE]}; errors:\n  "
          + "\n  ".join(messages))
    for message in messages:
        assert "unavailable" in message and "run the job again" in message
