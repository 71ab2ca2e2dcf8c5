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

The values come as a list of ``str | None`` or packed as a :class:`~.texts.Texts` (what
the Spark layer makes of an Arrow column); the loops work on the packed bytes either way,
and give back what they were given (a list, or packed values). A value the bytes-level
path does not open goes through the one-cell path, which opens it or names its error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from ..errors import FormatError
from .batch_open import (
    _CELL_PREFIX,
    CELL_ERRORS,
    _open_fast,
    _Opener,
    _row_aad,
    _row_parts,
)
from .format import CELL_PREFIX, IV_BYTES, CellHeader, RowKey
from .legacy import LegacyKeys, open_legacy_cell
from .texts import Texts


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


def _packed(values: Sequence[str | None]) -> Texts:
    return values if isinstance(values, Texts) else Texts.from_strings(values)


def _given_form(values: Sequence[str | None], out: Texts) -> Texts | list[str | None]:
    """``out`` in the form the values came in: packed, or a list."""
    return out if isinstance(values, Texts) else out.to_list()


class _Sealer:
    """Encrypts canonical strings under one key, version and type at one place."""

    def __init__(self, key: bytes, version: int, place: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.cipher = AESGCM(key)
        self.version = version
        self.place = place
        self.prefixes: dict[tuple[str, bool], tuple[bytes, bytes]] = {}

    def prefix(self, type_tag: str, row_bound: bool) -> tuple[bytes, bytes]:
        """(header, AAD prefix) of the cells this sealer writes, made once per kind."""
        found = self.prefixes.get((type_tag, row_bound))
        if found is None:
            text = CellHeader(self.version, type_tag, row_bound).text
            found = self.prefixes[(type_tag, row_bound)] = (
                text.encode("ascii"), (text + self.place).encode("utf-8"))
        return found

    def seal_all(self, plaintexts: Texts, todo: Sequence[bool] | None, type_tag: str,
                 row_parts: Sequence[bytes | None] | None, out: list[bytes]) -> None:
        """Seal each non-NULL value of ``plaintexts`` (those ``todo`` flags, when given)
        as a ``type_tag`` cell into ``out[position]``, as the bytes of the cell.

        ``row_parts``: the row part of each position's AAD where the table binds rows
        (none of the sealed positions' is None).

        IVs: one ``os.urandom`` call for the whole batch, sliced into 12-byte IVs. Every
        value gets its own slice, and the bytes of one call are as uniform and independent
        as those of separate calls, so each IV is a fresh random 96-bit value exactly as
        with one call per value. The random-IV bound of NIST SP 800-38D (collision
        probability under 2^-32 for up to 2^32 values per key) is therefore unchanged: it
        is a bound per key, kept by rotating the DEK (``docs/cell-format.md``, "Limits"),
        not per batch.
        """
        from binascii import b2a_base64

        select = plaintexts.valid if todo is None else todo
        ivs = os.urandom(IV_BYTES * (len(plaintexts) if select is None else sum(select)))
        encrypt = self.cipher.encrypt
        data = plaintexts.data
        bound = row_parts is not None
        head, aad = self.prefix(type_tag, bound)
        iv_start = 0
        for position, start, end in plaintexts.spans(todo):
            iv = ivs[iv_start:iv_start + IV_BYTES]
            iv_start += IV_BYTES
            sealed = encrypt(iv, data[start:end], aad + row_parts[position] if bound else aad)
            out[position] = head + b2a_base64(iv + sealed, newline=False)


def _open_legacy(value: str, row_column: str | None, legacy_key: LegacyKeys) -> str:
    """The plaintext of a header-less value of the original notebooks (tried with each
    legacy key, newest first), else an error."""
    if row_column is not None:
        raise FormatError(f"legacy cell (bound to nothing) where this table binds rows to "
                          f"{row_column}")
    return open_legacy_cell(value, legacy_key)


def encrypt_many(
    values: Sequence[str | None], key: bytes, version: int, type_tag: str, place: str,
    keep: Mapping[int, bytes] | None = None, *, row_column: str | None = None,
    row_values: Sequence[str | None] | None = None,
) -> list[str | None] | Texts:
    """Encrypt a batch of canonical strings; NULL stays NULL.

    With ``keep`` (the scope's keys by version), a value that already is a cell and
    authenticates at ``place`` (and in its row) is kept as it is, so re-running a job
    encrypts nothing twice. A value that merely looks like a cell but does not authenticate
    is encrypted as data. With ``row_column`` every cell is bound to its row's key; a row
    whose key is NULL is refused. Packed values (:class:`Texts`) come back packed; a value
    whose bytes are not UTF-8 (a Spark STRING may hold any bytes) is refused.
    """
    rows = _row_keys(row_column, row_values, len(values))
    texts = _packed(values)
    bad = texts.invalid_utf8()
    if bad:
        raise FormatError(f"value {bad[0]} of its batch is not valid UTF-8: it cannot be "
                          "encrypted as text")
    data = texts.data
    todo = None
    out = [b""] * len(texts)
    # A cell starts with the prefix, so a batch whose bytes hold none has none to keep.
    if keep is not None and _CELL_PREFIX in data:
        opener = _Opener(keep, place)
        todo = [True] * len(texts) if texts.valid is None else list(texts.valid)
        for position, start, end in texts.spans():
            if data.startswith(_CELL_PREFIX, start, end) and opener.authenticates(
                    texts.text(position), row_column, rows[position]):
                todo[position] = False
                out[position] = data[start:end]
    row_parts = _row_parts(row_column, rows)
    if row_parts is not None and None in (row_parts[p] for p, _, _ in texts.spans(todo)):
        _row_aad(row_column, None)  # raises: a NULL row key binds no cell
    _Sealer(key, version, place).seal_all(texts, todo, type_tag, row_parts, out)
    return _given_form(values, Texts.pack(out, texts.valid))


def _open_one(opener: _Opener, value: str, expected_tag: str | None,
              legacy_key: LegacyKeys | None, row_column: str | None,
              row_value: str | None) -> str:
    """The plaintext of one value as the format page says it is read, else an error."""
    if legacy_key is not None and not value.startswith(CELL_PREFIX):
        return _open_legacy(value, row_column, legacy_key)
    plain, header = opener.open(value, row_column, row_value)
    if expected_tag is not None and header.type_tag != expected_tag:
        raise FormatError(
            f"cell holds a {header.type_tag} value where {expected_tag} is expected"
        )
    return plain


def decrypt_many(
    values: Sequence[str | None], keys: Mapping[int, bytes], place: str, *,
    strict: bool, expected_tag: str | None = None, legacy_key: LegacyKeys | None = None,
    row_column: str | None = None, row_values: Sequence[str | None] | None = None,
) -> list[str | None] | Texts:
    """Decrypt a batch of cells; NULL stays NULL.

    Strict: the first bad value raises (the message names its position in the batch, never
    its content). Lenient: a bad value becomes NULL, and the rest of the batch is read.
    ``expected_tag`` refuses cells of another type (a cell moved from another column fails
    its AAD anyway). ``legacy_key`` accepts header-less cells of the original notebooks,
    except where the table binds rows (a legacy cell is bound to nothing). Packed values
    (:class:`Texts`) come back packed.
    """
    rows = _row_keys(row_column, row_values, len(values))
    texts = _packed(values)
    opener = _Opener(keys, place)
    plains, later = _open_fast(texts, opener, expected_tag, _row_parts(row_column, rows))
    opened = Texts.pack(plains, texts.valid)
    # A plaintext that is not UTF-8 is read again on its own, which names the error.
    later = sorted([*later, *opened.invalid_utf8()])
    if later:
        valid = [True] * len(texts) if texts.valid is None else list(texts.valid)
        for position in later:
            try:
                plains[position] = _open_one(opener, texts.text(position), expected_tag,
                                             legacy_key, row_column, rows[position]
                                             ).encode("utf-8")
            except CELL_ERRORS as error:
                if strict:
                    raise type(error)(f"{error} (value {position} of its batch)") from None
                valid[position] = False
        opened = Texts.pack(plains, valid)
    return _given_form(values, opened)


def reencrypt_many(
    values: Sequence[str | None], keys: Mapping[int, bytes], key: bytes, version: int,
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
    sealer = _Sealer(key, version, place)
    packed, row_parts = Texts.from_strings(plains), _row_parts(row_column, rows)
    sealed = [b""] * len(values)
    for tag in sorted({tags[position] for position in todo}):  # each type under its header
        sealer.seal_all(packed, [plain is not None and kind == tag
                                 for plain, kind in zip(plains, tags, strict=True)],
                        tag, row_parts, sealed)
    out = list(values)
    for position in todo:
        out[position] = sealed[position].decode("ascii")
    return out
