"""Batch forms of the cell format for the Spark layer: one cipher object per batch and key.

Every function takes the values of one column of one batch, and, where the table binds rows
(``row_column``), the canonical row key of each value (``row_values``, same length). NULL
stays NULL. Nothing here logs, and no error message contains a value, a plaintext or a key.

The loops are the hot path of every DataFrame job, so they do per batch (or per distinct
header) what does not depend on the value: the IVs are drawn in one call, a header is
parsed and checked once per distinct header text, and each header's AAD prefix is built
once. Every value is still checked in full: its header text is compared exactly with an
already-checked header, its payload is decoded as strict canonical base64, and GCM
authenticates it with its header, place (and row).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DecryptionError, FormatError, UnknownKeyVersion
from .format import (
    CELL_PREFIX,
    IV_BYTES,
    CellHeader,
    RowKey,
    _strict_b64decode,
    decode_plaintext,
    parse_cell,
    require_binding,
)
from .legacy import LegacyKeys, open_legacy_cell

CELL_ERRORS = (FormatError, UnknownKeyVersion, DecryptionError)


def _row_keys(row_column: str | None, row_values: Sequence[str | None] | None,
              count: int) -> Sequence[str | None]:
    """The row key value of each value (None everywhere when the table does not bind rows).

    The row key column's name is validated once here, not once per value."""
    if row_column is None:
        return [None] * count
    RowKey(row_column, None)  # validates the column name
    if row_values is None or len(row_values) != count:
        raise FormatError("row binding needs one row key per value")
    return row_values


def _row_aad(row_column: str, row_value: str | None) -> bytes:
    """The row part of a row-bound cell's AAD (what :meth:`RowKey.text` makes, encoded)."""
    if row_value is None:
        raise FormatError(f"row key {row_column} is NULL: a cell cannot be bound to it")
    return f"#{row_column}={row_value}".encode()


@dataclass(frozen=True)
class _Header:
    """A header text checked once: what every cell starting with exactly this text shares."""

    text: str
    header: CellHeader
    cipher: Any  # AESGCM of its version, None when the keyring lacks that version
    aad: bytes  # header + place, UTF-8: the AAD of an unbound cell, the prefix of a bound one


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

    def parse(self, value: str) -> tuple[_Header, bytes]:
        """The checked header of a cell and its payload, or :class:`FormatError`."""
        last = self.last
        if last is not None and value.startswith(last.text):
            return last, _strict_b64decode(value[len(last.text):])
        header, payload = parse_cell(value)
        known = self.headers.get(header)
        if known is None:
            known = self.headers[header] = _Header(
                header.text, header, self.ciphers.get(header.version),
                (header.text + self.place).encode("utf-8"))
        self.last = known
        return known, payload

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


