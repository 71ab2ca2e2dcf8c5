"""Layer 1: the encrypted-cell format and AES-256-GCM. Pure functions, no I/O.

See ``docs/cell-format.md`` for the byte-by-byte specification and test vectors.
"""

from .batch import decrypt_many, encrypt_many, reencrypt_many
from .format import (
    CELL_PREFIX,
    MARKER,
    ROW_BOUND_SUFFIX,
    CellHeader,
    RowKey,
    aad_for,
    decrypt_cell,
    decrypt_legacy_cell,
    encrypt_value,
    is_cell,
    parse_cell,
)
from .types import canonical_type_tag, supported_type_tags

__all__ = [
    "CELL_PREFIX",
    "MARKER",
    "ROW_BOUND_SUFFIX",
    "CellHeader",
    "RowKey",
    "aad_for",
    "canonical_type_tag",
    "decrypt_cell",
    "decrypt_legacy_cell",
    "decrypt_many",
    "encrypt_many",
    "encrypt_value",
    "is_cell",
    "parse_cell",
    "reencrypt_many",
    "supported_type_tags",
]
