"""A holder for plaintext key bytes that never shows them.

Plaintext DEKs and KEKs travel only inside :class:`SecretKey`. Its ``repr``/``str`` show a
label and the length, never the bytes, so a key cannot leak through a log line, an exception
message, a traceback's locals or a Spark plan string. Equality is constant-time.
"""

from __future__ import annotations

import hmac


class SecretKey:
    """Plaintext key bytes with a redacted representation."""

    __slots__ = ("_label", "_material")

    def __init__(self, material: bytes, label: str = "key") -> None:
        if not isinstance(material, (bytes, bytearray)):
            raise TypeError("SecretKey material must be bytes")
        self._material = bytes(material)
        self._label = label

    def reveal(self) -> bytes:
        """The key bytes. Call only where the bytes go straight into a cipher."""
        return self._material

    @property
    def label(self) -> str:
        return self._label

    def __len__(self) -> int:
        return len(self._material)

    def __repr__(self) -> str:
        return f"SecretKey({self._label}, {len(self._material)} bytes, redacted)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        # Hashing key bytes into a dict would be a side channel; keys are compared, not hashed.
        raise TypeError("SecretKey is not hashable")

    def __reduce__(self) -> tuple:
        # Pickling is needed to ship a DEK to Spark executors inside a UDF closure (memory only).
        return (SecretKey, (self._material, self._label))
