"""Hypothesis strategies: authentic cells and every kind of change to them.

Each strategy draws ``(category, tampered value)`` from a list of authentic cells; the
categories are those the threat model names. A change that happens to give back the
authentic text is dropped (it is not a change).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envelope_encryption.cell.format import encrypt_value

WHITESPACE = [" ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\x85", "\u00a0", "\u2028",
              "\u2029", "\u3000"]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]
LOOKALIKES = {
    "A": ["\u0410", "\uff21"], "e": ["\u0435"], "1": ["\uff11", "\u0661", "\u00b9"],
    ":": ["\uff1a", "\ua789", "\u02d0"], "O": ["\u041e"], "0": ["\uff10", "\u0660"],
    "/": ["\u2215"], "+": ["\uff0b"], "=": ["\uff1d"], "g": ["\u0261"], "s": ["\u0455"],
}
TAGS = ["string", "int", "bigint", "double", "boolean", "date", "timestamp", "binary",
        "decimal(10,2)", "String", "str"]
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def authentic_cells(key: bytes, place: str) -> list[tuple[str, str]]:
    """(plaintext, cell) pairs of version 1 at ``place``: short, empty, unicode, long."""
    plaintexts = ["933-73-8723", "", "Zoë Ångström 日本", "x" * 200, "ab"]
    return [(p, encrypt_value(p, key, 1, "string", place)) for p in plaintexts]


def _split(cell: str) -> tuple[str, str]:
    header, payload = cell.rsplit(":", 1)
    return header + ":", payload


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@st.composite
def bit_flip(draw, cell: str) -> str:
    header, payload = _split(cell)
    raw = bytearray(base64.b64decode(payload))
    i = draw(st.integers(0, len(raw) - 1))
    raw[i] ^= 1 << draw(st.integers(0, 7))
    return header + _b64(bytes(raw))


@st.composite
def truncation(draw, cell: str) -> str:
    return cell[:draw(st.integers(0, len(cell) - 1))]


@st.composite
def extension(draw, cell: str) -> str:
    header, payload = _split(cell)
    if draw(st.booleans()):  # more bytes, still canonical base64
        extra = draw(st.binary(min_size=1, max_size=24))
        return header + _b64(base64.b64decode(payload) + extra)
    return cell + draw(st.text(alphabet=B64 + "=:", min_size=1, max_size=12))


@st.composite
def header_swap(draw, cell: str) -> str:
    marker, version, tag, payload = cell.split(":", 3)
    part = draw(st.sampled_from(["version", "tag", "marker"]))
    if part == "version":
        other = draw(st.one_of(st.integers(0, 10**12).map(str),
                               st.sampled_from(["01", "001", "-1", "+1", "1.0", " 1", ""])))
        return ":".join([marker, other, tag, payload])
    if part == "tag":
        return ":".join([marker, version, draw(st.sampled_from(TAGS)), payload])
    return ":".join([draw(st.sampled_from(["ee2", "EE1", "ee", "ee10", "eel"])), version,
                     tag, payload])


@st.composite
def non_canonical_base64(draw, cell: str) -> str:
    header, payload = _split(cell)
    how = draw(st.sampled_from(["padding bits", "strip =", "append =", "chunked", "urlsafe"]))
    if how == "padding bits" and payload.endswith("="):
        stem = payload.rstrip("=")
        last = B64.index(stem[-1])
        unused = 0b1111 if payload.endswith("==") else 0b11
        bits = draw(st.integers(1, unused))
        return header + stem[:-1] + B64[(last & ~unused) | bits] + payload[len(stem):]
    if how == "strip =" and payload.endswith("="):
        return header + payload.rstrip("=")
    if how == "chunked" and len(payload) > 76:
        return header + "\r\n".join(payload[i:i + 76] for i in range(0, len(payload), 76))
    if how == "urlsafe" and ("+" in payload or "/" in payload):
        return header + payload.replace("+", "-").replace("/", "_")
    return cell + draw(st.sampled_from(["=", "==", "==="]))


def _insert(draw, cell: str, characters: Sequence[str]) -> str:
    at = draw(st.integers(0, len(cell)))
    return cell[:at] + draw(st.sampled_from(characters)) + cell[at:]


@st.composite
def whitespace(draw, cell: str) -> str:
    return _insert(draw, cell, WHITESPACE)


@st.composite
def zero_width(draw, cell: str) -> str:
    return _insert(draw, cell, ZERO_WIDTH)


@st.composite
def lookalike(draw, cell: str) -> str:
    positions = [i for i, c in enumerate(cell) if c in LOOKALIKES]
    i = draw(st.sampled_from(positions))
    return cell[:i] + draw(st.sampled_from(LOOKALIKES[cell[i]])) + cell[i + 1:]


@st.composite
def huge(draw, cell: str) -> str:
    header, payload = _split(cell)
    size = draw(st.integers(50_000, 400_000))
    if draw(st.booleans()):
        return header + _b64(os.urandom(size))
    return ":".join(["ee1", draw(st.sampled_from(["9999999999", "2147483648", "4294967297"])),
                     "string", payload])


TAMPERS: dict[str, Callable[[str], st.SearchStrategy[str]]] = {
    "bit flip": bit_flip,
    "truncation": truncation,
    "extension": extension,
    "header or version swap": header_swap,
    "non-canonical base64": non_canonical_base64,
    "whitespace": whitespace,
    "zero-width": zero_width,
    "lookalike": lookalike,
    "huge": huge,
}


def tampered(category: str, cells: Sequence[tuple[str, str]]) -> st.SearchStrategy[str]:
    """Changed versions of the given authentic cells (never the authentic text itself)."""
    originals = {cell for _, cell in cells}
    return (st.sampled_from([c for _, c in cells])
            .flatmap(TAMPERS[category])
            .filter(lambda value: value not in originals))


def draw_many(strategy: st.SearchStrategy, count: int) -> list:
    """``count`` examples of a strategy, reproducibly (to push through Spark in one go)."""
    found: list = []

    @settings(max_examples=count, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value) -> None:
        found.append(value)

    collect()
    return found
