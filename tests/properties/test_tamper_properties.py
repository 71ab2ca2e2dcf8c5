"""Property-based tamper tests, on every decrypt path.

Any plaintext round-trips; any change to a cell (see :mod:`.tampering` for the categories)
never yields plaintext and never raises anything but the project's errors:

- the Python path (``envelope_encryption.cell``): hypothesis drives each case directly;
- the DataFrame path (``decrypt_columns``) and the SQL path (the rendered
  ``decrypt_<schema>`` on local Spark), strict and lenient: the cases are drawn with
  hypothesis in Python (reproducibly), then pushed through Spark in one DataFrame per
  path and mode (strict: one per category, since the first refused value fails the query).

The figures: ``pytest -s`` prints the number of cases per category and path.
"""

from __future__ import annotations

import base64
import os
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.errors import PySparkException

from envelope_encryption.cell.format import decrypt_cell, encrypt_value
from envelope_encryption.errors import DecryptionError, FormatError, UnknownKeyVersion
from envelope_encryption.spark.columns import TableRef, decrypt_columns
from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment
from envelope_encryption.spark.sql.target import SqlOptions

from ..spark.sql.conftest import make_local_context
from .tampering import TAMPERS, authentic_cells, draw_many, tampered

PROJECT_ERRORS = (FormatError, DecryptionError, UnknownKeyVersion)
PYTHON_CASES = int(os.environ.get("TAMPER_PYTHON_CASES", "400"))  # per category
SPARK_CASES = int(os.environ.get("TAMPER_SPARK_CASES", "150"))  # per category
HUGE_CASES = 12  # each is 50-400 KB
KEY = bytes(range(32))
PLACE = "main.hr.people.ssn"
CELLS = authentic_cells(KEY, PLACE)
# A cell elsewhere (column, table, scope) or under another key: authentic, but not here.
ELSEWHERE = [encrypt_value("933-73-8723", KEY, 1, "string", place)
             for place in ("main.hr.people.name", "main.hr.people2.ssn", "main.sales.people.ssn")]
ELSEWHERE.append(encrypt_value("933-73-8723", bytes(32), 1, "string", PLACE))
COUNTS: dict[tuple[str, str], int] = {}


def _count(path: str, category: str, n: int = 1) -> None:
    COUNTS[(path, category)] = COUNTS.get((path, category), 0) + n


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    for (path, category), n in sorted(COUNTS.items()):
        print(f"tamper cases: {path:<22} {category:<24} {n}")
    print(f"tamper cases: total {sum(COUNTS.values())}")


# -- the Python path --------------------------------------------------------------------------


@settings(max_examples=PYTHON_CASES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text())
def test_python_any_string_round_trips(plaintext):
    cell = encrypt_value(plaintext, KEY, 3, "string", PLACE)
    assert decrypt_cell(cell, {3: KEY}, PLACE)[0] == plaintext
    _count("python", "round trip")


@pytest.mark.parametrize("category", sorted(TAMPERS))
def test_python_path_refuses_every_change(category):
    @settings(max_examples=HUGE_CASES if category == "huge" else PYTHON_CASES, deadline=None,
              suppress_health_check=list(HealthCheck), database=None)
    @given(tampered(category, CELLS))
    def check(value):
        with pytest.raises(PROJECT_ERRORS):
            decrypt_cell(value, {1: KEY}, PLACE)
        _count("python", category)

    check()


def test_python_path_refuses_cells_of_another_place_or_key():
    for value in ELSEWHERE:
        with pytest.raises(DecryptionError):
            decrypt_cell(value, {1: KEY}, PLACE)
        _count("python", "another place or key")


# -- the DataFrame and SQL paths --------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment(spark, tmp_path_factory):
    """A local keyring whose scope hr has DEK version 1; the authentic cells under it."""
    ctx = make_local_context(spark, tmp_path_factory.mktemp("tamper"))
    ref = TableRef(ctx.settings.catalog, "hr", "people")
    key = ctx.keyring.dek(ref.scope, 1).reveal()
    place = ref.place("ssn")
    cells = authentic_cells(key, place)
    elsewhere = [encrypt_value("933-73-8723", key, 1, "string", p) for p in (
        ref.place("name"), TableRef(ref.catalog, "hr", "people2").place("ssn"),
        TableRef(ref.catalog, "sales", "people").place("ssn"))]
    elsewhere.append(encrypt_value("933-73-8723", os.urandom(32), 1, "string", place))
    cases: dict[str, list[str]] = {
        category: draw_many(tampered(category, cells),
                            HUGE_CASES if category == "huge" else SPARK_CASES)
        for category in sorted(TAMPERS)
    }
    cases["another place or key"] = elsewhere
    # An authentic cell whose plaintext is not UTF-8 (only a key holder can make one).
    cases["non-UTF-8 plaintext"] = [_raw_cell(key, place, b) for b in
                                    (b"\xff", b"abc\xc3", b"\xed\xa0\x80", b"\xc0\xaf")]
    return ctx, ref, cells, cases


