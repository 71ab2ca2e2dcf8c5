"""The encrypted-cell format (version 1).

A cell is a STRING::

    ee1:<version>:<type>:<payload>

- ``ee1``      format marker (envelope encryption, format 1);
- ``version``  the DEK version, a positive decimal integer without leading zeros;
- ``type``     the type tag of the plaintext (see :mod:`.types`);
- ``payload``  standard base64 (with padding) of ``IV(12) || ciphertext || tag(16)``, which
  is exactly what Spark's ``aes_encrypt(value, key, 'GCM', 'DEFAULT', iv, aad)`` returns.

The associated data is the UTF-8 string ``ee1:<version>:<type>:`` (the header, authenticated)
followed by the cell's place ``catalog.schema.table.column``. A cell therefore decrypts only
with the right key, in the column it was written to, with the header it was written with.

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
from .types import TAG_PATTERN

MARKER = "ee1"
IV_BYTES = 12
TAG_BYTES = 16
CELL_PREFIX = MARKER + ":"  # every cell starts with it
_CELL = re.compile(
    rf"^{MARKER}:([1-9][0-9]{{0,9}}):({TAG_PATTERN}):([A-Za-z0-9+/]+={{0,2}})$"
)
_HEADER = re.compile(rf"^{MARKER}:([1-9][0-9]{{0,9}}):({TAG_PATTERN}):$")


@dataclass(frozen=True)
class CellHeader:
    version: int
    type_tag: str

    @property
    def text(self) -> str:
        return f"{MARKER}:{self.version}:{self.type_tag}:"


def aad_for(header: CellHeader, place: str) -> bytes:
    """The associated data of a cell: its header text followed by its place."""
    return (header.text + place).encode("utf-8")


def is_cell(value: object) -> bool:
    """Whether ``value`` has the shape of a cell (it may still fail to authenticate)."""
    return isinstance(value, str) and value.startswith(CELL_PREFIX) and bool(_CELL.match(value))


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
    match = _HEADER.match(text)
    return CellHeader(int(match.group(1)), match.group(2)) if match else None


def _strict_b64decode(text: str) -> bytes:
    """Decode canonical base64 only, so that every change to a cell's text is detected.

    Lenient decoders skip stray characters and accept non-zero padding bits, which would
    let several texts stand for one payload; re-encoding and comparing refuses all of those.
    """
    try:
        payload = binascii.a2b_base64(text)
    except (binascii.Error, ValueError, TypeError):
        raise FormatError("encrypted cell has a malformed base64 payload") from None
    if not text or binascii.b2a_base64(payload, newline=False).decode("ascii") != text:
        raise FormatError("encrypted cell has a malformed or non-canonical base64 payload")
    if len(payload) < IV_BYTES + TAG_BYTES:
        raise FormatError("encrypted cell is truncated")
    return payload


def encrypt_value(
    plaintext: str, key: bytes, version: int, type_tag: str, place: str,
    *, iv: bytes | None = None,
) -> str:
    """Encrypt one canonical string into a cell.

    ``iv`` exists for the published test vectors only; leave it unset (a random 96-bit IV).
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = CellHeader(version, type_tag)
    iv = os.urandom(IV_BYTES) if iv is None else iv
    payload = iv + AESGCM(key).encrypt(iv, plaintext.encode("utf-8"), aad_for(header, place))
    return header.text + base64.b64encode(payload).decode("ascii")


def decrypt_cell(cell: str, keys: Mapping[int, bytes], place: str) -> tuple[str, CellHeader]:
    """Decrypt a cell with the key of the version it names. Returns (plaintext, header).

    Raises FormatError (not a cell, truncated), UnknownKeyVersion (no such key) or
    DecryptionError (wrong key, wrong place, tampered). Never returns wrong plaintext:
    GCM authenticates the payload, the header and the place together.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header, payload = parse_cell(cell)
    key = keys.get(header.version)
    if key is None:
        raise UnknownKeyVersion(f"cell names DEK version {header.version}, which is not available")
    try:
        plain = AESGCM(key).decrypt(
            payload[:IV_BYTES], payload[IV_BYTES:], aad_for(header, place)
        )
    except InvalidTag:
        raise DecryptionError(
            f"cell (DEK version {header.version}) does not authenticate at {place}: wrong key, "
            "moved from another column, or tampered"
        ) from None
    return plain.decode("utf-8"), header


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
    return plain.decode("utf-8")


# -- batch forms for the Spark layer: one cipher object per batch, not per value ------------


def encrypt_many(
    values: list[str | None], key: bytes, version: int, type_tag: str, place: str,
    keep: Mapping[int, bytes] | None = None,
) -> list[str | None]:
    """Encrypt a batch of canonical strings; NULL stays NULL.

    With ``keep`` (the scope's keys by version), a value that already is a cell and
    authenticates at ``place`` is kept as it is, so re-running a job encrypts nothing twice.
    A value that merely looks like a cell but does not authenticate is encrypted as data.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = CellHeader(version, type_tag)
    aad = aad_for(header, place)
    cipher = AESGCM(key)
    prefix = header.text
    out: list[str | None] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        if (keep is not None and value.startswith(CELL_PREFIX)
                and _authenticates(value, keep, place)):
            out.append(value)
            continue
        iv = os.urandom(IV_BYTES)
        out.append(prefix + base64.b64encode(iv + cipher.encrypt(iv, value.encode(), aad)).decode())
    return out


def _authenticates(value: str, keys: Mapping[int, bytes], place: str) -> bool:
    try:
        decrypt_cell(value, keys, place)
    except (FormatError, UnknownKeyVersion, DecryptionError):
        return False
    return True


def decrypt_many(
    values: list[str | None], keys: Mapping[int, bytes], place: str, *,
    strict: bool, expected_tag: str | None = None, legacy_key: bytes | None = None,
) -> list[str | None]:
    """Decrypt a batch of cells; NULL stays NULL.

    Strict: the first bad value raises (the message names its position in the batch, never
    its content). Lenient: a bad value becomes NULL. ``expected_tag`` refuses cells of
    another type (a cell moved from another column fails its AAD anyway). ``legacy_key``
    accepts header-less cells of the original notebooks.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    ciphers = {version: AESGCM(key) for version, key in keys.items()}
    aads: dict[CellHeader, bytes] = {}
    out: list[str | None] = []
    for position, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            if legacy_key is not None and not value.startswith(CELL_PREFIX):
                out.append(decrypt_legacy_cell(value, legacy_key))
                continue
            header, payload = parse_cell(value)
            if expected_tag is not None and header.type_tag != expected_tag:
                raise FormatError(
                    f"cell holds a {header.type_tag} value where {expected_tag} is expected"
                )
            cipher = ciphers.get(header.version)
            if cipher is None:
                raise UnknownKeyVersion(
                    f"cell names DEK version {header.version}, which is not available"
                )
            aad = aads.get(header)
            if aad is None:
                aad = aads[header] = aad_for(header, place)
            try:
                plain = cipher.decrypt(payload[:IV_BYTES], payload[IV_BYTES:], aad)
            except InvalidTag:
                raise DecryptionError(
                    f"cell (DEK version {header.version}) does not authenticate at {place}: "
                    "wrong key, moved from another column, or tampered"
                ) from None
            out.append(plain.decode("utf-8"))
        except (FormatError, UnknownKeyVersion, DecryptionError) as error:
            if strict:
                raise type(error)(f"{error} (value {position} of its batch)") from None
            out.append(None)
    return out
