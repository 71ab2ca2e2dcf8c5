"""The cell format: published vectors, tampering, truncation, wrong key/place/version."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from envelope_encryption.cell import batch as cell_batch
from envelope_encryption.cell import format as cell_format
from envelope_encryption.cell.types import canonical_type_tag
from envelope_encryption.errors import (
    ConfigError,
    DecryptionError,
    FormatError,
    UnknownKeyVersion,
)

VECTORS = json.loads(
    (Path(__file__).parents[2] / "docs" / "cell-format-vectors.json").read_text("utf-8")
)["vectors"]
KEY = bytes(range(32))
PLACE = "main.hr.employees.ssn"
BAD = (FormatError, DecryptionError, UnknownKeyVersion)


def _row(vector):
    """The row key of a row-bound vector (None for the others)."""
    row = vector.get("row_key")
    return cell_format.RowKey(row["column"], row["value"]) if row else None


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vectors_encrypt_to_the_published_cell(vector):
    cell = cell_format.encrypt_value(
        vector["plaintext"], bytes.fromhex(vector["key_hex"]), vector["version"],
        vector["type"], vector["place"], iv=bytes.fromhex(vector["iv_hex"]), row=_row(vector),
    )
    assert cell == vector["cell"]
    header, payload = cell_format.parse_cell(cell)
    assert cell_format.aad_for(header, vector["place"], _row(vector)).decode() == vector["aad"]
    assert payload.hex() == vector["payload_hex"]
    assert payload[:12].hex() == vector["iv_hex"]
    # Independently of the library: AES-256-GCM of the plaintext under the published AAD.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    iv = bytes.fromhex(vector["iv_hex"])
    sealed = AESGCM(bytes.fromhex(vector["key_hex"])).encrypt(
        iv, vector["plaintext"].encode(), vector["aad"].encode())
    assert (iv + sealed).hex() == vector["payload_hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vectors_decrypt(vector):
    keys = {vector["version"]: bytes.fromhex(vector["key_hex"])}
    plain, header = cell_format.decrypt_cell(vector["cell"], keys, vector["place"],
                                             row=_row(vector))
    assert plain == vector["plaintext"]
    assert (header.version, header.type_tag) == (vector["version"], vector["type"])
    assert header.row_bound == ("row_key" in vector)


def test_random_iv_differs_per_value():
    cells = {cell_format.encrypt_value("same", KEY, 1, "string", PLACE) for _ in range(50)}
    assert len(cells) == 50


def test_every_single_character_change_is_refused():
    cell = cell_format.encrypt_value("933-73-8723", KEY, 1, "string", PLACE)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=:e1s"
    changed = 0
    for i in range(len(cell)):
        for replacement in {alphabet[(alphabet.find(cell[i]) + 1) % len(alphabet)], "0", "z"}:
            if replacement == cell[i]:
                continue
            tampered = cell[:i] + replacement + cell[i + 1:]
            with pytest.raises(BAD):
                cell_format.decrypt_cell(tampered, {1: KEY, 2: KEY}, PLACE)
            changed += 1
    assert changed > 2 * len(cell)


def test_every_single_byte_change_of_the_payload_is_refused():
    cell = cell_format.encrypt_value("933-73-8723", KEY, 1, "string", PLACE)
    header, payload = cell_format.parse_cell(cell)
    for i in range(len(payload)):
        for flip in (0x01, 0x80, 0xFF):
            tampered = bytearray(payload)
            tampered[i] ^= flip
            text = header.text + base64.b64encode(bytes(tampered)).decode()
            with pytest.raises(DecryptionError):
                cell_format.decrypt_cell(text, {1: KEY}, PLACE)


def test_every_truncation_is_refused():
    cell = cell_format.encrypt_value("933-73-8723", KEY, 1, "string", PLACE)
    for length in range(len(cell)):
        with pytest.raises(BAD):
            cell_format.decrypt_cell(cell[:length], {1: KEY}, PLACE)
    _, payload = cell_format.parse_cell(cell)
    for length in range(len(payload)):
        text = "ee1:1:string:" + base64.b64encode(payload[:length]).decode()
        with pytest.raises(BAD):
            cell_format.decrypt_cell(text, {1: KEY}, PLACE)


def test_wrong_key_wrong_place_unknown_version():
    cell = cell_format.encrypt_value("secret", KEY, 3, "string", PLACE)
    with pytest.raises(DecryptionError):
        cell_format.decrypt_cell(cell, {3: os.urandom(32)}, PLACE)
    for other in ("main.hr.employees.name", "main.hr.other.ssn", "main.sales.employees.ssn",
                  "other.hr.employees.ssn"):
        with pytest.raises(DecryptionError):
            cell_format.decrypt_cell(cell, {3: KEY}, other)
    with pytest.raises(UnknownKeyVersion):
        cell_format.decrypt_cell(cell, {1: KEY, 2: KEY}, PLACE)


def test_header_is_authenticated():
    cell = cell_format.encrypt_value("42", KEY, 1, "int", PLACE)
    retyped = cell.replace("ee1:1:int:", "ee1:1:bigint:")
    renumbered = cell.replace("ee1:1:", "ee1:2:")
    with pytest.raises(DecryptionError):
        cell_format.decrypt_cell(retyped, {1: KEY}, PLACE)
    with pytest.raises(DecryptionError):
        cell_format.decrypt_cell(renumbered, {1: KEY, 2: KEY}, PLACE)


def test_error_messages_never_contain_the_value_or_key():
    cell = cell_format.encrypt_value("933-73-8723", KEY, 1, "string", PLACE)
    for bad in ("933-73-8723", cell[:-4], cell):
        for keys in ({1: os.urandom(32)}, {}):
            try:
                cell_batch.decrypt_many([bad], keys, PLACE, strict=True)
            except BAD as error:
                message = str(error)
                assert "933-73-8723" not in message and bad not in message
                assert KEY.hex() not in message


def test_not_a_cell():
    for value in ("plain text", "", "ee1:", "ee1:0:string:AAAA", "ee1:01:string:AAAA",
                  "ee2:1:string:" + "A" * 40, "ee1:1:nosuchtype!:" + "A" * 40):
        assert not cell_format.is_cell(value)
        with pytest.raises(FormatError):
            cell_format.parse_cell(value)


def test_non_canonical_base64_is_refused():
    cell = cell_format.encrypt_value("x", KEY, 1, "string", PLACE)
    assert cell.endswith("=")
    body = cell.rstrip("=")
    last = body[-1]
    # Change padding bits only: a lenient decoder would return the same payload.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sibling = alphabet[alphabet.index(last) ^ 1]
    tampered = body[:-1] + sibling + cell[len(body):]
    assert base64.b64decode(tampered.split(":", 3)[3]) == base64.b64decode(cell.split(":", 3)[3])
    with pytest.raises(FormatError):
        cell_format.decrypt_cell(tampered, {1: KEY}, PLACE)


def test_batch_forms_keep_null_and_cells_of_this_place():
    cells = cell_batch.encrypt_many(["a", None, "", "ünï"], KEY, 1, "string", PLACE)
    assert cells[1] is None
    again = cell_batch.encrypt_many(cells, KEY, 1, "string", PLACE, keep={1: KEY})
    assert again == cells
    # A cell of another place, or a look-alike, is data: it gets encrypted.
    foreign = cell_format.encrypt_value("a", KEY, 1, "string", "main.hr.other.ssn")
    fake = "ee1:1:string:" + base64.b64encode(os.urandom(40)).decode()
    out = cell_batch.encrypt_many([foreign, fake], KEY, 1, "string", PLACE, keep={1: KEY})
    assert out[0] != foreign and out[1] != fake
    assert cell_batch.decrypt_many(out, {1: KEY}, PLACE, strict=True) == [foreign, fake]
    assert cell_batch.decrypt_many(cells, {1: KEY}, PLACE, strict=True) == ["a", None, "", "ünï"]


def test_lenient_batch_gives_null_for_bad_values():
    good = cell_format.encrypt_value("ok", KEY, 1, "string", PLACE)
    values = [good, good[:-3], "plain", good.replace("ee1:1:", "ee1:9:"), None]
    assert cell_batch.decrypt_many(values, {1: KEY}, PLACE, strict=False) == [
        "ok", None, None, None, None
    ]
    with pytest.raises(FormatError, match="value 1 of its batch"):
        cell_batch.decrypt_many(values, {1: KEY}, PLACE, strict=True)


def test_expected_type_is_enforced():
    cell = cell_format.encrypt_value("42", KEY, 1, "int", PLACE)
    with pytest.raises(FormatError, match="int value where string"):
        cell_batch.decrypt_many([cell], {1: KEY}, PLACE, strict=True, expected_tag="string")


def test_legacy_cells():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    legacy_key = b"0123456789abcdefghijklmnopqrstuv"  # the original's 32-character text DEK
    iv = os.urandom(12)
    value = base64.b64encode(iv + AESGCM(legacy_key).encrypt(iv, b"Ada", None)).decode()
    assert cell_format.decrypt_legacy_cell(value, legacy_key) == "Ada"
    assert cell_batch.decrypt_many([value], {}, PLACE, strict=True, legacy_key=legacy_key) == [
        "Ada"
    ]
    with pytest.raises(DecryptionError):
        cell_format.decrypt_legacy_cell(value, os.urandom(32))
    with pytest.raises(FormatError):
        cell_batch.decrypt_many([value], {}, PLACE, strict=True)  # no legacy key: refused


def test_type_tags():
    assert canonical_type_tag("decimal(10,2)") == "decimal(10,2)"
    assert canonical_type_tag("INT") == "int"
    for unsupported in ("array<int>", "map<string,int>", "struct<a:int>", "decimal(100,2)"):
        with pytest.raises(ConfigError):
            canonical_type_tag(unsupported)


def test_a_trailing_newline_or_a_non_ascii_digit_is_not_a_cell():
    """Python's "$" accepts a trailing newline and "\\d" any Unicode digit: neither may."""
    cell = cell_format.encrypt_value("123-45-6789", KEY, 1, "string", PLACE)
    assert cell_format.is_cell(cell)
    for changed in (cell + "\n", cell.replace("ee1:1:", "ee1:\u0661:", 1)):
        assert not cell_format.is_cell(changed)
        with pytest.raises(FormatError):
            cell_format.parse_cell(changed)
    decimal = cell_format.encrypt_value("1.50", KEY, 1, "decimal(3,2)", PLACE)
    arabic = decimal.replace("decimal(3,2)", "decimal(\u0663,2)", 1)
    assert cell_format.is_cell(decimal) and not cell_format.is_cell(arabic)
    with pytest.raises(FormatError):
        cell_format.parse_cell(arabic)
    with pytest.raises(ConfigError):
        canonical_type_tag("decimal(\u0663,2)")
