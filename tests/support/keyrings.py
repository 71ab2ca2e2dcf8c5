"""Keyring helpers shared by the keyring, back-end and job tests."""

from __future__ import annotations

from envelope_encryption.keyring import Keyring


def restarted(keyring: Keyring) -> Keyring:
    """The keyring a new process would build: the same store, KEK and actor, and a new,
    empty DEK cache (so every DEK version is unwrapped again, once)."""
    return Keyring(keyring.store, keyring.kek, keyring.actor)
