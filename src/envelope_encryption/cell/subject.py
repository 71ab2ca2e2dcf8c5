"""Subject-keyed cells: one key per data subject, derived from the scope's DEK and a salt.

A scope may key a column by a *subject* (a customer, a tenant): every value of a row is
encrypted under that row's subject key, so erasing the subject's salt erases exactly its
values while every other subject still decrypts (``docs/erasure-scopes.md``)::

    ee1:<version>:<type>+subj:<payload>

- the header is a ``ee1`` header with the suffix ``+subj``: the DEK version is the scope's,
  so every tool that counts cells per DEK version (retire, status) counts these too;
- ``payload`` is ``IV(12) || ciphertext || tag(16)``, AES-256-GCM as for every cell;
- the associated data is the header followed by the place ``catalog.schema.table.column``;
- the key is ``HKDF-SHA256(ikm = DEK of <version>, salt = subject salt (32 random bytes),
  info = "ee1/subject-key/<scope>/<version>/<subject hash>")``.

The subject hash is ``HMAC-SHA256(subject-id key, subject id)`` (first 16 bytes, hex): the
subject table and the audit trail name subjects by it, never in clear. The subject-id key is
``HKDF-SHA256(keyring integrity key, info = "ee1/subject-id/<scope>")``: already unwrapped by
every keyring use, so hashing costs no key-service call.

Pure functions, no I/O; nothing here logs, and no error holds a value, a key or a subject id.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..errors import DecryptionError, FormatError, UnknownKeyVersion
from ..secret import SecretKey
from .format import CELL_PREFIX, IV_BYTES, _strict_b64decode, decode_plaintext
from .types import TAG_PATTERN

SUBJECT_SUFFIX = "+subj"
SALT_BYTES = 32
KEY_BYTES = 32
HASH_BYTES = 16  # 128-bit subject hash: collisions need ~2^64 subjects
# Derived keys kept per process (and per worker), as ready AES-GCM ciphers: each holds
# ~2.8 KB of OpenSSL state (measured: 65,536 of them grew the process by 185 MiB), so 8,192
# of them stay under ~25 MiB however many subjects a table holds, and still cover the
# distinct subjects of an Arrow batch (10,000 rows by default) in the common case.
DEFAULT_CACHE_SIZE = 8_192

_SUBJECT_CELL = re.compile(
    rf"ee1:([1-9][0-9]{{0,9}}):({TAG_PATTERN})\+subj:([A-Za-z0-9+/]+={{0,2}})")
# The subject cell grammar for whole-column engines (Arrow's RE2), anchored.
SUBJECT_CELL_REGEX = rf"\A{_SUBJECT_CELL.pattern}\z"
# The header of a subject cell, for Spark's regexp engine (Java): version and type tag.
SUBJECT_HEADER_REGEX = r"^ee1:([1-9][0-9]{0,9}):([a-z_]+|decimal\([0-9]{1,2},[0-9]{1,2}\))\+subj:"


class SubjectErased(UnknownKeyVersion):
    """The cell's subject was erased: its salt is gone, so its key cannot be derived."""


def _hkdf(ikm: bytes, salt: bytes | None, info: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt,
                info=info.encode("utf-8")).derive(ikm)


def subject_id_key(integrity_key: SecretKey, scope: str) -> SecretKey:
    """The key that hashes subject ids of ``scope`` (domain-separated from every other use
    of the keyring's integrity key by its HKDF info)."""
    return SecretKey(_hkdf(integrity_key.reveal(), None, f"ee1/subject-id/{scope}"),
                     label=f"subject-id key {scope}")