class _Sealer:
    """Encrypts canonical strings under one key, version and type at one place."""

    def __init__(self, key: bytes, version: int, place: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.cipher = AESGCM(key)
        self.version = version
        self.place = place
        self.prefixes: dict[tuple[str, bool], tuple[str, bytes]] = {}

    def prefix(self, type_tag: str, row_bound: bool) -> tuple[str, bytes]:
        """(header text, AAD prefix) of the cells this sealer writes, made once per kind."""
        found = self.prefixes.get((type_tag, row_bound))
        if found is None:
            text = CellHeader(self.version, type_tag, row_bound).text
            found = self.prefixes[(type_tag, row_bound)] = (
                text, (text + self.place).encode("utf-8"))
        return found

    def seal_all(self, positions: Sequence[int], plaintexts: Sequence[str | None],
                 type_tags: str | Sequence[str], row_column: str | None,
                 row_values: Sequence[str | None], out: list[str | None]) -> None:
        """Seal ``plaintexts[p]`` into ``out[p]`` for each position ``p`` of ``positions``.

        ``type_tags``: one tag for all, or the tag of each position. ``row_values``: each
        position's row key value (used where ``row_column`` binds rows).

        IVs: one ``os.urandom`` call for the whole batch, sliced into 12-byte IVs. Every
        value gets its own slice, and the bytes of one call are as uniform and independent
        as those of separate calls, so each IV is a fresh random 96-bit value exactly as
        with one call per value. The random-IV bound of NIST SP 800-38D (collision
        probability under 2^-32 for up to 2^32 values per key) is therefore unchanged: it
        is a bound per key, kept by rotating the DEK (``docs/cell-format.md``, "Limits"),
        not per batch.
        """
        from binascii import b2a_base64

        ivs = os.urandom(IV_BYTES * len(positions))
        encrypt = self.cipher.encrypt
        bound = row_column is not None
        same_tag = isinstance(type_tags, str)
        text, aad = self.prefix(type_tags, bound) if same_tag else ("", b"")
        start = 0
        for position in positions:
            if not same_tag:
                text, aad = self.prefix(type_tags[position], bound)
            iv = ivs[start:start + IV_BYTES]
            start += IV_BYTES
            sealed = encrypt(iv, plaintexts[position].encode("utf-8"),
                             aad + _row_aad(row_column, row_values[position]) if bound else aad)
            out[position] = text + b2a_base64(iv + sealed, newline=False).decode("ascii")


def _open_legacy(value: str, row_column: str | None, legacy_key: LegacyKeys) -> str:
    """The plaintext of a header-less value of the original notebooks (tried with each
    legacy key, newest first), else an error."""
    if row_column is not None:
        raise FormatError(f"legacy cell (bound to nothing) where this table binds rows to "
                          f"{row_column}")
    return open_legacy_cell(value, legacy_key)


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
    rows = _row_keys(row_column, row_values, len(values))
    if keep is None:
        todo = [position for position, value in enumerate(values) if value is not None]
    else:
        opener = _Opener(keep, place)
        todo = [position for position, value in enumerate(values) if value is not None
                and not (value.startswith(CELL_PREFIX)
                         and opener.authenticates(value, row_column, rows[position]))]
    out = list(values)
    _Sealer(key, version, place).seal_all(todo, values, type_tag, row_column, rows, out)
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
    rows = _row_keys(row_column, row_values, len(values))
    opener = _Opener(keys, place)
    out: list[str | None] = [None] * len(values)
    from cryptography.exceptions import InvalidTag

    entry = None  # the header of the previous cell, already checked
    clean = False  # whether cells with that header can only fail on their payload
    for position, value in enumerate(values):
        if value is None:
            continue
        try:
            if entry is not None and value.startswith(entry.text):  # the common header
                payload = _strict_b64decode(value[len(entry.text):])
            elif legacy_key is not None and not value.startswith(CELL_PREFIX):
                out[position] = _open_legacy(value, row_column, legacy_key)
                continue
            else:
                entry, payload = opener.parse(value)
                clean = entry.cipher is not None \
                    and entry.header.row_bound == (row_column is not None) \
                    and expected_tag in (None, entry.header.type_tag)
            if clean:
                aad = entry.aad if row_column is None \
                    else entry.aad + _row_aad(row_column, rows[position])
                try:
                    out[position] = entry.cipher.decrypt(
                        payload[:IV_BYTES], payload[IV_BYTES:], aad).decode("utf-8")
                    continue
                except (InvalidTag, UnicodeDecodeError):
                    pass  # not authentic or not UTF-8: the full path raises the right error
            plain, header = opener.open_parsed(entry, payload, row_column, rows[position])
            if expected_tag is not None and header.type_tag != expected_tag:
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
    rows = _row_keys(row_column, row_values, len(values))
    opener = _Opener(keys, place)
    plains: list[str | None] = [None] * len(values)
    tags: list[str] = ["string"] * len(values)
    todo: list[int] = []
    for position, value in enumerate(values):
        if value is None:
            continue
        try:
            if legacy_key is not None and not value.startswith(CELL_PREFIX):
                # Where rows get bound now, a legacy value is read as what it is: unbound.
                read_column = None if bind_unbound else row_column
                plains[position] = _open_legacy(value, read_column, legacy_key)
            else:
                entry, payload = opener.parse(value)
                # Where rows get bound now, an unbound cell is read as what it is: unbound.
                bound = entry.header.row_bound or not bind_unbound
                plain, header = opener.open_parsed(
                    entry, payload, row_column if bound else None, rows[position])
                if header.version == version and header.row_bound == (row_column is not None):
                    continue  # authentic, current, bound as the table wants: kept unchanged
                plains[position], tags[position] = plain, header.type_tag
            todo.append(position)
            if row_column is not None and rows[position] is None:
                _row_aad(row_column, None)  # a NULL row key: refused here, with its position
        except CELL_ERRORS as error:
            raise type(error)(f"{error} (value {position} of its batch)") from None
    out = list(values)
    _Sealer(key, version, place).seal_all(todo, plains, tags, row_column, rows, out)
    return out
