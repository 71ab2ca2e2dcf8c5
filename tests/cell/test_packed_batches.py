"""The batch loops on packed values (:class:`Texts`, what the Spark layer makes of an Arrow
column) read and write exactly what they read and write on lists, value by value, and
refuse what the one-cell functions refuse: with NULLs, offsets that do not start at 0,
values of one length (headers compared by strided slices) and of many, plaintexts that
are not UTF-8 only when split into values, and row keys."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envelope_encryption.cell import batch as cell_batch
from envelope_encryption.cell import format as cell_format
from envelope_encryption.cell.batch_open import _one_header, _row_aad, _row_parts
from envelope_encryption.cell.format import RowKey
from envelope_encryption.cell.texts import Texts
from envelope_encryption.errors import DecryptionError, FormatError, UnknownKeyVersion

KEY = bytes(range(32))
KEY2 = bytes(range(32, 64))
PLACE = "main.hr.people.ssn"
BAD = (FormatError, DecryptionError, UnknownKeyVersion)


def packed(values, *, lead: bytes = b"", null_bytes: bytes = b"") -> Texts:
    """``values`` packed as Arrow may lay them out: after ``lead`` bytes of another value
    (offsets not starting at 0), and with ``null_bytes`` under each NULL."""
    data, offsets, valid = bytearray(lead), [len(lead)], []
    for value in values:
        data += null_bytes if value is None else value.encode("utf-8", "surrogateescape")
        offsets.append(len(data))
        valid.append(value is not None)
    return Texts(bytes(data), offsets, None if all(valid) else valid)


def reference(value, keys, expected_tag=None, row=None):
    """What the one-cell function reads from a value (None where it refuses it)."""
    if value is None:
        return None
    try:
        plain, header = cell_format.decrypt_cell(value, keys, PLACE, row=row)
    except BAD:
        return None
    return None if expected_tag not in (None, header.type_tag) else plain


def seal_raw(plain: bytes, version: int = 1, key: bytes = KEY) -> str:
    """An authentic cell of any plaintext bytes (UTF-8 or not)."""
    iv = os.urandom(12)
    header = f"ee1:{version}:string:"
    sealed = AESGCM(key).encrypt(iv, plain, (header + PLACE).encode())
    return header + base64.b64encode(iv + sealed).decode()


def test_texts_is_a_sequence_of_its_values_and_shows_none():
    texts = packed(["a", None, "", "é"], lead=b"xyz", null_bytes=b"junk")
    assert list(texts) == ["a", None, "", "é"] == texts.to_list()
    assert texts[1] is None and texts[3] == "é" and texts[-1] == "é" and len(texts) == 4
    assert [texts.raw(i) for i in range(4)] == [b"a", None, b"", "é".encode()]
    assert list(texts.spans()) == [(0, 3, 4), (2, 8, 8), (3, 8, 10)]
    assert repr(texts) == "Texts(4 values)"
    assert Texts.from_strings(texts).to_list() == texts.to_list()
    with pytest.raises(ValueError):
        Texts(b"", [0, 1], [True, False])


def test_packed_decrypt_reads_what_the_list_reads():
    plains = ["933-73-8723", None, "", "Zoë Ångström 日本", "x" * 300, None, "ab"]
    cells = cell_batch.encrypt_many(plains, KEY, 1, "string", PLACE)
    for texts in (packed(cells), packed(cells, lead=b"ee1:1:", null_bytes=b"ee1:1:string:")):
        out = cell_batch.decrypt_many(texts, {1: KEY}, PLACE, strict=True)
        assert isinstance(out, Texts) and out.to_list() == plains
        assert out.valid == [p is not None for p in plains]


def test_packed_encrypt_seals_what_the_list_seals_and_keeps_its_own_cells():
    plains = ["a", None, "", "ünï", "ee1:1:string:not a cell"]
    texts = packed(plains, lead=b"\xff\xfe", null_bytes=b"xx")
    out = cell_batch.encrypt_many(texts, KEY, 1, "string", PLACE, keep={1: KEY})
    assert isinstance(out, Texts) and out.valid == [True, False, True, True, True]
    assert cell_batch.decrypt_many(out.to_list(), {1: KEY}, PLACE, strict=True) == plains
    # A re-run over its own output keeps every cell as it is.
    again = cell_batch.encrypt_many(packed(out.to_list()), KEY, 1, "string", PLACE,
                                    keep={1: KEY})
    assert again.to_list() == out.to_list()


@pytest.mark.parametrize("length", [1, 2, 11, 12, 13, 40])
def test_a_different_header_among_values_of_one_length_is_found(length):
    """Values of one length have their headers compared by strided slices: a header that
    differs in any one byte, in any position of the batch, is left to the one-cell path."""
    plains = [str(i).zfill(length) for i in range(9)]
    cells = cell_batch.encrypt_many(plains, KEY, 1, "string", PLACE)
    assert len({len(c) for c in cells}) == 1
    head = b"ee1:1:string:"
    assert _one_header(packed(cells), head)
    for position in (0, 4, 8):
        for k in range(len(head)):
            for byte in (head[k] ^ 1, ord("2"), ord(":")):
                if byte == head[k]:
                    continue
                raw = bytearray(cells[position].encode())
                raw[k] = byte
                changed = list(cells)
                changed[position] = raw.decode("latin-1")
                texts = packed(changed)
                assert not _one_header(texts, head)
                out = cell_batch.decrypt_many(texts, {1: KEY, 2: KEY}, PLACE, strict=False)
                assert out.to_list() == [reference(v, {1: KEY, 2: KEY}) for v in changed]
                assert out.to_list()[position] is None


def test_one_header_is_not_claimed_for_nulls_or_values_of_other_lengths():
    cells = cell_batch.encrypt_many(["aa", "bb", "cc"], KEY, 1, "string", PLACE)
    head = b"ee1:1:string:"
    assert not _one_header(packed([cells[0], None, cells[2]]), head)
    assert not _one_header(packed([cells[0], cells[1] + "A", cells[2]]), head)
    assert not _one_header(packed(["ee1:1:string"] * 3), head)  # shorter than the header
    assert not _one_header(packed([]), head)


def test_a_plaintext_split_across_two_values_is_not_utf8():
    """The two halves of 'é' in neighbouring cells make valid UTF-8 together: each cell on
    its own is refused, as the one-cell path refuses it."""
    first, second = seal_raw(b"\xc3"), seal_raw(b"\xa9")
    good = cell_format.encrypt_value("ok", KEY, 1, "string", PLACE)
    values = [good, first, second, good]
    assert cell_batch.decrypt_many(packed(values), {1: KEY}, PLACE,
                                   strict=False).to_list() == ["ok", None, None, "ok"]
    assert cell_batch.decrypt_many(values, {1: KEY}, PLACE, strict=False) == [
        "ok", None, None, "ok"]
    with pytest.raises(FormatError, match=r"not valid UTF-8 .*value 1 of its batch"):
        cell_batch.decrypt_many(packed(values), {1: KEY}, PLACE, strict=True)


def test_encrypt_refuses_bytes_that_are_not_utf8_even_split_across_values():
    texts = Texts(b"a\xc3\xa9b", [0, 2, 4])  # "a\xc3", "\xa9b": valid together only
    with pytest.raises(FormatError, match="value 0 of its batch is not valid UTF-8"):
        cell_batch.encrypt_many(texts, KEY, 1, "string", PLACE)
    with pytest.raises(FormatError, match="value 1 of its batch is not valid UTF-8"):
        cell_batch.encrypt_many(Texts(b"ok\xff", [0, 2, 3]), KEY, 1, "string", PLACE)
    ok = cell_batch.encrypt_many(Texts("aé".encode(), [0, 1, 3]), KEY, 1, "string", PLACE)
    assert cell_batch.decrypt_many(ok, {1: KEY}, PLACE, strict=True).to_list() == ["a", "é"]


def test_cell_texts_that_are_not_utf8_are_not_cells():
    good = cell_format.encrypt_value("ok", KEY, 1, "string", PLACE)
    bad = Texts(good.encode() + b"\xff" + good.encode()[:-1] + b"\xff", [0, len(good) + 1,
                                                                       2 * len(good) + 1])
    assert cell_batch.decrypt_many(bad, {1: KEY}, PLACE, strict=False).to_list() == [
        None, None]
    with pytest.raises(FormatError, match="value 0 of its batch"):
        cell_batch.decrypt_many(bad, {1: KEY}, PLACE, strict=True)


def test_packed_row_keys_bind_as_text_row_keys():
    rows = ["1", "2", None, "é#=x"]
    cells = cell_batch.encrypt_many(["a", "b", None, "d"], KEY, 1, "string", PLACE,
                                    row_column="id", row_values=rows)
    out = cell_batch.decrypt_many(packed(cells), {1: KEY}, PLACE, strict=True,
                                  row_column="id", row_values=packed(rows))
    assert out.to_list() == ["a", "b", None, "d"]
    for position, row in enumerate(rows):
        if row is not None:
            assert cell_format.decrypt_cell(cells[position], {1: KEY}, PLACE,
                                            row=RowKey("id", row))[0] == out[position]
    swapped = packed([cells[1], cells[0], None, cells[3]])
    assert cell_batch.decrypt_many(swapped, {1: KEY}, PLACE, strict=False, row_column="id",
                                   row_values=packed(rows)).to_list() == [None, None, None, "d"]
    # A cell whose row key is NULL: refused with its position, or NULL.
    with pytest.raises(FormatError, match=r"NULL.*value 1 of its batch"):
        cell_batch.decrypt_many(packed([cells[0], cells[1]]), {1: KEY}, PLACE, strict=True,
                                row_column="id", row_values=packed(["1", None]))
    with pytest.raises(FormatError, match="NULL"):
        cell_batch.encrypt_many(packed(["x", "y"]), KEY, 1, "string", PLACE,
                                row_column="id", row_values=packed(["1", None]))


def test_a_row_key_that_is_not_utf8_gives_the_same_aad_both_ways():
    rows = Texts(b"7\xff", [0, 2])
    assert _row_parts("id", rows) == [b"#id=7\xff"] == [_row_aad("id", rows[0])]
    cells = cell_batch.encrypt_many(packed(["v"]), KEY, 1, "string", PLACE,
                                    row_column="id", row_values=rows)
    assert cell_batch.decrypt_many(cells, {1: KEY}, PLACE, strict=True, row_column="id",
                                   row_values=rows).to_list() == ["v"]


def test_mixed_versions_legacy_and_expected_type_in_one_packed_batch():
    legacy_key = b"0123456789abcdefghijklmnopqrstuv"
    iv = os.urandom(12)
    legacy = base64.b64encode(iv + AESGCM(legacy_key).encrypt(iv, b"old", None)).decode()
    values = [cell_format.encrypt_value("a", KEY, 1, "string", PLACE),
              cell_format.encrypt_value("b", KEY2, 2, "string", PLACE),
              legacy, None,
              cell_format.encrypt_value("42", KEY, 1, "int", PLACE),
              cell_format.encrypt_value("c", KEY, 1, "string", PLACE),
              cell_format.encrypt_value("d", KEY, 3, "string", PLACE)]
    keys = {1: KEY, 2: KEY2}
    out = cell_batch.decrypt_many(packed(values, lead=b"::"), keys, PLACE, strict=False,
                                  expected_tag="string", legacy_key=legacy_key)
    assert out.to_list() == ["a", "b", "old", None, None, "c", None]
    for position, error in ((4, FormatError), (6, UnknownKeyVersion)):
        batch = [*values[:4], values[position], values[0]]
        with pytest.raises(error, match="value 4 of its batch"):
            cell_batch.decrypt_many(packed(batch), keys, PLACE, strict=True,
                                    expected_tag="string", legacy_key=legacy_key)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(st.none(), st.text(max_size=6), st.sampled_from(["x" * 11])),
                max_size=12),
       st.lists(st.tuples(st.integers(0, 11), st.integers(0, 80), st.integers(0, 255)),
                max_size=3),
       st.binary(max_size=3), st.binary(max_size=3), st.booleans())
def test_packed_and_list_agree_on_changed_cells(plains, changes, lead, null_bytes, strict):
    """Differential: cells with bytes changed anywhere, laid out with a lead and bytes
    under NULLs; the packed path, the list path and the one-cell path read the same, and
    strict mode names the same first bad value."""
    cells = cell_batch.encrypt_many(plains, KEY, 1, "string", PLACE)
    raw = [None if c is None else bytearray(c.encode()) for c in cells]
    for position, index, byte in changes:
        if position < len(raw) and raw[position] is not None and raw[position]:
            raw[position][index % len(raw[position])] = byte
    values = [None if r is None else bytes(r).decode("utf-8", "surrogateescape") for r in raw]
    expected = [reference(v, {1: KEY}) for v in values]
    texts = packed(values, lead=lead, null_bytes=null_bytes)
    first_bad = next((i for i, (v, e) in enumerate(zip(values, expected, strict=True))
                      if v is not None and e is None), None)
    if strict and first_bad is not None:
        with pytest.raises(BAD, match=f"value {first_bad} of its batch"):
            cell_batch.decrypt_many(texts, {1: KEY}, PLACE, strict=True)
        return
    out = cell_batch.decrypt_many(texts, {1: KEY}, PLACE, strict=strict)
    assert out.to_list() == expected
    assert cell_batch.decrypt_many(values, {1: KEY}, PLACE, strict=strict) == expected


def test_every_truncated_payload_is_refused_as_truncated():
    """Payloads of 0 to 27 bytes (no room for IV and tag), the header alone, and values
    shorter than the header are never opened, among values of other lengths and of one
    length (headers compared by strided slices), and named as the one-cell path names
    them."""
    good = cell_format.encrypt_value("x" * 30, KEY, 1, "string", PLACE)
    header = "ee1:1:string:"
    short = [header + base64.b64encode(os.urandom(n)).decode() for n in range(28)]
    assert _one_header(packed([short[0]] * 3), header.encode())
    for value in [*short, header[:-1], "ee1:", ""]:
        for batch in ([good, value, good], [value, value, value]):
            texts = packed(batch)
            expected = ["x" * 30 if v == good else None for v in batch]
            out = cell_batch.decrypt_many(texts, {1: KEY}, PLACE, strict=False)
            assert out.to_list() == expected
            with pytest.raises(FormatError, match=f"value {batch.index(value)} of its batch"):
                cell_batch.decrypt_many(texts, {1: KEY}, PLACE, strict=True)
    for value in short[1:]:  # canonical base64, of too few bytes
        with pytest.raises(FormatError, match=r"^encrypted cell is truncated \(value 0 "):
            cell_batch.decrypt_many(packed([value, good]), {1: KEY}, PLACE, strict=True)


def test_invalid_utf8_is_found_value_by_value():
    """All ASCII, valid whole with every value starting on a character, or else each value
    on its own: the positions found are exactly those whose own bytes are not UTF-8."""
    cases = [
        (Texts("aé日🔐".encode(), [0, 1, 3, 6, 10]), []),
        (Texts("é".encode() * 2, [0, 1, 4]), [0, 1]),  # valid whole, split characters
        (Texts(b"\xa9ab\xc3", [1, 2, 3, 4]), [2]),  # lead byte outside, last value cut
        (Texts("aéb".encode(), [0, 1, 3, 4], [True, False, True]), []),
        (Texts(b"a\xffb", [0, 1, 2, 3], [True, False, True]), []),  # bad bytes under NULL
        (Texts(b"", [0, 0, 0]), []),
    ]
    for texts, bad in cases:
        assert texts.invalid_utf8() == bad
        own = [p for p, s, e in texts.spans() if not _is_utf8(texts.data[s:e])]
        assert own == bad


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
