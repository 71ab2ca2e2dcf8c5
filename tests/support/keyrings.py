"""Keyring helpers shared by the keyring, back-end and job tests."""

from __future__ import annotations

from envelope_encryption.keyring import Keyring


def restarted(keyring: Keyring) -> Keyring:
    """The keyring a new process would build: the same store, KEK and actor, and a new,
    empty DEK cache (so every DEK version is unwrapped again, once)."""
    return Keyring(keyring.store, keyring.kek, keyring.actor)


def append_signed(store, kek, record, actor: str = "test"):
    """Store ``record`` as the project's own code would: tagged under the keyring's integrity
    key (created when the keyring has none), as ``import_legacy`` stores what it imports."""
    from envelope_encryption.keyring.cache import DekCache
    from envelope_encryption.keyring.integrity import KeyringIntegrity

    integrity = KeyringIntegrity(store, kek, actor, DekCache())
    signed = integrity.sign(integrity.create(upgrade=False), record)
    store.append(signed)
    return signed
