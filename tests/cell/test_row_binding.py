"""Row binding, re-encryption that authenticates what it keeps, and authentic plaintexts that
are not UTF-8: the pure cell layer."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envelope_encryption.cell import batch as cell_batch
from envelope_encryption.cell import format as cell_format
from envelope_encryption.cell.format import RowKey
from envelope_encryption.errors import DecryptionError, FormatError, UnknownKeyVersion

KEY = bytes(range(32))
NEW_KEY = bytes(range(32, 64))
PLACE = "main.hr.employees.ssn"
BAD = (FormatError, DecryptionError, UnknownKeyVersion)


def _bound(plain: str, row_value: str, version: int = 1, key: bytes = KEY) -> str:
    return cell_format.encrypt_value(plain, key, version, "string", PLACE,
                                     row=RowKey("id", row_value))


def _raw_cell(plain: bytes, header: str = "ee1:1:string:", aad_tail: str = "") -> str:
    """A cell sealed directly with AES-GCM (as Spark's SQL aes_encrypt would make it)."""
    iv = os.urandom(12)
    sealed = AESGCM(KEY).encrypt(iv, plain, (header + PLACE + aad_tail).encode())
    return header + base64.b64encode(iv + sealed).decode()


def test_a_row_bound_cell_says_so_and_opens_only_in_its_row():
    cell = _bound("933-73-8723", "42")
    assert cell.startswith("ee1:1:string+row:") and cell_format.is_cell(cell)
    plain, header = cell_format.decrypt_cell(cell, {1: KEY}, PLACE, row=RowKey("id", "42"))
    assert plain == "933-73-8723" and header.row_bound and header.type_tag == "string"
    for other in (RowKey("id", "43"), RowKey("id", "42 "), RowKey("id", ""),
                  RowKey("other_id", "42")):
        with pytest.raises(DecryptionError):
            cell_format.decrypt_cell(cell, {1: KEY}, PLACE, row=other)


def test_cells_swapped_between_rows_do_not_decrypt():
    cells = [_bound(ssn, str(i)) for i, ssn in enumerate(["111-11-1111", "222-22-2222"])]
    swapped = [cells[1], cells[0]]
    rows = ["0", "1"]
    assert cell_batch.decrypt_many(cells, {1: KEY}, PLACE, strict=True, row_column="id",
                                   row_values=rows) == ["111-11-1111", "222-22-2222"]
    assert cell_batch.decrypt_many(swapped, {1: KEY}, PLACE, strict=False, row_column="id",
                                   row_values=rows) == [None, None]
    with pytest.raises(DecryptionError, match="value 0 of its batch"):
        cell_batch.decrypt_many(swapped, {1: KEY}, PLACE, strict=True, row_column="id",
                                row_values=rows)


def test_binding_must_match_the_table():
    bound = _bound("x", "7")
    unbound = cell_format.encrypt_value("x", KEY, 1, "string", PLACE)
    # A row-bound cell never opens without its row key ...
    with pytest.raises(FormatError, match="bound to its row"):
        cell_format.decrypt_cell(bound, {1: KEY}, PLACE)
    # ... not even by dropping the suffix (the header is in the AAD) ...
    with pytest.raises(DecryptionError):
        cell_format.decrypt_cell(bound.replace("string+row:", "string:"), {1: KEY}, PLACE)
    # ... nor by the SQL recipe for unbound cells (header + place only).
    header, payload = cell_format.parse_cell(bound)
    with pytest.raises(InvalidTag):
        AESGCM(KEY).decrypt(payload[:12], payload[12:], (header.text + PLACE).encode())
    # An unbound cell is refused where the table binds rows (it could go into any row).
    with pytest.raises(FormatError, match="not bound to its row"):
        cell_format.decrypt_cell(unbound, {1: KEY}, PLACE, row=RowKey("id", "7"))
    assert cell_batch.decrypt_many([unbound, bound], {1: KEY}, PLACE, strict=False,
                                   row_column="id", row_values=["7", "7"]) == [None, "x"]
    # Adding the suffix to an unbound cell fails its tag.
    with pytest.raises(DecryptionError):
        cell_format.decrypt_cell(unbound.replace("string:", "string+row:"), {1: KEY}, PLACE,
                                 row=RowKey("id", "7"))


def test_null_row_keys_and_legacy_cells_where_rows_are_bound():
    with pytest.raises(FormatError, match="row key id is NULL"):
        cell_batch.encrypt_many(["x"], KEY, 1, "string", PLACE, row_column="id",
                                row_values=[None])
    bound = _bound("x", "7")
    assert cell_batch.decrypt_many([bound], {1: KEY}, PLACE, strict=False, row_column="id",
                                   row_values=[None]) == [None]
    legacy_key = b"0123456789abcdefghijklmnopqrstuv"
    iv = os.urandom(12)
    legacy = base64.b64encode(iv + AESGCM(legacy_key).encrypt(iv, b"Ada", None)).decode()
    with pytest.raises(FormatError, match="legacy cell"):
        cell_batch.decrypt_many([legacy], {1: KEY}, PLACE, strict=True, legacy_key=legacy_key,
                                row_column="id", row_values=["7"])


def test_encrypting_twice_keeps_bound_cells_of_their_own_row_only():
    cells = cell_batch.encrypt_many(["a", "b"], KEY, 1, "string", PLACE, row_column="id",
                                    row_values=["1", "2"])
    again = cell_batch.encrypt_many(cells, KEY, 1, "string", PLACE, keep={1: KEY},
                                    row_column="id", row_values=["1", "2"])
    assert again == cells
    # Swapped, they do not authenticate in their new rows: encrypted as data, not kept.
    swapped = cell_batch.encrypt_many(cells[::-1], KEY, 1, "string", PLACE, keep={1: KEY},
                                      row_column="id", row_values=["1", "2"])
    assert swapped != cells[::-1]
    assert cell_batch.decrypt_many(swapped, {1: KEY}, PLACE, strict=True, row_column="id",
                                   row_values=["1", "2"]) == cells[::-1]


def test_reencryption_refuses_a_forged_cell_with_the_active_prefix():
    good = cell_format.encrypt_value("real", NEW_KEY, 2, "string", PLACE)
    forged = "ee1:2:string:" + base64.b64encode(os.urandom(40)).decode()
    old = cell_format.encrypt_value("old", KEY, 1, "string", PLACE)
    keys = {1: KEY, 2: NEW_KEY}
    out = cell_batch.reencrypt_many([good, old, None], keys, NEW_KEY, 2, PLACE)
    assert out[0] == good and out[2] is None and out[1].startswith("ee1:2:string:")
    assert cell_batch.decrypt_many(out, keys, PLACE, strict=True) == ["real", "old", None]
    with pytest.raises(DecryptionError, match="value 1 of its batch"):
        cell_batch.reencrypt_many([good, forged], keys, NEW_KEY, 2, PLACE)
    # A current cell moved from another column has the active prefix too: refused.
    moved = cell_format.encrypt_value("x", NEW_KEY, 2, "string", "main.hr.employees.name")
    with pytest.raises(DecryptionError):
        cell_batch.reencrypt_many([moved], keys, NEW_KEY, 2, PLACE)


def test_reencryption_binds_rows_only_when_asked():
    unbound = cell_format.encrypt_value("x", KEY, 1, "string", PLACE)
    with pytest.raises(FormatError, match="not bound to its row"):
        cell_batch.reencrypt_many([unbound], {1: KEY}, KEY, 1, PLACE, row_column="id",
                                  row_values=["9"])
    out = cell_batch.reencrypt_many([unbound], {1: KEY}, KEY, 1, PLACE, row_column="id",
                                    row_values=["9"], bind_unbound=True)
    assert out[0].startswith("ee1:1:string+row:")
    assert cell_batch.decrypt_many(out, {1: KEY}, PLACE, strict=True, row_column="id",
                                   row_values=["9"]) == ["x"]
    # A bound cell of the active version in its own row is kept unchanged.
    assert cell_batch.reencrypt_many(out, {1: KEY}, KEY, 1, PLACE, row_column="id",
                                     row_values=["9"]) == out


@pytest.mark.parametrize("plain", [b"\xff", b"ok\xc3", b"\xed\xa0\x80"])
def test_authentic_plaintext_that_is_not_utf8(plain):
    cell = _raw_cell(plain)
    good = cell_format.encrypt_value("fine", KEY, 1, "string", PLACE)
    with pytest.raises(FormatError, match="not valid UTF-8"):
        cell_format.decrypt_cell(cell, {1: KEY}, PLACE)
    with pytest.raises(FormatError, match="value 1 of its batch"):
        cell_batch.decrypt_many([good, cell], {1: KEY}, PLACE, strict=True)
    # Lenient: that row is NULL, the rest of the batch is read.
    assert cell_batch.decrypt_many([good, cell, None, good], {1: KEY}, PLACE,
                                   strict=False) == ["fine", None, None, "fine"]
    with pytest.raises(FormatError):
        cell_batch.reencrypt_many([cell], {1: KEY}, KEY, 1, PLACE)
    bound = _raw_cell(plain, "ee1:1:string+row:", "#id=1")
    assert cell_batch.decrypt_many([bound], {1: KEY}, PLACE, strict=False, row_column="id",
                                   row_values=["1"]) == [None]
    legacy_key = b"0123456789abcdefghijklmnopqrstuv"
    iv = os.urandom(12)
    legacy = base64.b64encode(iv + AESGCM(legacy_key).encrypt(iv, plain, None)).decode()
    with pytest.raises(FormatError, match="not valid UTF-8"):
        cell_format.decrypt_legacy_cell(legacy, legacy_key)
    assert cell_batch.decrypt_many([legacy], {}, PLACE, strict=False,
                                   legacy_key=legacy_key) == [None]


def test_every_single_character_change_of_a_bound_cell_is_refused():
    cell = _bound("933-73-8723", "42")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=:e1s"
    for i in range(len(cell)):
        replacement = alphabet[(alphabet.find(cell[i]) + 1) % len(alphabet)]
        tampered = cell[:i] + replacement + cell[i + 1:]
        with pytest.raises(BAD):
            cell_format.decrypt_cell(tampered, {1: KEY, 2: KEY}, PLACE, row=RowKey("id", "42"))
