"""Legacy cells of every imported version: try the scope's legacy keys, newest first.

The original notebooks wrote ``base64(aes_encrypt(value, dek, 'GCM', 'DEFAULT'))``: no
header, no associated data, so no key version. A scope may hold several imported legacy DEKs
(the notebooks' ``03_new_dek`` added versions, and their ``decrypt`` only tried the latest).
A legacy cell is opened by trying each legacy key, newest first, and accepting the one whose
GCM tag verifies: with a 128-bit tag, a wrong key is accepted with probability 2^-128 per try.

Nothing here logs, and no error message contains a value, a plaintext or a key.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import DecryptionError, FormatError
from .format import IV_BYTES, _strict_b64decode, decode_plaintext

LegacyKeys = bytes | Sequence[bytes]


def _keys(keys: LegacyKeys) -> Sequence[bytes]:
    # One key (bytes) is the form callers used before several legacy versions were read.
    return (keys,) if isinstance(keys, bytes | bytearray) else keys


def _open(value: str, keys: LegacyKeys) -> tuple[bytes, int] | None:
    """(plaintext bytes, index of the key) of the first key whose tag verifies, or None."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    payload = _strict_b64decode(value)
    nonce, sealed = payload[:IV_BYTES], payload[IV_BYTES:]
    for index, key in enumerate(_keys(keys)):
        try:
            return AESGCM(key).decrypt(nonce, sealed, None), index
        except InvalidTag:
            continue
    return None


def open_legacy(value: str, keys: LegacyKeys) -> tuple[str, int]:
    """(plaintext, index in ``keys`` of the key that opened it) of a legacy cell.

    ``keys``: the scope's legacy DEKs, newest first (or one key). A value that no key
    authenticates raises :class:`DecryptionError` (wrong keys or tampered); one that is not
    base64, or decrypts to bytes that are not UTF-8, a :class:`FormatError`.
    """
    opened = _open(value, keys)
    if opened is None:
        raise DecryptionError("legacy cell does not authenticate with any imported legacy "
                              "DEK: wrong key or tampered")
    return decode_plaintext(opened[0]), opened[1]


def open_legacy_cell(value: str, keys: LegacyKeys) -> str:
    """The plaintext of a legacy cell (see :func:`open_legacy`)."""
    return open_legacy(value, keys)[0]


def legacy_key_index(value: str, keys: LegacyKeys) -> int | None:
    """Which key (index in ``keys``) authenticates a legacy cell, or None when none does."""
    try:
        opened = _open(value, keys)
    except FormatError:
        return None
    return None if opened is None else opened[1]
