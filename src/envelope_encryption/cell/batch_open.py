"""Opening cells in the batch loops (:mod:`.batch`): one opener per batch and place.

:class:`_Opener` checks each distinct header once and opens cells of one place;
:func:`_open_fast` is its bytes-level loop over packed values (:class:`~.texts.Texts`).
Nothing here logs, and no error message contains a value, a plaintext or a key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DecryptionError, FormatError, UnknownKeyVersion
from .format import (
    CELL_PREFIX,
    IV_BYTES,
    CellHeader,
    _header,
    _strict_b64decode,
    canonical_padding,
    decode_plaintext,
    parse_cell,
    require_binding,
)
from .texts import Texts

CELL_ERRORS = (FormatError, UnknownKeyVersion, DecryptionError)
_CELL_PREFIX = CELL_PREFIX.encode("ascii")


def _row_aad(row_column: str, row_value: str | None) -> bytes:
    """The row part of a row-bound cell's AAD (what :meth:`RowKey.text` makes, encoded).

    A row key read from packed bytes that are not UTF-8 (:meth:`Texts.text`) gets those
    bytes back, as the packed path (:func:`_row_parts`) uses them."""
    if row_value is None:
        raise FormatError(f"row key {row_column} is NULL: a cell cannot be bound to it")
    return f"#{row_column}={row_value}".encode("utf-8", "surrogateescape")


def _row_parts(row_column: str | None,
               rows: Sequence[str | None]) -> list[bytes | None] | None:
    """The row part of the AAD of each value (None at a NULL row key), or None when the
    table does not bind rows."""
    if row_column is None:
        return None
    if not isinstance(rows, Texts):
        return [None if row is None else _row_aad(row_column, row) for row in rows]
    prefix = _row_aad(row_column, "")
    return [None if raw is None else prefix + raw for raw in map(rows.raw, range(len(rows)))]


@dataclass(frozen=True)
class _Header:
    """A header text checked once: what every cell starting with exactly this text shares."""

    text: str
    header: CellHeader
    cipher: Any  # AESGCM of its version, None when the keyring lacks that version
    aad: bytes  # header + place, UTF-8: the AAD of an unbound cell, the prefix of a bound one

    @property
    def head(self) -> bytes:
        return self.text.encode("ascii")

    def opens(self, expected_tag: str | None, bound: bool) -> bool:
        """Whether its cells can open here (a key, the table's binding, the expected type):
        then they can only fail on their payload."""
        return self.cipher is not None and self.header.row_bound == bound \
            and expected_tag in (None, self.header.type_tag)


class _Opener:
    """Opens cells of one place with the scope's keys.

    A cell whose text starts with the previous cell's header text has that header: the
    header ends at its third ':' and the previous header text holds exactly three, the last
    one at its end. Such a cell skips the header parse; its payload and tag are checked in
    full. Any other cell is parsed in full (:func:`parse_cell`) and becomes the previous one.
    """

    def __init__(self, keys: Mapping[int, bytes], place: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.ciphers = {version: AESGCM(key) for version, key in keys.items()}
        self.place = place
        self.headers: dict[CellHeader, _Header] = {}
        self.last: _Header | None = None

    def entry(self, header: CellHeader) -> _Header:
        known = self.headers.get(header)
        if known is None:
            known = self.headers[header] = _Header(
                header.text, header, self.ciphers.get(header.version),
                (header.text + self.place).encode("utf-8"))
        return known

    def parse(self, value: str) -> tuple[_Header, bytes]:
        """The checked header of a cell and its payload, or :class:`FormatError`."""
        last = self.last
        if last is not None and value.startswith(last.text):
            return last, _strict_b64decode(value[len(last.text):])
        header, payload = parse_cell(value)
        self.last = known = self.entry(header)
        return known, payload

    def header_at(self, data: bytes, start: int, end: int) -> _Header | None:
        """The checked header the packed value ``data[start:end]`` starts with, or None when
        it does not start with a valid header (as :func:`parse_cell` finds it)."""
        if not data.startswith(_CELL_PREFIX, start, end):
            return None
        second = data.find(b":", start + len(_CELL_PREFIX), end)
        third = data.find(b":", second + 1, end) if second >= 0 else -1
        if third < 0:
            return None
        text = data[start:third + 1]
        header = _header(text.decode("ascii")) if text.isascii() else None
        return None if header is None else self.entry(header)

    def open(self, value: str, row_column: str | None,
             row_value: str | None) -> tuple[str, CellHeader]:
        """(plaintext, header) of an authentic cell of this place (and row), else an error."""
        return self.open_parsed(*self.parse(value), row_column, row_value)

    def open_parsed(self, entry: _Header, payload: bytes, row_column: str | None,
                    row_value: str | None) -> tuple[str, CellHeader]:
        from cryptography.exceptions import InvalidTag

        header = entry.header
        if header.row_bound != (row_column is not None):
            require_binding(header, row_column)
        if entry.cipher is None:
            raise UnknownKeyVersion(
                f"cell names DEK version {header.version}, which is not available"
            )
        aad = entry.aad if row_column is None else entry.aad + _row_aad(row_column, row_value)
        try:
            plain = entry.cipher.decrypt(payload[:IV_BYTES], payload[IV_BYTES:], aad)
        except InvalidTag:
            raise DecryptionError(
                f"cell (DEK version {header.version}) does not authenticate at {self.place}: "
                "wrong key, moved from another column or row, or tampered"
            ) from None
        return decode_plaintext(plain), header

    def authenticates(self, value: str, row_column: str | None,
                      row_value: str | None) -> bool:
        try:
            self.open(value, row_column, row_value)
        except CELL_ERRORS:
            return False
        return True


def _one_header(texts: Texts, head: bytes) -> bool:
    """Whether every value of ``texts`` starts with ``head``, told without a Python step
    per value; False also where it cannot be told so (NULLs, values of different lengths).

    Values of one length ``L`` lie back to back in the data, so the ``k``-th byte of every
    value is every ``L``-th byte from the first value's ``k``-th: one strided slice per
    header byte compares that byte of every value."""
    offsets, count = texts.offsets, len(texts)
    if texts.valid is not None or not count:
        return False
    first, end = offsets[0], offsets[-1]
    length = offsets[1] - first
    if length < len(head) or offsets != list(range(first, end + 1, length)):
        return False
    data = texts.data
    return all(data[first + k:end:length] == bytes((byte,)) * count
               for k, byte in enumerate(head))


def _open_fast(texts: Texts, opener: _Opener, expected_tag: str | None,
               row_parts: Sequence[bytes | None] | None) -> tuple[list[bytes], list[int]]:
    """The plaintext of each value the bytes-level path opens (``b""`` elsewhere), and the
    positions, in order, of the non-NULL values it leaves to the one-cell path.

    It opens a value only where the one-cell path gives the same plaintext: the value
    starts with a header already checked (:meth:`_Opener.header_at`) that opens here
    (:meth:`_Header.opens`); the rest is canonical base64; GCM authenticates it with that
    header's AAD (and its row's), which a payload shorter than IV and tag never passes.
    It leaves everything else (legacy values, bad headers, another binding or type,
    unknown versions, NULL row keys, bad payloads, failed tags), so that the one-cell path
    opens it or names its error. The plaintexts are not checked for UTF-8 here.
    """
    from binascii import a2b_base64

    from cryptography.exceptions import InvalidTag

    data = texts.data
    bound = row_parts is not None
    iv_bytes = IV_BYTES
    plains = [b""] * len(texts)
    later: list[int] = []
    head, skip, aad, decrypt = None, 0, b"", None  # no header yet: no value matches None
    check = True  # whether each value's header is compared on its own
    entry = opener.header_at(data, texts.offsets[0], texts.offsets[1]) if texts else None
    if entry is not None and entry.opens(expected_tag, bound) and _one_header(texts, entry.head):
        head, aad, decrypt, skip = entry.head, entry.aad, entry.cipher.decrypt, len(entry.head)
        check = False
    for position, start, end in texts.spans():
        # A value shorter than the header may match it with the next value's bytes; its
        # payload slice is then empty, and refused below.
        if check and data[start:start + skip] != head:
            entry = opener.header_at(data, start, end)
            if entry is None or not entry.opens(expected_tag, bound):
                later.append(position)
                continue
            head, aad, decrypt = entry.head, entry.aad, entry.cipher.decrypt
            skip = len(head)
        text = data[start + skip:end]
        try:  # canonical_b64decode, inlined: strict decoding, then the padding (below)
            payload = a2b_base64(text, strict_mode=True)
        except ValueError:  # binascii.Error
            later.append(position)
            continue
        # An empty payload text has no last character (IndexError). A payload shorter than
        # IV and tag never opens: GCM refuses it (ValueError under 8 bytes, InvalidTag from
        # 8 to 27), and the one-cell path names it truncated. TypeError: a NULL row key.
        try:
            if text[-1] == 0x3D and not canonical_padding(text, len(payload)):
                later.append(position)
                continue
            plains[position] = decrypt(payload[:iv_bytes], payload[iv_bytes:],
                                       aad + row_parts[position] if bound else aad)
        except (InvalidTag, ValueError, TypeError, IndexError):
            later.append(position)
    return plains, later
