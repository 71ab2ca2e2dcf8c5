"""The cell grammar of docs/cell-format.md as Java regular expressions for the SQL layer.

The SQL functions open a value only if it matches the format page's grammar exactly, as the
Python parser does: Spark's ``unbase64`` is lenient (it skips stray characters and accepts
non-zero padding bits, and throws raw Java errors on some inputs), so canonical base64 is
checked by the pattern itself, before ``unbase64`` ever sees the text:

- every 4-character unit is from the base64 alphabet, ``=`` appears only as final padding;
- the unused bits of the last character before padding are zero (``==`` follows one of
  ``AQgw``; ``=`` follows one of ``AEIMQUYcgkosw048``), so each payload has one text;
- at least 40 characters, i.e. at least IV (12) + tag (16) = 28 bytes, so ``aes_decrypt``
  is never handed a payload shorter than its IV and tag.

No backslash appears in the patterns (``[(]`` instead of ``\\(``, ``[0-9]`` instead of
``\\d``), so they mean the same whatever ``spark.sql.parser.escapedStringLiterals`` says.
Java's ``$`` also matches before a final line terminator; ``(?s)`` with ``$(?!.)`` refuses
it (a trailing newline is a different value, not the same cell).
"""

from __future__ import annotations

from ...cell.format import MARKER

_ALPHABET = "[A-Za-z0-9+/]"
# Canonical base64 of at least 28 bytes (9 full units, then a full or padded last unit).
_PAYLOAD = (
    f"(?:{_ALPHABET}{{4}}){{9,}}"
    f"(?:{_ALPHABET}{{4}}|{_ALPHABET}{{2}}[AEIMQUYcgkosw048]=|{_ALPHABET}[AQgw]==)"
)
# The type tags of envelope_encryption.cell.types.TAG_PATTERN, ASCII digits only.
_TAG = "(?:[a-z_]+|decimal[(][0-9]{1,2},[0-9]{1,2}[)])"

CELL_PATTERN = f"(?s)^{MARKER}:[1-9][0-9]{{0,9}}:{_TAG}:{_PAYLOAD}$(?!.)"
"""A value that has the shape of a cell (it may still fail to authenticate)."""

LEGACY_PATTERN = f"(?s)^{_PAYLOAD}$(?!.)"
"""A value that has the shape of a cell of the original notebooks (canonical base64 of at
least IV and tag)."""


def is_cell_sql(value: str) -> str:
    """SQL: whether ``value`` (an expression) has the shape of a cell."""
    return f"({value} RLIKE '{CELL_PATTERN}')"


def is_legacy_sql(value: str) -> str:
    """SQL: whether ``value`` has the shape of a legacy (header-less) cell."""
    return f"({value} RLIKE '{LEGACY_PATTERN}')"


# -- what open_cell does with a value of each shape -------------------------------------------

# The parts of a value that matched CELL_PATTERN (so the three ':' are where locate finds them).
_HEADER_END = "locate(':', value, locate(':', value, 5) + 1)"
_PAYLOAD_SQL = f"unbase64(substring(value, {_HEADER_END} + 1))"
_KEY_SQL = ("try_element_at(k.keys, try_cast(substring(value, 5, locate(':', value, 5) - 5) "
            "AS INT))")
_AAD_SQL = f"concat(substring(value, 1, {_HEADER_END}), place)"
_PLAINTEXT_SQL = (f"try_aes_decrypt({_PAYLOAD_SQL},\n      {_KEY_SQL},\n      "
                  f"'GCM', 'DEFAULT', {_AAD_SQL})")
# A legacy cell names no version: each enabled legacy DEK of the scope is tried, newest
# first, and the one whose GCM tag verifies opens it (a wrong key fails the tag, it never
# yields other bytes). coalesce stops at the first key that opens the cell, so a cell of
# the newest version costs one decryption.
_LEGACY_PLAINTEXT_SQL = (
    "aggregate(k.legacy_versions, CAST(NULL AS BINARY),\n      (opened, v) -> "
    "coalesce(opened, try_aes_decrypt(unbase64(value),\n        "
    "try_element_at(k.keys, v), 'GCM', 'DEFAULT')))")


# The project's errors, one per cause; they name no value, plaintext or key.
UNKNOWN_VERSION = "a cell names a DEK version that is unknown or retired"
NOT_AUTHENTIC = ("a cell does not authenticate here: wrong key, moved from another column or "
                 "table, or tampered")
NOT_UTF8 = "a cell decrypts to bytes that are not valid UTF-8"
LEGACY_NOT_AUTHENTIC = ("a legacy cell does not authenticate with any enabled imported legacy DEK "
                        "of the scope")
LEGACY_NOT_UTF8 = "a legacy cell decrypts to bytes that are not valid UTF-8"
MALFORMED = "a value is a malformed cell (see docs/cell-format.md: Parsing)"
NOT_A_CELL = ("a value is not an encrypted cell (nor, in a scope with an imported legacy DEK, "
              "a legacy cell)")


def _refuse(message: str) -> str:
    return f"raise_error('envelope encryption: {message}')"


def _first_of(branches: list[tuple[str, str]], otherwise: str, indent: str) -> str:
    """``CASE WHEN c1 THEN r1 ... ELSE otherwise END`` over (condition, refusal) pairs."""
    lines = ["CASE"]
    lines += [f"{indent}  WHEN {condition} THEN {_refuse(m)}" for condition, m in branches]
    lines += [f"{indent}  ELSE {_refuse(otherwise)}", f"{indent}END"]
    return "\n".join(lines)


def open_cell_values(strict: bool, non_member: str) -> dict[str, str]:
    """The placeholders of ``open_cell.sql`` for a decrypt mode and a non-member expression.

    Every outcome that is not the authentic plaintext is NULL (lenient) or the project's
    error (strict), never a raw Java error: the payload reaches ``unbase64`` and
    ``try_aes_decrypt`` only after the value matched the grammar. The failure branches run
    only for values that failed, so telling the causes apart costs nothing on good cells.
    """
    null = "CAST(NULL AS STRING)"
    undecryptable = _first_of([(f"{_KEY_SQL} IS NULL", UNKNOWN_VERSION),
                               (f"{_PLAINTEXT_SQL} IS NULL", NOT_AUTHENTIC)], NOT_UTF8, "    ")
    legacy_undecryptable = _first_of([(f"{_LEGACY_PLAINTEXT_SQL} IS NULL",
                                       LEGACY_NOT_AUTHENTIC)], LEGACY_NOT_UTF8, "    ")
    not_a_cell = _first_of([(f"startswith(value, '{MARKER}:')", MALFORMED)], NOT_A_CELL, "  ")
    return {
        "non_member": non_member,
        "is_cell": is_cell_sql("value"),
        "is_legacy": is_legacy_sql("value"),
        "plaintext": _PLAINTEXT_SQL,
        "legacy_plaintext": _LEGACY_PLAINTEXT_SQL,
        "undecryptable": undecryptable if strict else null,
        "legacy_undecryptable": legacy_undecryptable if strict else null,
        "not_a_cell": not_a_cell if strict else null,
    }
