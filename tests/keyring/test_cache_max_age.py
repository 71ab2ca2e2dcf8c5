"""The DEK cache's maximum age: a revoked KEK stops working in a long-running process."""

from __future__ import annotations

import os
import pickle

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError, KeyDisabled
from envelope_encryption.kek import WrapContext, WrappedDek
from envelope_encryption.keyring.cache import DEFAULT_MAX_AGE_SECONDS, DekCache, cache_from_settings
from envelope_encryption.secret import SecretKey


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_unwrapped_again_after_the_maximum_age():
    clock = Clock()
    cache = DekCache(60, clock=clock)
    ctx, wrapped = WrapContext("main.hr", 1), WrappedDek(b"w" * 60, "kek", "1")
    dek = SecretKey(os.urandom(32))
    revoked = False
    calls = []

    def unwrap(w, c):
        calls.append(clock.now)
        if revoked:
            raise KeyDisabled("KEK disabled")
        return dek

    assert cache.get_or_unwrap(ctx, wrapped, unwrap) is dek
    clock.now += 59
    assert cache.get_or_unwrap(ctx, wrapped, unwrap) is dek  # still fresh: no call
    assert calls == [1000.0]
    revoked = True  # the KEK is disabled now
    clock.now += 1  # the entry reaches its maximum age
    with pytest.raises(KeyDisabled):
        cache.get_or_unwrap(ctx, wrapped, unwrap)
    assert len(cache) == 0  # the expired key is dropped, not kept around
    assert calls == [1000.0, 1060.0]


def test_default_and_setting():
    assert DEFAULT_MAX_AGE_SECONDS == 300
    assert DekCache().max_age_seconds == 300
    assert cache_from_settings(Settings()).max_age_seconds == 300
    settings = Settings(options={"dek-cache-max-age-seconds": "30"})
    assert cache_from_settings(settings).max_age_seconds == 30
    for bad in ("0", "-5", "abc", "100000"):
        with pytest.raises(ConfigError, match="dek-cache-max-age-seconds"):
            cache_from_settings(Settings(options={"dek-cache-max-age-seconds": bad}))
    with pytest.raises(ValueError):
        DekCache(0)
    # A pickled cache arrives empty but keeps its maximum age.
    assert pickle.loads(pickle.dumps(DekCache(42))).max_age_seconds == 42
