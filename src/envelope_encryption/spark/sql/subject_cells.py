"""What the batch functions of the subject-keyed column masks run (erasure scopes).

A subject-keyed cell (``ee1:<v>:<type>+subj:...``, docs/erasure-scopes.md) opens with a key
derived from the scope's DEK and its subject's salt. The mask ``decrypt_subject_<schema>``
gets the subject id from the row (``USING COLUMNS``) and needs the salt of each row:

1. ``subject_hash(subject, keyring)`` (:func:`subject_hash_batches`) hashes each subject id
   with the scope's subject-id key, derived from the keyring's integrity key, which it
   verifies and unwraps (once per worker: the DEK cache) from the integrity record in the
   key subquery's ``keyring`` text. NULL when ``keyring`` is NULL (not a reader of
   plaintext): nothing is unwrapped, and the salt lookup matches nothing;
2. the SQL looks the hash up in ``dek_subjects`` (a correlated scalar subquery, which Spark
   runs as a left outer join on the hash): the subject's salt and erased flag;
3. ``decrypt_subject_cells(value, place, keyring, subject, strict)``
   (:func:`decrypt_subject_cells_batches`; ``subject``: the lookup's answer packed in one
   BINARY, hash and salt, the hash alone once erased, see :func:`unpack_subject`) verifies
   the keyring's records and unwraps their DEKs through :func:`.decrypt_cells.scope_keys`
   (once per worker and version, as the scope masks do) and opens each cell with its
   subject's key, derived and kept in the per-worker LRU of
   :mod:`envelope_encryption.cell.subject` (:func:`~envelope_encryption.cell.subject.
   decrypt_subject_many`). It answers the plaintext; a cell that does not open is NULL
   (lenient) or fails the query with that function's error (strict): an erased subject's
   with :class:`~envelope_encryption.cell.subject.SubjectErased`, naming the subject's hash,
   as the DataFrame path does. (Unlike ``decrypt_cells`` it does not answer ``!cause`` for
   SQL to raise: the lookup inside its arguments would be joined once per copy of the call.)

Key-service calls: DEK versions (and the integrity key) per worker, whatever the number of
subjects. No key, DEK or derived key enters a Spark plan; salts and hashes are values of
the query (the join's rows), as the keyring records are.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ...cell.subject import (
    HASH_BYTES,
    SubjectCiphers,
    decrypt_subject_many,
    subject_hash,
    subject_id_key,
    worker_ciphers,
)
from ...errors import EnvelopeError, KeyringError, UnknownKeyVersion
from .batch_columns import column_like, column_values
from .decrypt_cells import scope_keys
from .runtime import integrity_key


def _passed_keyring(keyring: str) -> tuple[str, list[Any], Any]:
    """(scope, records, integrity record) of the key subquery's ``keyring`` text."""
    try:
        passed = json.loads(keyring)
        return passed["key_alias"], list(passed["records"] or []), passed.get("integrity")
    except (TypeError, ValueError, KeyError):
        raise KeyringError("subject functions: the keyring passed is not the key subquery's: "
                           "refused") from None


def hash_subjects(payload: Mapping[str, Any], subjects: Any, keyrings: Any) -> list[str | None]:
    """The subject hash of each row (NULL for a NULL subject or keyring)."""
    id_keys: dict[str, bytes] = {}
    out: list[str | None] = []
    for subject, keyring in zip(column_values(subjects), column_values(keyrings), strict=True):
        if subject is None or keyring is None:
            out.append(None)
            continue
        id_key = id_keys.get(keyring)
        if id_key is None:
            scope, _, integrity = _passed_keyring(keyring)
            id_key = id_keys[keyring] = subject_id_key(
                integrity_key(payload, scope, integrity), scope).reveal()
        out.append(subject_hash(id_key, str(subject)))
    return out


def subject_hash_batches(batches: Iterator[tuple[Any, ...]],
                         payload: Mapping[str, Any]) -> Iterator[Any]:
    """Batch handler of ``subject_hash(subject, keyring)``."""
    for subjects, keyrings in batches:
        yield column_like(subjects, hash_subjects(payload, subjects, keyrings))


def _ciphers(payload: Mapping[str, Any], keyring: str,
             on_unwrap: Callable[[int], None] | None) -> SubjectCiphers:
    """The subject-key cache of one keyring text in this worker, over its verified DEKs."""
    scope, _, _ = _passed_keyring(keyring)
    keys = scope_keys(payload, keyring, on_unwrap)
    token = hashlib.sha256(keyring.encode("utf-8")).hexdigest()
    return worker_ciphers(token, scope, keys.keys)


def unpack_subject(packed: bytes | None) -> tuple[str | None, bytes | None, bool | None]:
    """(hash, salt, erased) of the subject lookup's answer: ``hash(16) || salt(32)``, the
    hash alone for an erased subject, NULL for a subject not in the table (or no reader)."""
    if packed is None:
        return None, None, None
    packed = bytes(packed)
    hashed = packed[:HASH_BYTES].hex()
    if len(packed) == HASH_BYTES:
        return hashed, None, True
    return hashed, packed[HASH_BYTES:], False


def open_subject_batch(payload: Mapping[str, Any], columns: Sequence[Any],
                       on_unwrap: Callable[[int], None] | None = None) -> list[str | None]:
    """The plaintexts of one batch: ``columns`` are (values, places, keyrings, subjects,
    strict flags), pyarrow arrays or pandas Series; NULL for NULL, for a reader without a
    keyring, and (lenient) for a cell that does not open."""
    values, places, keyrings, packed, strict = (column_values(c) for c in columns)
    out: list[str | None] = [None] * len(values)
    groups: dict[tuple[str, str, bool], list[int]] = {}
    for row, (value, keyring, place) in enumerate(zip(values, keyrings, places, strict=True)):
        if value is None or keyring is None or place is None:
            continue  # NULL, or no plaintext for this reader: nothing unwrapped
        if packed[row] is None:  # the lookup found no row for the subject
            if strict[row] is not False:
                raise UnknownKeyVersion("the row of a subject-keyed cell has no subject, or "
                                        "its subject has no salt in the subject table")
            continue
        groups.setdefault((keyring, place, strict[row] is not False), []).append(row)
    for (keyring, place, strict_mode), rows in groups.items():
        ciphers = _ciphers(payload, keyring, on_unwrap)
        hashes, salts, erased = zip(*(unpack_subject(packed[r]) for r in rows), strict=True)
        try:
            opened = decrypt_subject_many([values[r] for r in rows], hashes, salts, erased,
                                          ciphers, place, strict=strict_mode)
        except EnvelopeError as error:  # names the place and the subject's hash, no value
            raise type(error)(f"{place}: {error}") from None
        for row, plain in zip(rows, opened, strict=True):
            out[row] = plain
    return out


def decrypt_subject_cells_batches(batches: Iterator[tuple[Any, ...]],
                                  payload: Mapping[str, Any],
                                  on_unwrap: Callable[[int], None] | None = None
                                  ) -> Iterator[Any]:
    """Batch handler of ``decrypt_subject_cells(value, place, keyring, subject, strict)``."""
    for columns in batches:
        yield column_like(columns[0], open_subject_batch(payload, columns, on_unwrap))