def subject_hash(id_key: bytes, subject_id: str) -> str:
    """The pseudonym of a subject id (its canonical string): 32 hex characters."""
    return hmac.new(id_key, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()[
        :2 * HASH_BYTES]


def subject_key(dek: bytes, salt: bytes, scope: str, version: int, hashed: str) -> bytes:
    """The AES-256 key of one subject under one DEK version."""
    if len(salt) != SALT_BYTES:
        raise FormatError(f"subject {hashed} has a malformed salt ({len(salt)} bytes)")
    return _hkdf(dek, salt, f"ee1/subject-key/{scope}/{version}/{hashed}")


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def subject_header(version: int, type_tag: str) -> str:
    return f"ee1:{version}:{type_tag}{SUBJECT_SUFFIX}:"


def parse_subject_cell(cell: str) -> tuple[int, str, str, bytes]:
    """(version, type tag, header text, payload) of a subject cell, or :class:`FormatError`."""
    match = _SUBJECT_CELL.fullmatch(cell) if isinstance(cell, str) else None
    if match is None:
        raise FormatError("not a subject-keyed cell (expected 'ee1:<version>:<type>+subj:"
                          "<base64>')")
    header = cell[:match.start(3)]
    return int(match.group(1)), match.group(2), header, _strict_b64decode(match.group(3))


def is_subject_cell(value: object) -> bool:
    return isinstance(value, str) and value.startswith(CELL_PREFIX) \
        and _SUBJECT_CELL.fullmatch(value) is not None


class SubjectCiphers:
    """AES-GCM ciphers of subject keys, derived once and kept in a bounded LRU.

    Keyed by (version, subject hash, salt): a new salt (the subject erased, then written
    again) never reuses an old key. ``deks`` are the scope's DEKs by version (bytes)."""

    def __init__(self, scope: str, deks: dict[int, bytes],
                 size: int = DEFAULT_CACHE_SIZE) -> None:
        self.scope = scope
        self.deks = deks
        self.size = size
        self._ciphers: OrderedDict[tuple[int, str, bytes], Any] = OrderedDict()
        self.derived = 0  # how many keys were derived (a benchmark figure)

    def cipher(self, version: int, hashed: str, salt: bytes) -> Any:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        entry = (version, hashed, salt)
        found = self._ciphers.get(entry)
        if found is not None:
            self._ciphers.move_to_end(entry)
            return found
        dek = self.deks.get(version)
        if dek is None:
            raise UnknownKeyVersion(f"cell names DEK version {version}, which is not available")
        found = self._ciphers[entry] = AESGCM(subject_key(dek, salt, self.scope, version,
                                                          hashed))
        self.derived += 1
        if len(self._ciphers) > self.size:
            self._ciphers.popitem(last=False)
        return found


_WORKER_CACHE: dict[str, SubjectCiphers] = {}


def worker_ciphers(token: str, scope: str, deks: dict[int, bytes]) -> SubjectCiphers:
    """The subject-key cache of one query (``token``) in this process: made at its first
    batch, reused by the later batches and tasks the process runs for it. One query's cache
    at a time per process, so memory stays bounded however many queries run."""
    found = _WORKER_CACHE.get(token)
    if found is None:
        _WORKER_CACHE.clear()
        found = _WORKER_CACHE[token] = SubjectCiphers(scope, deks)
    return found


def _subject_salt(hashed: str | None, salt: bytes | None, erased: bool | None) -> bytes:
    """The salt of a row's subject, or the error saying why there is none."""
    if hashed is None:
        raise FormatError("the row's subject is NULL: a subject-keyed cell needs one")
    if erased:
        raise SubjectErased(f"subject {hashed} was erased: its cells cannot be opened")
    if salt is None:
        raise UnknownKeyVersion(f"subject {hashed} has no salt in the subject table")
    return bytes(salt)


def encrypt_subject_many(
    values: Sequence[str | None], hashes: Sequence[str | None],
    salts: Sequence[bytes | None], erased: Sequence[bool | None], ciphers: SubjectCiphers,
    version: int, type_tag: str, place: str,
) -> list[str | None]:
    """Encrypt a batch of canonical strings, each under its row's subject key.

    NULL stays NULL. A value that already is a subject cell of this place opening under its
    row's subject key is kept (a re-run encrypts nothing twice); any other value is
    encrypted. A row whose subject is NULL, unknown or erased is refused."""
    from binascii import b2a_base64

    header = subject_header(version, type_tag)
    aad = (header + place).encode("utf-8")
    ivs = os.urandom(IV_BYTES * len(values))
    out: list[str | None] = list(values)
    for position, value in enumerate(values):
        if value is None:
            continue
        try:
            salt = _subject_salt(hashes[position], salts[position], erased[position])
            if value.startswith(CELL_PREFIX) and _opens(value, hashes[position], salt,
                                                       ciphers, place):
                continue
            iv = ivs[IV_BYTES * position:IV_BYTES * (position + 1)]
            sealed = ciphers.cipher(version, hashes[position], salt).encrypt(
                iv, value.encode("utf-8"), aad)
        except (FormatError, UnknownKeyVersion) as error:
            raise type(error)(f"{error} (value {position} of its batch)") from None
        out[position] = header + b2a_base64(iv + sealed, newline=False).decode("ascii")
    return out


def _opens(value: str, hashed: str, salt: bytes, ciphers: SubjectCiphers, place: str) -> bool:
    try:
        _open(value, hashed, salt, ciphers, place, None)
    except (FormatError, UnknownKeyVersion, DecryptionError):
        return False
    return True


def _open(value: str, hashed: str, salt: bytes, ciphers: SubjectCiphers, place: str,
          expected_tag: str | None) -> str:
    from cryptography.exceptions import InvalidTag

    version, tag, header, payload = parse_subject_cell(value)
    if expected_tag is not None and tag != expected_tag:
        raise FormatError(f"cell holds a {tag} value where {expected_tag} is expected")
    cipher = ciphers.cipher(version, hashed, salt)
    try:
        plain = cipher.decrypt(payload[:IV_BYTES], payload[IV_BYTES:],
                               (header + place).encode("utf-8"))
    except InvalidTag:
        raise DecryptionError(
            f"cell (DEK version {version}) does not authenticate at {place} for subject "
            f"{hashed}: wrong subject, moved from another column, or tampered") from None
    return decode_plaintext(plain)


def decrypt_subject_many(
    values: Sequence[str | None], hashes: Sequence[str | None],
    salts: Sequence[bytes | None], erased: Sequence[bool | None], ciphers: SubjectCiphers,
    place: str, *, strict: bool, expected_tag: str | None = None,
) -> list[str | None]:
    """Decrypt a batch of subject cells, each with its row's subject key; NULL stays NULL.

    Strict: the first value that does not open raises (an erased subject's cell raises
    :class:`SubjectErased`, naming the subject's hash). Lenient: it becomes NULL. Never a
    wrong plaintext: every value is authenticated by GCM under its subject's key."""
    out: list[str | None] = [None] * len(values)
    for position, value in enumerate(values):
        if value is None:
            continue
        try:
            salt = _subject_salt(hashes[position], salts[position], erased[position])
            out[position] = _open(value, hashes[position], salt, ciphers, place,
                                  expected_tag)
        except (FormatError, UnknownKeyVersion, DecryptionError) as error:
            if strict:
                raise type(error)(f"{error} (value {position} of its batch)") from None
    return out
