"""The canonical-base64 check (strict decoding plus the padding bits of the last quantum)
accepts exactly the texts that re-encoding the decoded bytes gives back, with the same
bytes, and ``_strict_b64decode`` raises exactly the errors it raised when it re-encoded the
whole text."""

from __future__ import annotations

import base64
import binascii
import itertools
import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envelope_encryption.cell.format import (
    IV_BYTES,
    TAG_BYTES,
    _strict_b64decode,
    canonical_b64decode,
)
from envelope_encryption.errors import FormatError

B64 = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
# Every character class a mutation can bring: the alphabet, padding, whitespace, the
# URL-safe alphabet, separators, other ASCII, and non-ASCII.
ODD = "= \n\t\r-_.:!%\x00\x7féÿ€"


def reference_decode(text):
    """The rule as it was: decode leniently, re-encode, compare the whole text."""
    try:
        payload = binascii.a2b_base64(text)
    except (binascii.Error, ValueError, TypeError):
        raise FormatError("encrypted cell has a malformed base64 payload") from None
    if not text or binascii.b2a_base64(payload, newline=False).decode("ascii") != text:
        raise FormatError("encrypted cell has a malformed or non-canonical base64 payload")
    if len(payload) < IV_BYTES + TAG_BYTES:
        raise FormatError("encrypted cell is truncated")
    return payload


def outcome(function, text):
    try:
        return "ok", function(text)
    except FormatError as error:
        return "error", str(error)


def canonical_by_reencoding(text: str) -> bytes | None:
    try:
        payload = binascii.a2b_base64(text)
    except (binascii.Error, ValueError):
        return None
    return payload if text and base64.b64encode(payload).decode("ascii") == text else None


def assert_same(text: str) -> None:
    expected = canonical_by_reencoding(text)
    assert canonical_b64decode(text) == expected, repr(text)
    if text.isascii():
        assert canonical_b64decode(text.encode("ascii")) == expected, repr(text)
    assert outcome(_strict_b64decode, text) == outcome(reference_decode, text), repr(text)


def test_every_short_text_over_a_mixed_alphabet():
    """Every text of up to 5 characters over letters of each padding class, padding and
    stray characters: both rules agree on each."""
    alphabet = "AQBgw/+EF0=\n -é"
    for length in range(6):
        for letters in itertools.product(alphabet, repeat=length):
            assert_same("".join(letters))


@pytest.mark.parametrize("size", [28, 29, 30, 31, 39, 40, 41])
def test_every_possible_last_character(size):
    """Each payload size ends its text in one of the three padding forms; every one of the
    256 code points below 256 and a few beyond as the last character, and as the last
    character before the padding."""
    text = base64.b64encode(os.urandom(size)).decode("ascii")
    data_end = len(text.rstrip("="))
    characters = [chr(c) for c in range(256)] + ["€", "\u2028", "\U0001f510"]
    for character in characters:
        assert_same(text[:-1] + character)
        assert_same(text[:data_end - 1] + character + text[data_end:])
        assert_same(text + character)
    for cut in range(1, 4):
        assert_same(text[:-cut])
    for padding in ("=", "==", "==="):
        assert_same(text + padding)
        assert_same(text.rstrip("=") + padding)


def test_every_non_zero_padding_bit_is_refused():
    """The last data character of "xx==" carries 4 padding bits, of "xxx=" 2, of a text
    without padding none: 4, 16 and 64 of the 64 characters are accepted there."""
    for size, unit in ((28, 16), (29, 4), (30, 1)):
        text = base64.b64encode(os.urandom(size)).decode("ascii")
        last = len(text.rstrip("=")) - 1
        accepted = [c for c in B64
                    if canonical_b64decode(text[:last] + c + text[last + 1:]) is not None]
        assert accepted == [c for c in B64 if B64.index(c) % unit == 0]


@settings(max_examples=600, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=0, max_size=60), st.lists(
    st.tuples(st.sampled_from(["insert", "delete", "replace"]), st.integers(0, 200),
              st.sampled_from(B64 + ODD)), max_size=3))
def test_mutated_texts(payload, mutations):
    text = base64.b64encode(payload).decode("ascii")
    assert_same(text)
    for kind, where, character in mutations:
        where = where % (len(text) + 1)
        if kind == "insert":
            text = text[:where] + character + text[where:]
        elif text and kind == "delete":
            text = text[:where] + text[where + 1:]
        elif text:
            where = min(where, len(text) - 1)
            text = text[:where] + character + text[where + 1:]
        assert_same(text)


def test_what_is_not_text_is_refused_as_before():
    payload = base64.b64encode(os.urandom(39))
    for value in (None, 12, b"", payload, bytearray(payload), memoryview(payload)):
        assert outcome(_strict_b64decode, value) == outcome(reference_decode, value)
        assert outcome(_strict_b64decode, value)[0] == "error"
    assert canonical_b64decode(None) is None
    assert canonical_b64decode(payload) == base64.b64decode(payload)
