"""aws-sm: a KEK version read by a long-running process is kept for the cache's maximum age
only, so removing the KEK secret stops that process within that time (moto server)."""

from __future__ import annotations

import os

import pytest

from envelope_encryption.errors import KeyNotFound
from envelope_encryption.kek import WrapContext
from envelope_encryption.kek.aws.secrets_manager import SecretsManagerKekProvider
from envelope_encryption.keyring.cache import DekCache
from envelope_encryption.secret import SecretKey
from tests.support.aws_fixtures import KEK_SECRET

CTX = WrapContext("main.sales", 1)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_removed_kek_secret_stops_a_running_process_within_the_max_age(sm):
    clock = Clock()
    kek = SecretsManagerKekProvider(sm, KEK_SECRET, max_age_seconds=60, clock=clock)
    kek.ensure()
    dek = SecretKey(os.urandom(32))
    wrapped = kek.wrap(dek, CTX)
    cache = DekCache(60, clock=clock)
    assert cache.get_or_unwrap(CTX, wrapped, kek.unwrap) == dek

    sm.delete_secret(SecretId=KEK_SECRET, ForceDeleteWithoutRecovery=True)  # revoked
    clock.now = 59
    assert cache.get_or_unwrap(CTX, wrapped, kek.unwrap) == dek  # still within the max age
    clock.now = 60
    with pytest.raises(KeyNotFound):
        cache.get_or_unwrap(CTX, wrapped, kek.unwrap)
    # A new process fails at once.
    with pytest.raises(KeyNotFound):
        SecretsManagerKekProvider(sm, KEK_SECRET).unwrap(wrapped, CTX)
