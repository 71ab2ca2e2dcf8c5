"""The cell grammar of docs/cell-format.md as regular expressions, and open_cell's outcomes.

The patterns match exactly the format page's grammar, as the Python parser does. They are
written so that Java (SQL ``RLIKE``: the non-member ``ciphertext`` mode, the local masks)
and Python's ``re`` (``decrypt_cells`` telling the causes of a refusal apart) read them the
same way:

- every 4-character unit is from the base64 alphabet, ``=`` appears only as final padding;
- the unused bits of the last character before padding are zero (``==`` follows one of
  ``AQgw``; ``=`` follows one of ``AEIMQUYcgkosw048``), so each payload has one text;
- at least 40 characters, i.e. at least IV (12) + tag (16) = 28 bytes.

No backslash appears in the patterns (``[(]`` instead of ``\\(``, ``[0-9]`` instead of
``\\d``), so they mean the same whatever ``spark.sql.parser.escapedStringLiterals`` says.
``$`` also matches before a final line terminator in both dialects; ``(?s)`` with
``$(?!.)`` refuses it (a trailing newline is a different value, not the same cell).
"""

from __future__ import annotations

from ...cell.format import MARKER
from .target import REDACTION, SqlOptions

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


DETERMINISTIC_PATTERN = f"(?s)^ed1:[1-9][0-9]{{0,9}}:{_TAG}:{_PAYLOAD}$(?!.)"
"""A value that has the shape of a deterministic cell (docs/equality.md; the same payload
rules: canonical base64 of at least IV and tag)."""


def is_cell_sql(value: str, deterministic: bool = False) -> str:
    """SQL: whether ``value`` (an expression) has the shape of a cell (``deterministic``:
    of an ``ee1`` or an ``ed1`` cell, where the deployment has equality domains)."""
    if deterministic:
        return f"({value} RLIKE '{CELL_PATTERN}' OR {value} RLIKE '{DETERMINISTIC_PATTERN}')"
    return f"({value} RLIKE '{CELL_PATTERN}')"


# -- what open_cell makes of decrypt_cells' answer ------------------------------------------

# decrypt_cells (spark/sql/decrypt_cells.py) answers each value with OPENED + plaintext, or
# REFUSED + the code of the cause; open_cell turns a refusal into the project's error
# (strict) or NULL (lenient). The causes are told apart in Python, where the key is; the
# error is raised in SQL (raise_error), so a refusal reads the same on every path.
OPENED = "+"
REFUSED = "!"

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
NO_OUTCOME = "the decrypt function gave no outcome for a value"

# Code of each cause, as decrypt_cells writes it after REFUSED.
CAUSES = {"V": UNKNOWN_VERSION, "A": NOT_AUTHENTIC, "U": NOT_UTF8, "L": LEGACY_NOT_AUTHENTIC,
          "W": LEGACY_NOT_UTF8, "M": MALFORMED, "N": NOT_A_CELL}


def _refuse(message: str) -> str:
    return f"raise_error('envelope encryption: {message}')"


def open_cell_values(strict: bool, non_member: str, outcome: str) -> dict[str, str]:
    """The placeholders of ``open_cell.sql`` for a decrypt mode, a non-member expression and
    ``outcome``, the SQL call of ``decrypt_cells`` on the value (Spark evaluates it once per
    row however often it appears: one Python UDF result).

    Every outcome that is not the authentic plaintext is NULL (lenient) or the project's
    error (strict), never a raw error of Spark or Python.
    """
    if strict:
        lines = ["CASE " + outcome]
        lines += [f"    WHEN '{REFUSED}{code}' THEN {_refuse(message)}"
                  for code, message in CAUSES.items()]
        lines += [f"    ELSE {_refuse(NO_OUTCOME)}", "  END"]
        refused = "\n".join(lines)
    else:
        refused = "CAST(NULL AS STRING)"
    return {
        "non_member": non_member,
        "outcome": outcome,
        "opened": OPENED,
        "refused": refused,
    }


def non_member_sql(options: SqlOptions) -> tuple[str, str]:
    """What a non-member reads (a SQL expression of ``value``), and its words for comments."""
    non_member = {
        "null": "CAST(NULL AS STRING)",
        "redacted": f"'{REDACTION}'",
        # Fail closed: only a value with the shape of a cell passes (not a row that was
        # never encrypted); with equality domains, deterministic cells too (non-members
        # join and look up on them).
        "ciphertext": f"CASE WHEN {is_cell_sql('value', bool(options.equality_domains))} "
                      "THEN value END",
    }[options.non_member]
    others = {"null": "NULL", "redacted": REDACTION, "ciphertext": "the cell"}[options.non_member]
    return non_member, others
