"""Subject-keyed cells, pure: the published vectors, and every way a cell fails to open
(erased subject, unknown subject, wrong subject, moved, tampered, NULL subject), strict and
lenient; the bounded cache of derived keys."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from envelope_encryption.cell.subject import (
    SubjectCiphers,
    SubjectErased,
    decrypt_subject_many,
    encrypt_subject_many,
    is_subject_cell,
    new_salt,
    parse_subject_cell,
    subject_hash,
    subject_id_key,
    subject_key,
)
from envelope_encryption.errors import DecryptionError, FormatError, UnknownKeyVersion
from envelope_encryption.secret import SecretKey

VECTORS = json.loads((Path(__file__).parents[2] / "docs" / "cell-format-subject-vectors.json")
                     .read_text("utf-8"))["vectors"]
PLACE = "main.crm.orders.email"
H1, H2 = "1" * 32, "2" * 32


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vectors(vector):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    id_key = subject_id_key(SecretKey(bytes.fromhex(vector["integrity_key_hex"])),
                            vector["scope"]).reveal()
    assert id_key.hex() == vector["subject_id_key_hex"]
    hashed = subject_hash(id_key, vector["subject_id"])
    assert hashed == vector["subject_hash"]
    dek, salt = bytes.fromhex(vector["dek_hex"]), bytes.fromhex(vector["salt_hex"])
    key = subject_key(dek, salt, vector["scope"], vector["version"], hashed)
    assert key.hex() == vector["subject_key_hex"]
    iv = bytes.fromhex(vector["iv_hex"])
    payload = iv + AESGCM(key).encrypt(iv, vector["plaintext"].encode(), vector["aad"].encode())
    assert payload.hex() == vector["payload_hex"]
    assert vector["cell"] == vector["aad"][:-len(vector["place"])] + \
        base64.b64encode(payload).decode()
    ciphers = SubjectCiphers(vector["scope"], {vector["version"]: dek})
    assert decrypt_subject_many([vector["cell"]], [hashed], [salt], [False], ciphers,
                                vector["place"], strict=True,
                                expected_tag=vector["type"]) == [vector["plaintext"]]
    assert is_subject_cell(vector["cell"])
    assert parse_subject_cell(vector["cell"])[:2] == (vector["version"], vector["type"])


def _two_subjects():
    ciphers = SubjectCiphers("main.crm", {1: bytes(32)})
    salts = [new_salt(), new_salt()]
    cells = encrypt_subject_many(["a@x", "b@x", None], [H1, H2, H1], [*salts, salts[0]],
                                 [False, False, False], ciphers, 1, "string", PLACE)
    return ciphers, salts, cells


def test_each_subject_opens_only_with_its_own_salt():
    ciphers, salts, cells = _two_subjects()
    assert cells[2] is None and all(c.startswith("ee1:1:string+subj:") for c in cells[:2])
    assert decrypt_subject_many(cells, [H1, H2, H1], [*salts, salts[0]], [False] * 3, ciphers,
                                PLACE, strict=True) == ["a@x", "b@x", None]
    # Subject 1's cell in subject 2's row: refused, never subject 2's key opening it.
    with pytest.raises(DecryptionError, match=f"subject {H2}"):
        decrypt_subject_many([cells[0]], [H2], [salts[1]], [False], ciphers, PLACE,
                             strict=True)
    # Moved to another column: the place is bound.
    assert decrypt_subject_many([cells[0]], [H1], [salts[0]], [False], ciphers,
                                "main.crm.orders.name", strict=False) == [None]


def test_erased_unknown_and_null_subjects():
    ciphers, salts, cells = _two_subjects()
    with pytest.raises(SubjectErased, match=f"subject {H1} was erased.*value 0"):
        decrypt_subject_many(cells[:2], [H1, H2], [None, salts[1]], [True, False], ciphers,
                             PLACE, strict=True)
    assert decrypt_subject_many(cells[:2], [H1, H2], [None, salts[1]], [True, False], ciphers,
                                PLACE, strict=False) == [None, "b@x"]
    with pytest.raises(UnknownKeyVersion, match="no salt"):
        decrypt_subject_many(cells[:1], [H1], [None], [None], ciphers, PLACE, strict=True)
    with pytest.raises(FormatError, match="subject is NULL"):
        decrypt_subject_many(cells[:1], [None], [None], [None], ciphers, PLACE, strict=True)
    with pytest.raises(SubjectErased):
        encrypt_subject_many(["c"], [H1], [None], [True], ciphers, 1, "string", PLACE)


def test_tampered_and_foreign_values():
    ciphers, salts, cells = _two_subjects()
    header, payload = cells[0].split("+subj:")
    raw = bytearray(base64.b64decode(payload))
    raw[-1] ^= 1
    tampered = header + "+subj:" + base64.b64encode(bytes(raw)).decode()
    edited = cells[0].replace("ee1:1:string+subj:", "ee1:1:int+subj:")
    plain_cell = "ee1:1:string:" + payload  # the header without +subj
    for value, error in ((tampered, DecryptionError), (edited, DecryptionError),
                         (plain_cell, FormatError), ("a@x", FormatError),
                         (cells[0] + "\n", FormatError)):
        with pytest.raises(error):
            decrypt_subject_many([value], [H1], [salts[0]], [False], ciphers, PLACE,
                                 strict=True)
        assert decrypt_subject_many([value], [H1], [salts[0]], [False], ciphers, PLACE,
                                    strict=False) == [None]
    # A version the keyring does not hold (retired): not available.
    with pytest.raises(UnknownKeyVersion, match="version 1"):
        decrypt_subject_many([cells[0]], [H1], [salts[0]], [False],
                             SubjectCiphers("main.crm", {2: bytes(32)}), PLACE, strict=True)


def test_rerun_keeps_own_cells_and_encrypts_look_alikes():
    ciphers, salts, cells = _two_subjects()
    again = encrypt_subject_many(cells[:2], [H1, H2], salts, [False, False], ciphers, 1,
                                 "string", PLACE)
    assert again == cells[:2]
    # Subject 1's cell written for subject 2 is data for subject 2: encrypted, not kept.
    moved = encrypt_subject_many([cells[0]], [H2], [salts[1]], [False], ciphers, 1, "string",
                                 PLACE)
    assert moved != [cells[0]]
    assert decrypt_subject_many(moved, [H2], [salts[1]], [False], ciphers, PLACE,
                                strict=True) == [cells[0]]


def test_derived_keys_are_cached_and_bounded():
    ciphers = SubjectCiphers("main.crm", {1: bytes(32)}, size=3)
    hashes = [f"{i:032x}" for i in range(10)]
    salts = [new_salt() for _ in hashes]
    encrypt_subject_many(["v"] * 10, hashes, salts, [False] * 10, ciphers, 1, "string", PLACE)
    assert ciphers.derived == 10 and len(ciphers._ciphers) == 3
    encrypt_subject_many(["v"] * 3, hashes[-3:], salts[-3:], [False] * 3, ciphers, 1,
                         "string", PLACE)
    assert ciphers.derived == 10  # the three most recent subjects were still cached
    with pytest.raises(FormatError, match="malformed salt"):
        subject_key(bytes(32), b"short", "main.crm", 1, H1)
    assert "redacted" in repr(subject_id_key(SecretKey(bytes(32)), "main.crm"))
