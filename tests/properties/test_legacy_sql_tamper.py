"""Property-based tests of the SQL mask on legacy cells (the original notebooks' format).

A scope with three imported legacy DEKs (v3 retired) and a fresh active v4. Any plaintext
under legacy v1 or v2 reads back through the rendered ``decrypt_<schema>``; any change to a
legacy cell, a cell under a key the keyring does not hold, one under the retired v3, and an
authentic one whose plaintext is not UTF-8 never yield plaintext: NULL (lenient) or the
project's error (strict), never a raw Java error. Cases are drawn with hypothesis in
Python (reproducibly), then pushed through Spark in one DataFrame per mode and category.
"""

from __future__ import annotations

import base64
import os
import re
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import strategies as st
from pyspark.errors import PySparkException

from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment
from envelope_encryption.spark.sql.target import SqlOptions
from tests.support.legacy_data import local_legacy_scope

from ..spark.sql.conftest import make_local_context
from .tampering import WHITESPACE, ZERO_WIDTH, draw_many

CASES = int(os.environ.get("TAMPER_SPARK_CASES", "150"))  # per category
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def legacy_cell(key: bytes, plaintext: bytes) -> str:
    """``base64(aes_encrypt(p, key, 'GCM', 'DEFAULT'))``: IV (12) || ciphertext || tag."""
    iv = os.urandom(12)
    return base64.b64encode(iv + AESGCM(key).encrypt(iv, plaintext, None)).decode("ascii")


@st.composite
def _bit_flip(draw, cell: str) -> str:
    raw = bytearray(base64.b64decode(cell))
    raw[draw(st.integers(0, len(raw) - 1))] ^= 1 << draw(st.integers(0, 7))
    return base64.b64encode(bytes(raw)).decode("ascii")


@st.composite
def _truncation(draw, cell: str) -> str:
    return cell[:draw(st.integers(0, len(cell) - 1))]


@st.composite
def _extension(draw, cell: str) -> str:
    extra = draw(st.binary(min_size=1, max_size=12))
    return base64.b64encode(base64.b64decode(cell) + extra).decode("ascii")


@st.composite
def _non_canonical(draw, cell: str) -> str:
    stem = cell.rstrip("=")
    if stem != cell and draw(st.booleans()):  # unused bits of the last character set
        last = B64.index(stem[-1])
        spare = 0b1111 if cell.endswith("==") else 0b11
        bits = draw(st.integers(1, spare))
        return stem[:-1] + B64[(last & ~spare) | bits] + cell[len(stem):]
    return draw(st.sampled_from([stem + "=", cell + "=", cell + "====", stem]))


@st.composite
def _inserted(draw, cell: str) -> str:
    i = draw(st.integers(0, len(cell)))
    return cell[:i] + draw(st.sampled_from(WHITESPACE + ZERO_WIDTH)) + cell[i:]


CHANGES = {"bit flip": _bit_flip, "truncation": _truncation, "extension": _extension,
           "non-canonical base64": _non_canonical, "inserted character": _inserted}


def _changed(change, cells: list[str]):
    return st.sampled_from(cells).flatmap(change).filter(lambda v: v not in cells)


@pytest.fixture(scope="module")
def legacy(spark, tmp_path_factory):
    """The scope, its authentic legacy cells (v1 and v2) and the cases of each category."""
    ctx = make_local_context(spark, tmp_path_factory.mktemp("legacy_tamper"))
    settings, deks = local_legacy_scope(ctx, "legacy", versions=3)
    ctx.keyring.retire(settings.scope("legacy"), 3, in_use=False)
    plaintexts = ["933-73-8723", "", "Zoë Ångström 日本", "x" * 200]
    cells = [legacy_cell(deks[v], p.encode()) for v in (1, 2) for p in plaintexts]
    cases = {name: draw_many(_changed(change, cells), CASES)
             for name, change in sorted(CHANGES.items())}
    cases["a key not in the keyring"] = [legacy_cell(os.urandom(32), p.encode())
                                         for p in plaintexts]
    cases["the retired legacy version"] = [legacy_cell(deks[3], p.encode()) for p in plaintexts]
    cases["non-UTF-8 plaintext"] = [legacy_cell(deks[v], b) for v in (1, 2) for b in
                                    (b"\xff", b"abc\xc3", b"\xed\xa0\x80", b"\xc0\xaf")]
    return ctx, settings, deks, cases


def _decrypt(ctx, settings, decrypt: str, values: list[str]):
    env = LocalSqlEnvironment(ctx.spark, settings, SqlOptions(decrypt=decrypt),
                              groups=[f"{settings.catalog}.legacy.crypto.user"]).install()
    view = f"legacy_{uuid.uuid4().hex[:8]}"
    ctx.spark.createDataFrame(list(enumerate(values)), "id int, v string") \
        .createOrReplaceTempView(view)
    return ctx.spark.sql(f"SELECT id, {env.decrypt_function('legacy')}(v, 'people', 'name') "
                         f"AS v FROM {view}")


def test_any_plaintext_under_either_legacy_version_reads_back(legacy):
    ctx, settings, deks, _ = legacy
    texts = draw_many(st.text(max_size=300), CASES)
    values = [legacy_cell(deks[1 + i % 2], t.encode()) for i, t in enumerate(texts)]
    got = {r.id: r.v for r in _decrypt(ctx, settings, "strict", values).collect()}
    assert [got[i] for i in range(len(values))] == texts


def test_lenient_reads_null_for_every_case(legacy):
    ctx, settings, _, cases = legacy
    values = [(c, v) for c, vs in cases.items() for v in vs]
    got = _decrypt(ctx, settings, "lenient", [v for _, v in values]).collect()
    leaked = [(values[r.id][0], values[r.id][1][:80]) for r in got if r.v is not None]
    assert not leaked and len(got) == len(values)


@pytest.mark.parametrize("category", [*sorted(CHANGES), "a key not in the keyring",
                                      "the retired legacy version", "non-UTF-8 plaintext"])
def test_strict_refuses_every_case_with_the_projects_error(legacy, category):
    ctx, settings, _, cases = legacy
    with pytest.raises(PySparkException) as info:
        _decrypt(ctx, settings, "strict", cases[category]).collect()
    message = str(info.value)
    assert "envelope encryption: " in message and "USER_RAISED_EXCEPTION" in message
    assert not re.search(r"IllegalArgumentException|ShortBufferException|AES_CRYPTO_ERROR",
                         message)
    for value in cases[category][:3]:  # each on its own: refused, never read
        with pytest.raises(PySparkException, match="envelope encryption: "):
            _decrypt(ctx, settings, "strict", [value]).collect()
