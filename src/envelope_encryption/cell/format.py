"""The encrypted-cell format (version 1).

A cell is a STRING::

    ee1:<version>:<type>:<payload>        bound to its place
    ee1:<version>:<type>+row:<payload>    bound to its place and to its row

- ``ee1``      format marker (envelope encryption, format 1);
- ``version``  the DEK version, a positive decimal integer without leading zeros;
- ``type``     the type tag of the plaintext (see :mod:`.types`); the suffix ``+row`` says
  the cell is bound to its row's key (see ``docs/cell-format.md``, "Row binding");
- ``payload``  standard base64 (with padding) of ``IV(12) || ciphertext || tag(16)``, which
  is exactly what Spark's ``aes_encrypt(value, key, 'GCM', 'DEFAULT', iv, aad)`` returns.

The associated data is the UTF-8 string ``ee1:<version>:<type>:`` (the header, authenticated)
followed by the cell's place ``catalog.schema.table.column``, and for a row-bound cell by
``#<row key column>=<row key value>``. A cell therefore decrypts only with the right key, in
the column it was written to, with the header it was written with (and in its row).

Nothing here logs, and no error message contains a value, a plaintext or a key.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import DecryptionError, FormatError, UnknownKeyVersion
from ..identifiers import validate_identifier
from .types import TAG_PATTERN

MARKER = "ee1"
IV_BYTES = 12
TAG_BYTES = 16
CELL_PREFIX = MARKER + ":"  # every cell starts with it
ROW_BOUND_SUFFIX = "+row"  # after the type tag: the cell's AAD holds its row key
# Matched with fullmatch: "$" would accept a trailing newline.
_CELL = re.compile(
    rf"{MARKER}:([1-9][0-9]{{0,9}}):({TAG_PATTERN})(\+row)?:([A-Za-z0-9+/]+={{0,2}})"
)
# The same grammar for whole-column engines (Arrow's RE2): anchored at both ends of the
# text; RE2's "\z" never matches before a trailing newline.
CELL_REGEX = rf"\A{_CELL.pattern}\z"
_HEADER = re.compile(rf"{MARKER}:([1-9][0-9]{{0,9}}):({TAG_PATTERN})(\+row)?:")


@dataclass(frozen=True)
class CellHeader:
    version: int
    type_tag: str
    row_bound: bool = False

    @property
    def text(self) -> str:
        suffix = ROW_BOUND_SUFFIX if self.row_bound else ""
        return f"{MARKER}:{self.version}:{self.type_tag}{suffix}:"


@dataclass(frozen=True)
class RowKey:
    """The row a cell is read or written in, where the table binds rows: the key column's
    name and the row's canonical key value (None: the row's key is NULL)."""

    column: str
    value: str | None

    def __post_init__(self) -> None:
        validate_identifier(self.column, "row key column")

    @property
    def text(self) -> str:
        if self.value is None:
            raise FormatError(f"row key {self.column} is NULL: a cell cannot be bound to it")
        # The value comes last, so no character of it can make two bindings look alike.
        return f"#{self.column}={self.value}"


def aad_for(header: CellHeader, place: str, row: RowKey | None = None) -> bytes:
    """The associated data of a cell: its header, its place and (row-bound) its row key."""
    if header.row_bound != (row is not None):
        raise FormatError(
            "a row-bound cell needs its row key, and only a row-bound cell takes one"
        )
    return (header.text + place + (row.text if row is not None else "")).encode("utf-8")


def require_binding(header: CellHeader, row_column: str | None) -> None:
    """Refuse a cell whose binding differs from the table's: a row-bound cell read without
    the row key column, or an unbound cell where the table binds rows (an attacker could
    otherwise put an unbound cell of the same column into any row)."""
    if header.row_bound and row_column is None:
        raise FormatError("cell is bound to its row: read it with the table's row key column")
    if not header.row_bound and row_column is not None:
        raise FormatError(
            f"cell is not bound to its row, but this table binds rows to {row_column}"
        )


def is_cell(value: object) -> bool:
    """Whether ``value`` has the shape of a cell (it may still fail to authenticate)."""
    return isinstance(value, str) and value.startswith(CELL_PREFIX) and bool(_CELL.fullmatch(value))


def parse_cell(cell: str) -> tuple[CellHeader, bytes]:
    """Split a cell into its header and payload, or raise :class:`FormatError`."""
    if not isinstance(cell, str) or not cell.startswith(CELL_PREFIX):
        raise FormatError("not an encrypted cell (expected 'ee1:<version>:<type>:<base64>')")
    # The header ends at the third ':' (type tags contain none).
    end = cell.find(":", cell.find(":", len(CELL_PREFIX)) + 1) + 1
    header = _header(cell[:end]) if end > 0 else None
    if header is None:
        raise FormatError("not an encrypted cell (expected 'ee1:<version>:<type>:<base64>')")
    return header, _strict_b64decode(cell[end:])


@functools.lru_cache(maxsize=4096)
def _header(text: str) -> CellHeader | None:
    """The header a text stands for, validated once per distinct header (hot path)."""
    match = _HEADER.fullmatch(text)
    return CellHeader(int(match.group(1)), match.group(2), bool(match.group(3))) if match else None


# Base64 characters whose low 4 (or 2) bits are zero. In canonical base64 the character
# before "==" carries 4 padding bits and the one before a single "=" carries 2, all zero.
_LOW_4_BITS_ZERO = frozenset(b"AQgw")
_LOW_2_BITS_ZERO = frozenset(b"AEIMQUYcgkosw048")


def canonical_padding(text: bytes, size: int) -> bool:
    """Whether base64 ending in ``=`` that ``a2b_base64(strict_mode=True)`` decoded to
    ``size`` bytes is padded exactly as canonical base64 is: one ``=`` for 2 bytes over a
    multiple of 3, two for 1 byte over, and the padding bits of the character before zero.

    Strict mode accepts padding after a complete quantum (``AAAA=``); the size refuses it.
    """
    if text[-2] == 0x3D:  # "=="
        return size % 3 == 1 and text[-3] in _LOW_4_BITS_ZERO
    return size % 3 == 2 and text[-2] in _LOW_2_BITS_ZERO


def canonical_b64decode(text: str | bytes) -> bytes | None:
    """The bytes of canonical base64 ``text`` (the one text that encodes them), else None.

    ``a2b_base64(strict_mode=True)`` refuses stray characters, whitespace, missing, leading
    and inner padding; what it still accepts besides canonical text is padding after a
    complete quantum and non-zero padding bits, which :func:`canonical_padding` refuses.
    This is exactly "re-encoding gives the same text" (``tests/cell/test_canonical_base64.py``
    compares the two), without re-encoding the whole text.
    """
    if not text:
        return None
    try:
        payload = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError, TypeError):
        return None
    if isinstance(text, str):
        text = text[-3:].encode("ascii")  # strict mode accepted it: ASCII only
    if text[-1] == 0x3D and not canonical_padding(text, len(payload)):
        return None
    return payload


def _strict_b64decode(text: str) -> bytes:
    """Decode canonical base64 only, so that every change to a cell's text is detected.

    Lenient decoders skip stray characters and accept non-zero padding bits, which would
    let several texts stand for one payload; only the one text that re-encoding the bytes
    gives is accepted (:func:`canonical_b64decode`).
    """
    payload = canonical_b64decode(text) if isinstance(text, str) else None
    if payload is None:
        try:
            binascii.a2b_base64(text)
        except (binascii.Error, ValueError, TypeError):
            raise FormatError("encrypted cell has a malformed base64 payload") from None
        raise FormatError("encrypted cell has a malformed or non-canonical base64 payload")
    if len(payload) < IV_BYTES + TAG_BYTES:
        raise FormatError("encrypted cell is truncated")
    return payload


def decode_plaintext(plain: bytes) -> str:
    """An authenticated plaintext as text; one that is not UTF-8 is a :class:`FormatError`.

    Such a cell is authentic but was not written by this library (Spark's SQL
    ``aes_encrypt`` of ``CAST(X'FF' AS STRING)`` makes one): it is refused like any other
    value that is not a well-formed cell, never turned into replacement characters.
    """
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("cell authenticates but its plaintext is not valid UTF-8") from None


def encrypt_value(
    plaintext: str, key: bytes, version: int, type_tag: str, place: str,
    *, iv: bytes | None = None, row: RowKey | None = None,
) -> str:
    """Encrypt one canonical string into a cell (row-bound when ``row`` is given).

    ``iv`` exists for the published test vectors only; leave it unset (a random 96-bit IV).
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = CellHeader(version, type_tag, row is not None)
    iv = os.urandom(IV_BYTES) if iv is None else iv
    payload = iv + AESGCM(key).encrypt(
        iv, plaintext.encode("utf-8"), aad_for(header, place, row)
    )
    return header.text + base64.b64encode(payload).decode("ascii")


