"""The batch loops' fast paths (one header parse per distinct header, IVs drawn per batch)
give exactly what the one-cell functions give, value by value, and refuse what they refuse."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envelope_encryption.cell import batch as cell_batch
from envelope_encryption.cell import format as cell_format
from envelope_encryption.cell.format import RowKey
from envelope_encryption.errors import DecryptionError, FormatError, UnknownKeyVersion

from ..properties.tampering import TAMPERS, authentic_cells, tampered

KEY = bytes(range(32))
KEY2 = bytes(range(32, 64))
LEGACY = b"0123456789abcdefghijklmnopqrstuv"
PLACE = "main.hr.people.ssn"
BAD = (FormatError, DecryptionError, UnknownKeyVersion)
VECTORS = json.loads(
    (Path(__file__).parents[2] / "docs" / "cell-format-vectors.json").read_text("utf-8")
)["vectors"]
CELLS = authentic_cells(KEY, PLACE)


def _legacy(plain: str) -> str:
    iv = os.urandom(12)
    return base64.b64encode(iv + AESGCM(LEGACY).encrypt(iv, plain.encode(), None)).decode()


def _reference(value: str | None, keys, legacy_key=None) -> str | None:
    """What the one-cell functions read from a value (None where they refuse it)."""
    if value is None:
        return None
    try:
        if legacy_key is not None and not value.startswith(cell_format.CELL_PREFIX):
            return cell_format.decrypt_legacy_cell(value, legacy_key)
        return cell_format.decrypt_cell(value, keys, PLACE)[0]
    except BAD:
        return None


def test_mixed_headers_versions_and_legacy_one_bad_cell():
    good = [
        ("a", cell_format.encrypt_value("a", KEY, 1, "string", PLACE)),
        ("b", cell_format.encrypt_value("b", KEY, 1, "string", PLACE)),
        ("c", cell_format.encrypt_value("c", KEY2, 2, "string", PLACE)),
        ("d", _legacy("d")),
        ("e", cell_format.encrypt_value("e", KEY, 1, "string", PLACE)),
        ("f", cell_format.encrypt_value("f", KEY2, 2, "string", PLACE)),
    ]
    # After a v1 cell, a cell with the same header whose payload was changed by one byte.
    body = bytearray(base64.b64decode(good[1][1].split(":", 3)[3]))
    body[-1] ^= 1
    bad = "ee1:1:string:" + base64.b64encode(bytes(body)).decode()
    values = [c for _, c in good[:2]] + [bad] + [c for _, c in good[2:]] + [None]
    keys = {1: KEY, 2: KEY2}
    out = cell_batch.decrypt_many(values, keys, PLACE, strict=False, legacy_key=LEGACY,
                                  expected_tag="string")
    assert out == ["a", "b", None, "c", "d", "e", "f", None]
    with pytest.raises(DecryptionError, match="value 2 of its batch"):
        cell_batch.decrypt_many(values, keys, PLACE, strict=True, legacy_key=LEGACY)
    # The same batch without the bad cell reads in full, strict.
    clean = [v for v in values if v != bad]
    assert cell_batch.decrypt_many(clean, keys, PLACE, strict=True, legacy_key=LEGACY) == [
        "a", "b", "c", "d", "e", "f", None]


def test_a_header_seen_before_is_checked_again_for_type_version_and_binding():
    int_cell = cell_format.encrypt_value("42", KEY, 1, "int", PLACE)
    v3 = cell_format.encrypt_value("x", KEY, 3, "string", PLACE)
    bound = cell_format.encrypt_value("y", KEY, 1, "string", PLACE, row=RowKey("id", "1"))
    string_cell = cell_format.encrypt_value("s", KEY, 1, "string", PLACE)
    values = [string_cell, int_cell, string_cell, int_cell, v3, string_cell, v3, bound]
    assert cell_batch.decrypt_many(values, {1: KEY}, PLACE, strict=False,
                                   expected_tag="string") == [
        "s", None, "s", None, None, "s", None, None]
    for position, error in ((1, FormatError), (4, UnknownKeyVersion), (7, FormatError)):
        batch = [string_cell, string_cell, values[position], values[position]]
        with pytest.raises(error, match="value 2 of its batch"):
            cell_batch.decrypt_many(batch, {1: KEY}, PLACE, strict=True,
                                    expected_tag="string")


def test_non_utf8_plaintext_under_the_common_header_is_refused():
    good = cell_format.encrypt_value("ok", KEY, 1, "string", PLACE)
    iv = os.urandom(12)
    sealed = AESGCM(KEY).encrypt(iv, b"\xff", ("ee1:1:string:" + PLACE).encode())
    odd = "ee1:1:string:" + base64.b64encode(iv + sealed).decode()
    assert cell_batch.decrypt_many([good, odd, good], {1: KEY}, PLACE, strict=False) == [
        "ok", None, "ok"]
    with pytest.raises(FormatError, match=r"not valid UTF-8 .*value 1 of its batch"):
        cell_batch.decrypt_many([good, odd], {1: KEY}, PLACE, strict=True)


@pytest.mark.parametrize("category", sorted(TAMPERS))
def test_batch_reads_exactly_what_the_one_cell_path_reads(category):
    """Differential: authentic cells around tampered ones (same header first, so the fast
    path meets them); every value reads as :func:`decrypt_cell` reads it on its own, and
    every tampered value is refused."""

    @settings(max_examples=12 if category == "huge" else 60, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.one_of(st.sampled_from([c for _, c in CELLS]),
                              tampered(category, CELLS)), min_size=1, max_size=8))
    def check(changed):
        values = [CELLS[0][1], *changed, CELLS[1][1], None]
        out = cell_batch.decrypt_many(values, {1: KEY}, PLACE, strict=False)
        assert out == [_reference(v, {1: KEY}) for v in values]
        authentic = {c for _, c in CELLS}
        assert all(o is None for v, o in zip(values, out, strict=True) if v not in authentic)
        first_bad = next((i for i, v in enumerate(values) if v is not None
                          and v not in authentic), None)
        if first_bad is not None:
            with pytest.raises(BAD, match=f"value {first_bad} of its batch"):
                cell_batch.decrypt_many(values, {1: KEY}, PLACE, strict=True)

    check()


def test_encrypt_many_ivs_are_distinct_and_cells_read_one_by_one():
    cells = cell_batch.encrypt_many(["same"] * 2000, KEY, 1, "string", PLACE)
    ivs = {base64.b64decode(c.split(":", 3)[3])[:12] for c in cells}
    assert len(ivs) == 2000
    assert all(cell_format.decrypt_cell(c, {1: KEY}, PLACE)[0] == "same" for c in cells)
    rows = [str(i) for i in range(50)]
    bound = cell_batch.encrypt_many(["v"] * 50, KEY, 1, "int", PLACE, row_column="id",
                                    row_values=rows)
    assert all(cell_format.decrypt_cell(c, {1: KEY}, PLACE, row=RowKey("id", r))[0] == "v"
               for c, r in zip(bound, rows, strict=True))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_encrypt_many_writes_the_published_cell(vector, monkeypatch):
    """Byte for byte the format of the vectors, given the vector's IV as the batch's IVs."""
    iv = bytes.fromhex(vector["iv_hex"])
    monkeypatch.setattr(cell_batch.os, "urandom", lambda n: iv * (n // len(iv)))
    row = vector.get("row_key")
    out = cell_batch.encrypt_many(
        [vector["plaintext"]] * 2, bytes.fromhex(vector["key_hex"]), vector["version"],
        vector["type"], vector["place"], row_column=row["column"] if row else None,
        row_values=[row["value"]] * 2 if row else None)
    assert out == [vector["cell"]] * 2


def test_reencrypt_names_the_position_of_a_null_row_key():
    unbound = cell_format.encrypt_value("x", KEY, 1, "string", PLACE)
    with pytest.raises(FormatError, match=r"NULL.*value 1 of its batch"):
        cell_batch.reencrypt_many([unbound, unbound], {1: KEY}, KEY2, 2, PLACE,
                                  row_column="id", row_values=["1", None], bind_unbound=True)
    with pytest.raises(FormatError, match=r"NULL.*value 0 of its batch"):
        cell_batch.reencrypt_many([_legacy("x")], {1: KEY}, KEY2, 2, PLACE, legacy_key=LEGACY,
                                  row_column="id", row_values=[None], bind_unbound=True)
