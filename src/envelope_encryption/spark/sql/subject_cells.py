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
3. ``decrypt_subject_cells(value, place, keyring, subject)`` (the lookup's answer packed in
   one BINARY: hash and salt, the hash alone once erased, see :func:`unpack_subject`)
   (:func:`decrypt_subject_cells_batches`) verifies the keyring's records and unwraps their
   DEKs through :func:`.decrypt_cells.scope_keys` (once per worker and version, as the
   scope masks do) and opens each cell with its subject's key, derived and kept in the
   per-worker LRU of :mod:`envelope_encryption.cell.subject`. It answers as
   ``decrypt_cells`` does: ``+<plaintext>`` or ``!<cause>`` (:data:`SUBJECT_CAUSES`).

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
    SubjectErased,
    decrypt_subject_many,
    subject_hash,
    subject_id_key,
    worker_ciphers,
)
from ...errors import DecryptionError, FormatError, KeyringError, UnknownKeyVersion
from .cell_shape import MALFORMED, OPENED, REFUSED, UNKNOWN_VERSION
from .decrypt_cells import _column_like, _values, scope_keys
from .runtime import integrity_key

# The causes a subject cell is refused for, as decrypt_subject_cells writes them after
# REFUSED; the messages name no value, subject id, salt or key.
# No quote in them: they become SQL string literals (checked when rendered).
SUBJECT_ERASED = ("a subject-keyed cell belongs to an erased data subject: its key was "
                  "destroyed with the salt of the subject (crypto-shredded)")
NO_SUBJECT = ("the row of a subject-keyed cell has no subject, or its subject has no salt in "
              "the subject table")
SUBJECT_NOT_AUTHENTIC = ("a subject-keyed cell does not authenticate here: a cell of another "
                         "subject, moved from another column or table, or tampered")
NOT_A_SUBJECT_CELL = "a value is not a subject-keyed cell (ee1:<version>:<type>+subj:...)"
# "V", "A", "M" and "N" mean what they mean for decrypt_cells (cell_shape.CAUSES).
SUBJECT_CAUSES = {"E": SUBJECT_ERASED, "S": NO_SUBJECT, "V": UNKNOWN_VERSION,
                  "A": SUBJECT_NOT_AUTHENTIC, "M": MALFORMED, "N": NOT_A_SUBJECT_CELL}


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
    for subject, keyring in zip(_values(subjects), _values(keyrings), strict=True):
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
        yield _column_like(subjects, hash_subjects(payload, subjects, keyrings))


def _cause(value: str, hashed: str | None, salt: bytes | None, erased: bool | None,
           ciphers: SubjectCiphers, place: str) -> str:
    """Why a value did not open, as a code of :data:`SUBJECT_CAUSES` (the subject first,
    then the cell, as :func:`decrypt_subject_many` checks them)."""
    if hashed is None:
        return "S"
    try:
        decrypt_subject_many([value], [hashed], [salt], [erased], ciphers, place, strict=True)
    except SubjectErased:
        return "E"
    except UnknownKeyVersion:
        return "S" if salt is None else "V"
    except DecryptionError:
        return "A"
    except FormatError:
        return "N" if "+subj:" not in value else "M"
    return "M"  # it opens after all: called malformed, never handed out


def open_subject_values(ciphers: SubjectCiphers, values: Sequence[str | None],
                        hashes: Sequence[str | None], salts: Sequence[bytes | None],
                        erased: Sequence[bool | None], place: str) -> list[str | None]:
    """Each value's answer: ``+<plaintext>``, ``!<cause>``, or None for NULL."""
    opened = decrypt_subject_many(values, hashes, salts, erased, ciphers, place, strict=False)
    out: list[str | None] = []
    for row, (value, plain) in enumerate(zip(values, opened, strict=True)):
        if plain is not None:
            out.append(OPENED + plain)
        elif value is None:
            out.append(None)
        else:
            out.append(REFUSED + _cause(value, hashes[row], salts[row], erased[row], ciphers,
                                        place))
    return out


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
    """The answers of one batch: ``columns`` are (values, places, keyrings, subjects), the
    subjects packed by the lookup (:func:`unpack_subject`); pyarrow arrays or pandas Series."""
    values, places, keyrings, packed = (_values(c) for c in columns)
    hashes, salts, erased = (list(c) for c in zip(*map(unpack_subject, packed), strict=True)) \
        if packed else ([], [], [])
    groups: dict[tuple[str, str], list[int]] = {}
    for row, (keyring, place) in enumerate(zip(keyrings, places, strict=True)):
        if keyring is not None and place is not None:  # else: no plaintext for this reader
            groups.setdefault((keyring, place), []).append(row)
    out: list[str | None] = [None] * len(values)
    for (keyring, place), rows in groups.items():
        ciphers = _ciphers(payload, keyring, on_unwrap)
        answers = open_subject_values(ciphers, [values[r] for r in rows],
                                      [hashes[r] for r in rows], [salts[r] for r in rows],
                                      [erased[r] for r in rows], place)
        for row, answer in zip(rows, answers, strict=True):
            out[row] = answer
    return out


def decrypt_subject_cells_batches(batches: Iterator[tuple[Any, ...]],
                                  payload: Mapping[str, Any],
                                  on_unwrap: Callable[[int], None] | None = None
                                  ) -> Iterator[Any]:
    """Batch handler of ``decrypt_subject_cells(value, place, keyring, subject)``."""
    for columns in batches:
        yield _column_like(columns[0], open_subject_batch(payload, columns, on_unwrap))
