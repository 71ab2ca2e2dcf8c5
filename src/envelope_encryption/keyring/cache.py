"""The in-memory cache of unwrapped DEKs.

A :class:`DekCache` holds :class:`~envelope_encryption.secret.SecretKey` objects, never raw
bytes, keyed by what identifies one wrapping of one DEK: scope, version, the KEK (and its
version) that wrapped it, and a SHA-256 of the wrapped bytes. A cached key is therefore
only ever returned for the very record it was unwrapped from; a re-wrapped or tampered
record misses the cache and goes to the KEK provider.

**Maximum age.** An entry is served for at most ``max_age_seconds`` (default
:data:`DEFAULT_MAX_AGE_SECONDS`, the setting ``dek-cache-max-age-seconds``); after that the
record is unwrapped again, as the AWS Encryption SDK's caching materials manager does. So a
KEK that is disabled or revoked stops working in a long-running process (a UDF worker, a
streaming job) within that time, not at its restart. Five minutes: revocation takes effect
within a coffee break, while a DEK version costs at most 12 key-service calls per hour per
process, which stays independent of the number of rows.

The owner decides its lifetime: a :class:`~envelope_encryption.keyring.Keyring` makes one
(or is given one), so calls to the key service scale with the DEK versions a job touches,
not with rows. Nothing in the package keeps a cache in a global, except the SQL functions'
runtime (one per Python worker; see :mod:`envelope_encryption.spark.sql.runtime`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from ..config import Settings, cache_max_age
from ..kek.base import WrapContext, WrappedDek
from ..secret import SecretKey

_CacheKey = tuple[str, int, str, str, bytes]

DEFAULT_MAX_AGE_SECONDS = 300.0


def _key(context: WrapContext, wrapped: WrappedDek) -> _CacheKey:
    return (context.scope, context.version, wrapped.kek_id, wrapped.kek_version,
            hashlib.sha256(wrapped.blob).digest())


class DekCache:
    """Unwrapped DEKs of one owner, thread-safe. Its repr shows a count, never a key.

    ``max_age_seconds`` bounds how long an entry is served (must be > 0); ``clock`` (seconds,
    monotonic) is injectable for tests.
    """

    def __init__(self, max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not max_age_seconds > 0:
            raise ValueError("a DEK cache's maximum age must be a positive number of seconds")
        self.max_age_seconds = float(max_age_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[_CacheKey, tuple[SecretKey, float]] = {}

    def get(self, context: WrapContext, wrapped: WrappedDek) -> SecretKey | None:
        """The cached key, or None when absent or older than the maximum age (then dropped)."""
        key = _key(context, wrapped)
        with self._lock:
            entry = self._keys.get(key)
            if entry is None:
                return None
            dek, stored_at = entry
            if self._clock() - stored_at >= self.max_age_seconds:
                del self._keys[key]
                return None
            return dek

    def put(self, context: WrapContext, wrapped: WrappedDek, dek: SecretKey) -> None:
        if not isinstance(dek, SecretKey):
            raise TypeError("DekCache holds SecretKey objects only")
        with self._lock:
            self._keys[_key(context, wrapped)] = (dek, self._clock())

    def get_or_unwrap(
        self, context: WrapContext, wrapped: WrappedDek,
        unwrap: Callable[[WrappedDek, WrapContext], SecretKey],
    ) -> SecretKey:
        """The cached DEK, else ``unwrap(wrapped, context)``, cached.

        The unwrap runs outside the lock: two threads asking for the same new version may
        both unwrap it once (the same key), but no thread waits on another's service call.
        """
        cached = self.get(context, wrapped)
        if cached is not None:
            return cached
        dek = unwrap(wrapped, context)
        self.put(context, wrapped, dek)
        return dek

    def clear(self) -> None:
        """Forget every key (e.g. after retiring a KEK)."""
        with self._lock:
            self._keys.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def __repr__(self) -> str:
        return f"DekCache({len(self)} keys)"

    def __reduce__(self) -> tuple:
        # Never ship cached keys anywhere: a pickled cache arrives empty (same maximum age).
        return (DekCache, (self.max_age_seconds,))


def cache_from_settings(settings: Settings) -> DekCache:
    """A :class:`DekCache` with the maximum age of ``--dek-cache-max-age-seconds``."""
    return DekCache(cache_max_age(settings))
