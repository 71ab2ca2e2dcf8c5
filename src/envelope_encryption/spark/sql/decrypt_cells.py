"""What the batch decrypt function ``decrypt_cells(value, place, keyring)`` runs.

The column masks' SQL (``open_cell``) calls the Unity Catalog batch Python function
``<catalog>.<crypto>.decrypt_cells`` with each value, its place
(``<catalog>.<schema>.<table>.<column>``, the AAD's place) and ``keyring``: the scope's
current keyring records and the newest integrity record as one JSON text, read by the key
subquery once per query and NULL unless the reader may have plaintext (a member of the
reader group, not of the job group). The handler (:func:`decrypt_cells_batches`) gets the
rows a batch at a time and, per batch:

- verifies the records and gets their DEKs through :func:`.runtime.unwrap_records`, the
  privileged, keyring-bound path of ``unwrap_key`` (scope of the deployment, tag under the
  integrity key, KEK pinned, retired set; ``aws-sm``: the secret it reads itself). DEKs are
  cached per Python worker (``DekCache``), so the key service is called once per worker
  process and DEK version, whatever the number of queries, batches or rows;
- opens the batch's cells with one AES-GCM cipher per DEK version
  (:func:`envelope_encryption.cell.batch.decrypt_many`: the header parsed once per distinct
  header, strict canonical base64, AAD per cell), and legacy cells with the enabled legacy
  versions, newest first;
- opens deterministic (``ed1``) cells with the equality domains passed beside the scope's
  records (``"domains"``, only when the deployment configures domains), through the same
  verification (:mod:`.equality_runtime`);
- answers each value with ``+<plaintext>`` or ``!<cause>`` (:mod:`.cell_shape`), NULL for
  NULL. A refused value is classified in the order the format page gives (the shape of a
  cell, its version, its tag, UTF-8; then the legacy shape), so the error ``open_cell``
  raises in SQL (strict) names the same cause as before; lenient reads NULL.

No plaintext key enters a Spark expression, plan or exchange: the DEKs exist only in the
worker's memory. With ``keyring`` NULL nothing is verified or unwrapped: Spark evaluates a
Python UDF for every row of the projection whatever the ``CASE`` around it says, so the
function, not the ``CASE``, is what keeps a non-member's query from unwrapping anything.

On Databricks the handler gets pandas Series (``PARAMETER STYLE PANDAS``); the local
stand-in (:mod:`.local_unity_catalog`) registers the same handler as a Spark Arrow UDF, which
passes pyarrow arrays. Both kinds are read here, and the answer is of the kind given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...cell.batch import decrypt_many
from ...cell.equality import DETERMINISTIC_MARKER
from ...identifiers import EQUALITY_SCOPE_MARK
from ...keyring.base import LEGACY_KEY_TYPE
from .batch_columns import column_like, column_values
from .cell_shape import CELL_PATTERN, LEGACY_PATTERN, OPENED, REFUSED
from .equality_runtime import domain_openers, open_deterministic
from .passed_records import passed_keyring, passed_row
from .runtime import unwrap_records

if TYPE_CHECKING:
    from ...cell.equality import DeterministicOpener

_CELL = re.compile(CELL_PATTERN)
_LEGACY = re.compile(LEGACY_PATTERN)


class ScopeKeys:
    """The DEKs of one verified keyring text: by version, and the legacy ones newest first;
    and the openers of the equality domains passed with it (deterministic cells)."""

    def __init__(self, keys: dict[int, bytes], legacy: list[bytes],
                 domains: Sequence[DeterministicOpener] = ()) -> None:
        self.keys = keys
        self.legacy = legacy
        self.domains = list(domains)

    def __repr__(self) -> str:  # never the keys
        return (f"ScopeKeys(versions={sorted(self.keys)}, legacy={len(self.legacy)}, "
                f"domains={[d.domain for d in self.domains]})")


def scope_keys(payload: Mapping[str, Any], keyring: str,
               on_unwrap: Callable[[int], None] | None = None) -> ScopeKeys:
    """The DEKs of the records in ``keyring`` (the key subquery's JSON), verified and
    unwrapped by :func:`.runtime.unwrap_records`; its errors when they do not verify."""
    from ...errors import KeyringError

    passed = passed_keyring(keyring, "decrypt_cells")
    key_alias, records, integrity = passed["key_alias"], passed["records"], passed["integrity"]
    if isinstance(key_alias, str) and EQUALITY_SCOPE_MARK in key_alias.split("."):
        raise KeyringError("decrypt_cells: an equality domain's records passed as a schema's: "
                           "refused")
    deks = unwrap_records(payload, key_alias, records, integrity, on_unwrap)
    rows = [passed_row(record) for record in records]
    keys: dict[int, bytes] = {}
    legacy: list[tuple[int, bytes]] = []
    for row, dek in zip(rows, deks, strict=True):
        if row is None or dek is None:
            continue
        keys[row["key_version"]] = dek
        if row.get("key_type") == LEGACY_KEY_TYPE:
            legacy.append((row["key_version"], dek))
    return ScopeKeys(keys, [dek for _, dek in sorted(legacy, reverse=True)],
                     domain_openers(payload, passed.get("domains"), integrity, on_unwrap))


def _cause(value: str, keys: ScopeKeys, place: str) -> str:
    """Why ``value`` does not open here, as a code of :data:`.cell_shape.CAUSES`, in the
    order of the format page. Runs only for values :func:`decrypt_many` refused; a value
    that opens here after all is called malformed, never handed out. A format error of
    the parsers (a grammar they read differently from the pattern) propagates: the caller
    calls it malformed."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from ...cell.format import IV_BYTES, parse_cell
    from ...cell.legacy import open_legacy
    from ...errors import DecryptionError, FormatError

    if _CELL.match(value):
        header, payload = parse_cell(value)
        key = keys.keys.get(header.version)
        if key is None:
            return "V"
        try:
            plain = AESGCM(key).decrypt(payload[:IV_BYTES], payload[IV_BYTES:],
                                        (header.text + place).encode("utf-8"))
        except InvalidTag:
            return "A"
        try:
            plain.decode("utf-8")
        except UnicodeDecodeError:
            return "U"
        return "M"
    if keys.legacy and _LEGACY.match(value):
        try:
            open_legacy(value, keys.legacy)
        except DecryptionError:
            return "L"
        except FormatError:
            return "W"  # the shape matched, so the only format error left is UTF-8
        return "M"
    return "M" if value.startswith("ee1:") else "N"


def open_values(keys: ScopeKeys, values: Sequence[str | None],
                place: str) -> list[str | None]:
    """Each value's answer: ``+<plaintext>``, ``!<cause>``, or None for NULL."""
    from ...cell.batch import CELL_ERRORS

    opened = decrypt_many(list(values), keys.keys, place, strict=False,
                          legacy_key=keys.legacy or None)
    out: list[str | None] = []
    for value, plain in zip(values, opened, strict=True):
        if plain is not None:
            out.append(OPENED + plain)
        elif value is None:
            out.append(None)
        elif keys.domains and value.startswith(DETERMINISTIC_MARKER + ":"):
            out.append(open_deterministic(keys.domains, value))
        else:
            try:
                out.append(REFUSED + _cause(value, keys, place))
            except CELL_ERRORS:
                out.append(REFUSED + "M")
    return out


def _distinct(column: Any) -> list[Any]:
    """The distinct values of a column (one, in practice: the key subquery's constant,
    recognised by comparing every row with the first, cheaper than hashing them all)."""
    if len(column) == 0:
        return []
    if hasattr(column, "to_pylist"):
        import pyarrow.compute as pc

        first = column[0]
        if first.is_valid and column.null_count == 0 and pc.all(pc.equal(column, first)).as_py():
            return [first.as_py()]
        return column.unique().to_pylist()
    first = column.iloc[0]
    if isinstance(first, str) and bool((column == first).all()):
        return [first]
    return column_values(column.drop_duplicates())


def open_batch(payload: Mapping[str, Any], values: Any, places: Any, keyrings: Any,
               on_unwrap: Callable[[int], None] | None = None) -> list[str | None]:
    """The answers of one batch (columns as pyarrow arrays or pandas Series)."""
    cells = column_values(values)
    out: list[str | None] = [None] * len(cells)
    rings = _distinct(keyrings)
    ring_of = column_values(keyrings) if len(rings) > 1 else None
    one_place = _distinct(places)
    for ring in rings:
        if ring is None:
            continue  # not a reader of plaintext: nothing verified, nothing unwrapped
        keys = scope_keys(payload, ring, on_unwrap)
        if ring_of is None and len(one_place) == 1 and one_place[0] is not None:
            return open_values(keys, cells, one_place[0])  # the mask of one column
        groups: dict[str, list[int]] = {}
        for position, place in enumerate(column_values(places)):
            if ring_of is None or ring_of[position] == ring:
                groups.setdefault(place, []).append(position)
        for place, positions in groups.items():
            if place is None:
                continue
            answers = open_values(keys, [cells[p] for p in positions], place)
            for position, answer in zip(positions, answers, strict=True):
                out[position] = answer
    return out


def decrypt_cells_batches(batches: Iterator[tuple[Any, ...]], payload: Mapping[str, Any],
                          on_unwrap: Callable[[int], None] | None = None) -> Iterator[Any]:
    """Batch handler of ``decrypt_cells(value, place, keyring)``."""
    for values, places, keyrings in batches:
        yield column_like(values, open_batch(payload, values, places, keyrings, on_unwrap))