def _raw_cell(key: bytes, place: str, plaintext: bytes) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = "ee1:1:string:"
    iv = os.urandom(12)
    payload = iv + AESGCM(key).encrypt(iv, plaintext, (header + place).encode())
    return header + base64.b64encode(payload).decode()


def _frame(spark, values):
    rows = [(i, v) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, "id int, ssn string")


def _sql_env(ctx, decrypt: str) -> LocalSqlEnvironment:
    member = f"{ctx.settings.catalog}.hr.crypto.user"
    return LocalSqlEnvironment(ctx.spark, ctx.settings, SqlOptions(decrypt=decrypt),
                               groups=[member]).install()


def _sql(ctx, env, values):
    view = f"tamper_{uuid.uuid4().hex[:8]}"
    _frame(ctx.spark, values).createOrReplaceTempView(view)
    return ctx.spark.sql(f"SELECT id, {env.decrypt_function('hr')}(ssn, 'people', 'ssn') AS v "
                         f"FROM {view}")


def _all_values(cases, *, include_non_utf8: bool):
    return [(category, v) for category, values in cases.items() for v in values
            if include_non_utf8 or category != "non-UTF-8 plaintext"]


def test_sql_round_trips_authentic_cells_and_its_own(deployment):
    ctx, ref, cells, _ = deployment
    strings = draw_many(st.text(max_size=300), SPARK_CASES)
    env = _sql_env(ctx, "strict")
    encrypt = env.encrypt_function("hr")
    view = f"texts_{uuid.uuid4().hex[:8]}"
    ctx.spark.createDataFrame([(i, s) for i, s in enumerate(strings)],
                              "id int, s string").createOrReplaceTempView(view)
    sealed = ctx.spark.sql(f"SELECT id, {encrypt}(s, 'people', 'ssn') AS ssn FROM {view}")
    rows = sealed.collect()
    assert all(re.fullmatch(r"ee1:1:string:[A-Za-z0-9+/=]+", r.ssn) for r in rows)
    values = [c for _, c in cells] + [r.ssn for r in sorted(rows)]
    expected = [p for p, _ in cells] + strings
    got = {r.id: r.v for r in _sql(ctx, env, values).collect()}
    assert [got[i] for i in range(len(values))] == expected
    back = decrypt_columns(_frame(ctx.spark, values), ["ssn"], keyring=ctx.keyring, table=ref,
                           types={"ssn": "string"})
    assert [r.ssn for r in back.orderBy("id").collect()] == expected
    _count("sql", "round trip", len(values))
    _count("dataframe", "round trip", len(values))


def test_sql_lenient_reads_null_for_every_change(deployment):
    ctx, _, _, cases = deployment
    values = _all_values(cases, include_non_utf8=True)
    got = _sql(ctx, _sql_env(ctx, "lenient"), [v for _, v in values]).collect()
    leaked = [(values[r.id][0], values[r.id][1][:80]) for r in got if r.v is not None]
    assert not leaked
    for category, _ in values:
        _count("sql lenient", category)


@pytest.mark.parametrize("category", [*sorted(TAMPERS), "another place or key",
                                      "non-UTF-8 plaintext"])
def test_sql_strict_refuses_every_change_with_the_projects_error(deployment, category):
    ctx, _, _, cases = deployment
    env = _sql_env(ctx, "strict")
    with pytest.raises(PySparkException) as info:
        _sql(ctx, env, cases[category]).collect()
    message = str(info.value)
    assert "envelope encryption: " in message and "USER_RAISED_EXCEPTION" in message
    assert not re.search(r"IllegalArgumentException|ShortBufferException|AES_CRYPTO_ERROR",
                         message)
    # Each value on its own, for a sample: every one is refused, none is read.
    for value in cases[category][:5]:
        with pytest.raises(PySparkException, match="envelope encryption: "):
            _sql(ctx, env, [value]).collect()
    _count("sql strict", category, len(cases[category]))


def test_dataframe_lenient_reads_null_for_every_change(deployment):
    ctx, ref, _, cases = deployment
    values = _all_values(cases, include_non_utf8=False)
    out = decrypt_columns(_frame(ctx.spark, [v for _, v in values]), ["ssn"],
                          keyring=ctx.keyring, table=ref, strict=False,
                          types={"ssn": "string"}).collect()
    leaked = [(values[r.id][0], values[r.id][1][:80]) for r in out if r.ssn is not None]
    assert not leaked
    for category, _ in values:
        _count("dataframe lenient", category)


@pytest.mark.parametrize("category", [*sorted(TAMPERS), "another place or key"])
def test_dataframe_strict_refuses_every_change_with_the_projects_error(deployment, category):
    ctx, ref, _, cases = deployment
    with pytest.raises(PySparkException) as info:
        decrypt_columns(_frame(ctx.spark, cases[category]), ["ssn"], keyring=ctx.keyring,
                        table=ref, types={"ssn": "string"}).collect()
    assert re.search(r"envelope_encryption\.errors\.(FormatError|DecryptionError|"
                     r"UnknownKeyVersion): column ssn", str(info.value))
    _count("dataframe strict", category, len(cases[category]))
