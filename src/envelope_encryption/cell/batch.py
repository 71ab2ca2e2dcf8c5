"""Batch forms of the cell format for the Spark layer: one cipher object per batch and key.

Every function takes the values of one column of one batch, and, where the table binds rows
(``row_column``), the canonical row key of each value (``row_values``, same length). NULL
stays NULL. Nothing here logs, and no error message contains a value, a plaintext or a key.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence

from ..errors import DecryptionError, FormatError, UnknownKeyVersion
from .format import (
    CELL_PREFIX,
    IV_BYTES,
    CellHeader,
    RowKey,
    aad_for,
    decode_plaintext,
    parse_cell,
    require_binding,
)
from .legacy import LegacyKeys, open_legacy_cell

CELL_ERRORS = (FormatError, UnknownKeyVersion, DecryptionError)


def _rows(row_column: str | None, row_values: Sequence[str | None] | None,
          count: int) -> list[RowKey | None]:
    """The row key of each value (None everywhere when the table does not bind rows)."""
    if row_column is None:
        return [None] * count
    if row_values is None or len(row_values) != count:
        raise FormatError("row binding needs one row key per value")
    return [RowKey(row_column, value) for value in row_values]


class _Opener:
    """Opens cells of one place with the scope's keys, caching ciphers and AADs per batch."""

    def __init__(self, keys: Mapping[int, bytes], place: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.ciphers = {version: AESGCM(key) for version, key in keys.items()}
        self.place = place
        self.aads: dict[CellHeader, bytes] = {}

    def open(self, value: str, row: RowKey | None) -> tuple[str, CellHeader]:
        """(plaintext, header) of an authentic cell of this place (and row), else an error."""
        from cryptography.exceptions import InvalidTag

        header, payload = parse_cell(value)
        require_binding(header, row.column if row is not None else None)
        cipher = self.ciphers.get(header.version)
        if cipher is None:
            raise UnknownKeyVersion(
                f"cell names DEK version {header.version}, which is not available"
            )
        if row is None:
            aad = self.aads.get(header)
            if aad is None:
                aad = self.aads[header] = aad_for(header, self.place)
        else:
            aad = aad_for(header, self.place, row)
        try:
            plain = cipher.decrypt(payload[:IV_BYTES], payload[IV_BYTES:], aad)
        except InvalidTag:
            raise DecryptionError(
                f"cell (DEK version {header.version}) does not authenticate at {self.place}: "
                "wrong key, moved from another column or row, or tampered"
            ) from None
        return decode_plaintext(plain), header

    def authenticates(self, value: str, row: RowKey | None) -> bool:
        try:
            self.open(value, row)
        except CELL_ERRORS:
            return False
        return True


class _Sealer:
    """Encrypts canonical strings under one key, version and type at one place."""

    def __init__(self, key: bytes, version: int, place: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.cipher = AESGCM(key)
        self.version = version
        self.place = place

    def seal(self, plaintext: str, type_tag: str, row: RowKey | None) -> str:
        header = CellHeader(self.version, type_tag, row is not None)
        iv = os.urandom(IV_BYTES)
        sealed = self.cipher.encrypt(iv, plaintext.encode("utf-8"),
                                     aad_for(header, self.place, row))
        return header.text + base64.b64encode(iv + sealed).decode("ascii")


def _present(values: list[str | None], row_column: str | None,
             row_values: Sequence[str | None] | None):
    """(position, value, row key) of every non-NULL value of a batch."""
    rows = _rows(row_column, row_values, len(values))
    for position, (value, row) in enumerate(zip(values, rows, strict=True)):
        if value is not None:
            yield position, value, row


def _open_any(opener: _Opener, value: str, row: RowKey | None,
              legacy_key: LegacyKeys | None) -> tuple[str, CellHeader | None]:
    """(plaintext, header) of a cell, or (plaintext, None) of a legacy value."""
    if legacy_key is not None and not value.startswith(CELL_PREFIX):
        if row is not None:
            raise FormatError(f"legacy cell (bound to nothing) where this table binds rows to "
                              f"{row.column}")
        return open_legacy_cell(value, legacy_key), None
    return opener.open(value, row)


def encrypt_many(
    values: list[str | None], key: bytes, version: int, type_tag: str, place: str,
    keep: Mapping[int, bytes] | None = None, *, row_column: str | None = None,
    row_values: Sequence[str | None] | None = None,
) -> list[str | None]:
    """Encrypt a batch of canonical strings; NULL stays NULL.

    With ``keep`` (the scope's keys by version), a value that already is a cell and
    authenticates at ``place`` (and in its row) is kept as it is, so re-running a job
    encrypts nothing twice. A value that merely looks like a cell but does not authenticate
    is encrypted as data. With ``row_column`` every cell is bound to its row's key; a row
    whose key is NULL is refused.
    """
    sealer = _Sealer(key, version, place)
    opener = _Opener(keep, place) if keep is not None else None
    out = list(values)
    for position, value, row in _present(values, row_column, row_values):
        if not (opener is not None and value.startswith(CELL_PREFIX)
                and opener.authenticates(value, row)):
            out[position] = sealer.seal(value, type_tag, row)
    return out


def decrypt_many(
    values: list[str | None], keys: Mapping[int, bytes], place: str, *,
    strict: bool, expected_tag: str | None = None, legacy_key: LegacyKeys | None = None,
    row_column: str | None = None, row_values: Sequence[str | None] | None = None,
) -> list[str | None]:
    """Decrypt a batch of cells; NULL stays NULL.

    Strict: the first bad value raises (the message names its position in the batch, never
    its content). Lenient: a bad value becomes NULL, and the rest of the batch is read.
    ``expected_tag`` refuses cells of another type (a cell moved from another column fails
    its AAD anyway). ``legacy_key`` accepts header-less cells of the original notebooks,
    except where the table binds rows (a legacy cell is bound to nothing).
    """
    opener = _Opener(keys, place)
    out: list[str | None] = [None] * len(values)
    for position, value, row in _present(values, row_column, row_values):
        try:
            plain, header = _open_any(opener, value, row, legacy_key)
            if expected_tag is not None and header is not None \
                    and header.type_tag != expected_tag:
                raise FormatError(
                    f"cell holds a {header.type_tag} value where {expected_tag} is expected"
                )
            out[position] = plain
        except CELL_ERRORS as error:
            if strict:
                raise type(error)(f"{error} (value {position} of its batch)") from None
    return out


def reencrypt_many(
    values: list[str | None], keys: Mapping[int, bytes], key: bytes, version: int,
    place: str, *, legacy_key: LegacyKeys | None = None, row_column: str | None = None,
    row_values: Sequence[str | None] | None = None, bind_unbound: bool = False,
) -> list[str | None]:
    """Move a batch of cells to the active ``version`` (``key``); NULL stays NULL.

    Every value is authenticated first, the ones kept too: a cell already under the active
    version (with the table's binding) is kept as it is only if it opens; anything that
    does not open raises, so nothing is rewritten from, or kept as, a value that could not
    be read. ``bind_unbound`` (with ``row_column``) accepts unbound and legacy cells once,
    to bind a table's existing cells to their rows; without it they are refused there.
    """
    opener = _Opener(keys, place)
    sealer = _Sealer(key, version, place)
    out = list(values)
    for position, value, row in _present(values, row_column, row_values):
        # Where rows get bound now, an unbound cell is read as what it is: unbound.
        read_row = None if bind_unbound and not _row_bound(value) else row
        try:
            plain, header = _open_any(opener, value, read_row, legacy_key)
            if header is not None and header.version == version \
                    and header.row_bound == (row is not None):
                continue  # authentic, current, bound as the table wants: kept unchanged
            out[position] = sealer.seal(plain, header.type_tag if header else "string", row)
        except CELL_ERRORS as error:
            raise type(error)(f"{error} (value {position} of its batch)") from None
    return out


def _row_bound(value: str) -> bool:
    try:
        return parse_cell(value)[0].row_bound
    except FormatError:
        return False