def decrypt_cell(
    cell: str, keys: Mapping[int, bytes], place: str, *, row: RowKey | None = None,
) -> tuple[str, CellHeader]:
    """Decrypt a cell with the key of the version it names. Returns (plaintext, header).

    ``row`` is the cell's row key, given exactly where the table binds rows. Raises FormatError
    (not a cell, truncated, binding differs from the table's, plaintext not UTF-8),
    UnknownKeyVersion (no such key) or DecryptionError (wrong key, wrong place or row,
    tampered). Never returns wrong plaintext: GCM authenticates the payload, the header,
    the place and the row together.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header, payload = parse_cell(cell)
    require_binding(header, row.column if row is not None else None)
    key = keys.get(header.version)
    if key is None:
        raise UnknownKeyVersion(f"cell names DEK version {header.version}, which is not available")
    try:
        plain = AESGCM(key).decrypt(
            payload[:IV_BYTES], payload[IV_BYTES:], aad_for(header, place, row)
        )
    except InvalidTag:
        raise DecryptionError(
            f"cell (DEK version {header.version}) does not authenticate at {place}: wrong key, "
            "moved from another column or row, or tampered"
        ) from None
    return decode_plaintext(plain), header


def decrypt_legacy_cell(value: str, key: bytes) -> str:
    """Decrypt a cell written by the original notebooks: ``base64(aes_encrypt(v, k, 'GCM'))``.

    Such cells carry no header and no associated data; only scopes with an imported legacy
    DEK accept them.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    payload = _strict_b64decode(value)
    try:
        plain = AESGCM(key).decrypt(payload[:IV_BYTES], payload[IV_BYTES:], None)
    except InvalidTag:
        raise DecryptionError("legacy cell does not authenticate: wrong key or tampered") from None
    return decode_plaintext(plain)
