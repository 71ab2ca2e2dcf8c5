"""Legacy cells of several imported versions: each opens with the key whose GCM tag verifies."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envelope_encryption.cell.batch import decrypt_many, reencrypt_many
from envelope_encryption.cell.legacy import legacy_key_index, open_legacy, open_legacy_cell
from envelope_encryption.errors import DecryptionError, FormatError

OLD, NEW, OTHER = os.urandom(32), os.urandom(32), os.urandom(32)


def notebook_cell(value: str, key: bytes) -> str:
    """What Spark's base64(aes_encrypt(value, key, 'GCM', 'DEFAULT')) makes: IV, ciphertext,
    tag; no AAD."""
    iv = os.urandom(12)
    return base64.b64encode(iv + AESGCM(key).encrypt(iv, value.encode("utf-8"), None)).decode()


def test_each_cell_opens_with_its_own_version_newest_first():
    keys = (NEW, OLD)  # newest first
    assert open_legacy(notebook_cell("before 03_new_dek", OLD), keys) == ("before 03_new_dek", 1)
    assert open_legacy(notebook_cell("after 03_new_dek", NEW), keys) == ("after 03_new_dek", 0)
    assert open_legacy_cell(notebook_cell("one key", OLD), OLD) == "one key"


def test_no_key_or_a_tampered_cell_is_an_error_never_a_wrong_plaintext():
    cell = notebook_cell("x", OTHER)
    with pytest.raises(DecryptionError, match="any imported legacy DEK"):
        open_legacy(cell, (NEW, OLD))
    assert legacy_key_index(cell, (NEW, OLD)) is None
    good = base64.b64decode(notebook_cell("secret", OLD))
    flipped = base64.b64encode(good[:-1] + bytes([good[-1] ^ 1])).decode()
    with pytest.raises(DecryptionError):
        open_legacy(flipped, (NEW, OLD))
    with pytest.raises(FormatError):
        open_legacy("not base64!", (NEW, OLD))
    assert legacy_key_index("not base64!", (NEW, OLD)) is None


def test_batches_decrypt_and_reencrypt_legacy_cells_of_every_version():
    values = [notebook_cell("a", OLD), None, notebook_cell("b", NEW), notebook_cell("c", OTHER)]
    out = decrypt_many(values, {}, "main.s.t.c", strict=False, legacy_key=(NEW, OLD))
    assert out == ["a", None, "b", None]  # lenient: the cell no key opens reads as NULL
    with pytest.raises(DecryptionError, match="value 3 of its batch"):
        decrypt_many(values, {}, "main.s.t.c", strict=True, legacy_key=(NEW, OLD))
    active = os.urandom(32)
    moved = reencrypt_many(values[:3], {3: active}, active, 3, "main.s.t.c",
                           legacy_key=(NEW, OLD))
    assert moved[1] is None and all(c.startswith("ee1:3:string:") for c in (moved[0], moved[2]))
    assert decrypt_many(moved, {3: active}, "main.s.t.c", strict=True) == ["a", None, "b"]
