"""Search bytes for keys in every form a key could be written in.

A key is searched raw, as hex (lower and upper case), and as base64 and URL-safe base64 at
each of the three byte alignments it can have inside a longer base64 text (the characters
that depend only on the key, so a key embedded in a larger blob is found too).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


def _b64_cores(key: bytes, encode) -> list[bytes]:
    """The base64 characters determined by ``key`` alone, at offsets 0, 1 and 2 of a blob."""
    cores = []
    for pad in range(3):
        text = encode(b"\x00" * pad + key).rstrip(b"=")
        first = (pad * 8 + 5) // 6  # characters that carry a padding bit
        cores.append(text[first:len(text) - 1])  # the last character mixes in what follows
    return cores


def key_forms(key: bytes) -> dict[str, list[bytes]]:
    """Form name -> the byte strings that reveal ``key`` in that form."""
    return {
        "raw": [key],
        "hex": [key.hex().encode()],
        "HEX": [key.hex().upper().encode()],
        "base64": _b64_cores(key, base64.b64encode),
        "base64url": _b64_cores(key, base64.urlsafe_b64encode),
    }


@dataclass(frozen=True)
class Hit:
    where: str  # a file path, or the name of a captured text
    key: str  # which key (a label, never the key)
    form: str


def scan_bytes(where: str, data: bytes, keys: dict[str, bytes]) -> Iterator[Hit]:
    for label, key in keys.items():
        for form, needles in key_forms(key).items():
            if any(needle in data for needle in needles):
                yield Hit(where, label, form)


def scan_files(paths: Iterable[Path], keys: dict[str, bytes]) -> list[Hit]:
    hits = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue  # removed while scanning (Spark cleans its temporary files)
        hits += scan_bytes(str(path), data, keys)
    return hits


def files_under(root: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    skipped = {p.resolve() for p in exclude}
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and not p.is_symlink() and p.resolve() not in skipped)
