"""A batch of texts packed the way Arrow lays out a string column, for the batch loops.

:class:`Texts` holds the UTF-8 bytes of every value one after another (``data``), where
each value starts and ends (``offsets``: value ``i`` is ``data[offsets[i]:offsets[i + 1]]``)
and which values are NULL (``valid``, or None when none is). The batch loops read a value's
bytes with one slice, and hand back their output in the same form, so a column goes from
Arrow to the cipher and back without one Python string per value. It is also a read-only
sequence of ``str | None``, for code that wants the values one by one.

The cell layer stays free of pyarrow: the Spark layer turns Arrow buffers into a
:class:`Texts` and back (``spark/arrow_texts.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate, compress, islice
from typing import overload

# Every byte value but those that continue a UTF-8 character (0x80 to 0xBF).
_NOT_CONTINUATION = bytes(range(0x80)) + bytes(range(0xC0, 0x100))


class Texts(Sequence["str | None"]):
    """Values ``data[offsets[i]:offsets[i + 1]]`` (UTF-8), NULL where ``valid[i]`` is false.

    ``offsets`` has one more entry than there are values, never decreasing; the first need
    not be 0 (a slice of a larger column keeps its offsets into the whole data).
    """

    __slots__ = ("_strings", "data", "offsets", "valid")

    def __init__(self, data: bytes, offsets: Sequence[int],
                 valid: Sequence[bool] | None = None) -> None:
        if not offsets or (valid is not None and len(valid) != len(offsets) - 1):
            raise ValueError("Texts need one more offset than values, and one flag per value")
        self.data = data
        self.offsets = offsets
        self.valid = valid
        self._strings: list[str | None] | None = None

    @classmethod
    def pack(cls, pieces: Sequence[bytes], valid: Sequence[bool] | None = None) -> Texts:
        """Join the bytes of each value (``b""`` at a NULL)."""
        return cls(b"".join(pieces), list(accumulate(map(len, pieces), initial=0)), valid)

    @classmethod
    def from_strings(cls, values: Iterable[str | None]) -> Texts:
        """Pack values given as text (None: NULL). Every ``str`` packs: a lone surrogate
        becomes bytes that are not UTF-8, which the batch loops refuse as they refuse any."""
        values = values if isinstance(values, list) else list(values)
        pieces = [b"" if value is None else value.encode("utf-8", "surrogatepass")
                  for value in values]
        return cls.pack(pieces, [value is not None for value in values]
                        if None in values else None)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def is_null(self, position: int) -> bool:
        return self.valid is not None and not self.valid[position]

    def raw(self, position: int) -> bytes | None:
        """The UTF-8 bytes of one value (None: NULL)."""
        if self.is_null(position):
            return None
        return self.data[self.offsets[position]:self.offsets[position + 1]]

    def text(self, position: int) -> str | None:
        """One value as text (None: NULL). Bytes that are not UTF-8 (a Spark STRING may hold
        any bytes) keep their bytes as lone surrogates: such a text is never a cell."""
        raw = self.raw(position)
        return None if raw is None else raw.decode("utf-8", "surrogateescape")

    def to_list(self) -> list[str | None]:
        """Every value as text (None: NULL), decoded once and kept."""
        if self._strings is None:
            data, offsets = self.data, self.offsets
            strings = [data[start:end].decode("utf-8", "surrogateescape") for start, end
                       in zip(offsets, islice(offsets, 1, None), strict=False)]
            if self.valid is not None:
                strings = [s if ok else None for s, ok in zip(strings, self.valid, strict=True)]
            self._strings = strings
        return self._strings

    @overload
    def __getitem__(self, index: int) -> str | None: ...

    @overload
    def __getitem__(self, index: slice) -> list[str | None]: ...

    def __getitem__(self, index):
        return self.to_list()[index]

    def __iter__(self) -> Iterator[str | None]:
        return iter(self.to_list())

    def __repr__(self) -> str:
        # Values may be plaintext: never shown.
        return f"Texts({len(self)} values)"

    def spans(self, select: Sequence[bool] | None = None) -> Iterator[tuple[int, int, int]]:
        """(position, start, end) of each value ``select`` picks (default: each non-NULL)."""
        offsets = self.offsets
        # Each value's start and end; ``offsets`` has one more entry than there are values.
        spans = zip(range(len(self)), offsets, islice(offsets, 1, None), strict=False)
        select = self.valid if select is None else select
        return spans if select is None else compress(spans, select)

    def invalid_utf8(self) -> list[int]:
        """Positions of the non-NULL values whose bytes are not valid UTF-8.

        Checking the whole data at once is not enough: two halves of a character in
        neighbouring values make valid data. So the data is valid value by value where it is
        all ASCII, or where it decodes whole and no value starts inside a character (no
        offset points at a continuation byte); otherwise each value is checked on its own.
        """
        offsets = self.offsets
        whole = self.data[offsets[0]:offsets[-1]]
        if whole.isascii():
            return []
        try:
            whole.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            # The first byte at each offset after the first ("A" past the end): none may
            # continue a character.
            padded = self.data[:offsets[-1]] + b"A"
            firsts = bytes(map(padded.__getitem__, islice(offsets, 1, None)))
            if not firsts.translate(None, _NOT_CONTINUATION):
                return []
        data = self.data
        bad = []
        for position, start, end in self.spans():
            try:
                data[start:end].decode("utf-8")
            except UnicodeDecodeError:
                bad.append(position)
        return bad
