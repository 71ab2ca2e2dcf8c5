"""The imported legacy DEKs of a scope, in the order legacy cells are tried: newest first."""

from __future__ import annotations

from ..keyring.base import LEGACY_KEY_TYPE
from ..keyring.keyring import Keyring
from ..secret import SecretKey


def legacy_deks(keyring: Keyring, scope: str) -> list[tuple[int, SecretKey]]:
    """(version, DEK) of every legacy version that decrypts of ``scope``, newest first. A legacy
    cell names no version, so each is tried in this order (cell/legacy.py)."""
    records = [r for r in keyring.versions(scope)
               if r.key_type == LEGACY_KEY_TYPE and r.decrypts]
    return [(r.version, keyring.dek(scope, r.version)) for r in reversed(records)]
