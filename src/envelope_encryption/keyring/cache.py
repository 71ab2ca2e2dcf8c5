"""The in-memory cache of unwrapped DEKs.

A :class:`DekCache` holds :class:`~envelope_encryption.secret.SecretKey` objects, never raw
bytes, keyed by what identifies one wrapping of one DEK: scope, version, the KEK (and its
version) that wrapped it, and a SHA-256 of the wrapped bytes. A cached key is therefore
only ever returned for the very record it was unwrapped from; a re-wrapped or tampered
record misses the cache and goes to the KEK provider.

The owner decides its lifetime: a :class:`~envelope_encryption.keyring.Keyring` makes one
(or is given one), so calls to the key service scale with the DEK versions a job touches,
not with rows. Nothing in the package keeps a cache in a global, except the SQL functions'
runtime (one per Python worker; see :mod:`envelope_encryption.spark.sql.runtime`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

from ..kek.base import WrapContext, WrappedDek
from ..secret import SecretKey

_CacheKey = tuple[str, int, str, str, bytes]


def _key(context: WrapContext, wrapped: WrappedDek) -> _CacheKey:
    return (context.scope, context.version, wrapped.kek_id, wrapped.kek_version,
            hashlib.sha256(wrapped.blob).digest())


class DekCache:
    """Unwrapped DEKs of one owner, thread-safe. Its repr shows a count, never a key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[_CacheKey, SecretKey] = {}

    def get(self, context: WrapContext, wrapped: WrappedDek) -> SecretKey | None:
        with self._lock:
            return self._keys.get(_key(context, wrapped))

    def put(self, context: WrapContext, wrapped: WrappedDek, dek: SecretKey) -> None:
        if not isinstance(dek, SecretKey):
            raise TypeError("DekCache holds SecretKey objects only")
        with self._lock:
            self._keys[_key(context, wrapped)] = dek

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
        # Never ship cached keys anywhere: a pickled cache arrives empty.
        return (DekCache, ())
