"""AES-256-GCM key wrap: the one implementation used by the local and aws-sm back ends.

A wrapped DEK is ``IV(12) || ciphertext(32) || tag(16)``; the associated data (the DEK's
scope and version, plus whatever the back end adds) is authenticated, not stored.
"""

from __future__ import annotations

import os

from ..secret import SecretKey
from .base import DEK_BYTES

IV_BYTES = 12
TAG_BYTES = 16
WRAPPED_BYTES = IV_BYTES + DEK_BYTES + TAG_BYTES


def seal(kek: SecretKey, dek: bytes, aad: bytes) -> bytes:
    """``dek`` wrapped under ``kek`` with a fresh random IV, ``aad`` authenticated."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    iv = os.urandom(IV_BYTES)
    return iv + AESGCM(kek.reveal()).encrypt(iv, dek, aad)


def unseal(kek: SecretKey, blob: bytes, aad: bytes) -> bytes | None:
    """The DEK bytes of ``blob``, or None when the tag does not verify (wrong KEK, wrong
    ``aad``, changed bytes). The caller checks ``len(blob) == WRAPPED_BYTES`` first, so it
    can say "truncated" rather than "tampered"."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(kek.reveal()).decrypt(blob[:IV_BYTES], blob[IV_BYTES:], aad)
    except InvalidTag:
        return None


def self_test(kek: SecretKey) -> bool:
    """Whether ``kek`` seals and unseals a random probe (checks a freshly read key)."""
    probe = os.urandom(DEK_BYTES)
    return unseal(kek, seal(kek, probe, b"probe"), b"probe") == probe
