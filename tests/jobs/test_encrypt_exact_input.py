"""encrypt_columns reads its input exactly: CSV as RFC 4180 (written here with Python's csv
module), JSON and parquet with every type a cell can hold; each value comes back byte for
byte from encrypt -> decrypt.

CSV NULLs: an unquoted empty field is NULL; a quoted empty field ("") is the empty string.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, datetime
from decimal import Decimal

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.jobs import encrypt_columns, kek_setup
from envelope_encryption.jobs.common import build_context
from envelope_encryption.spark.columns import TableRef, decrypt_columns

TRICKY = [
    'a "quoted" word',
    '""',
    "comma, inside",
    "line\nbreak",
    "crlf\r\nline",
    "  leading and trailing  ",
    " ",
    "tab\tinside",
    "Zoë Łukasz 日本語 עברית 🙂 e\u0301",
    "",
    None,
    "\\backslash\\ and 'single'",
    '"',
    "ends with quote\"",
    "#not a comment",
    "NULL",
    "null",
]
# Python 3.11's csv module writes None and "" alike; a missing value is written as an
# unquoted empty field by swapping this stand-in out after quoting everything.
_MISSING = "\x01missing\x01"


def write_rfc4180(path, header, rows) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([[_MISSING if v is None else v for v in row] for row in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue().replace(f'"{_MISSING}"', ""), encoding="utf-8",
                    newline="")


@pytest.fixture()
def settings(tmp_path):
    settings = Settings(catalog=f"x{uuid.uuid4().hex[:8]}", schemas=("hr",),
                        options={"local-kek-file": str(tmp_path / "kek.key")})
    return settings


def _round_trip(settings, spark, table, columns, **kw):
    ctx = build_context(settings, spark)
    encrypt_columns.run(settings, spark, target_table=f"hr.{table}", columns=columns, **kw)
    stored = spark.table(ctx.lakehouse.table(settings.catalog, "hr", table))
    for column in columns:  # stored as cells, whatever the value
        assert all(r[0] is None or r[0].startswith("ee1:")
                   for r in stored.select(column).collect())
    plain = decrypt_columns(stored, columns, keyring=ctx.keyring,
                            table=TableRef(settings.catalog, "hr", table))
    return {r["id"]: r.asDict() for r in plain.collect()}


def test_csv_values_round_trip_byte_exact(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    rows = [(i, value, value, f"plain {i}") for i, value in enumerate(TRICKY)]
    write_rfc4180(landing / "a.csv", ["id", "name", "note", "plain"], rows)
    # With an explicit schema, so the numbers-looking text stays text.
    got = _round_trip(settings, spark, "csv_exact", ["name", "note"], source=str(landing),
                      source_format="csv", checkpoint_location=str(tmp_path / "ck"),
                      source_schema="id INT, name STRING, note STRING, plain STRING",
                      csv_line_separator="crlf")
    assert sorted(got) == list(range(len(TRICKY)))
    for i, value in enumerate(TRICKY):
        assert got[i]["name"] == value, (i, value, got[i]["name"])
        assert got[i]["note"] == value
        assert got[i]["plain"] == f"plain {i}"
    # The two spellings of "nothing" stay apart.
    assert got[TRICKY.index("")]["name"] == "" and got[TRICKY.index(None)]["name"] is None


def test_csv_with_lf_records_keeps_crlf_inside_values(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.csv").write_bytes(b'id,name\n1,"a\r\nb"\n2,"c\nd"\n3," e "\n')
    got = _round_trip(settings, spark, "csv_lf", ["name"], source=str(landing),
                      source_format="csv", checkpoint_location=str(tmp_path / "ck"),
                      csv_line_separator="lf")
    assert {i: r["name"] for i, r in got.items()} == {1: "a\r\nb", 2: "c\nd", 3: " e "}


ALL_TYPES = (
    "id INT, s STRING, ti TINYINT, si SMALLINT, i INT, bi BIGINT, f FLOAT, d DOUBLE, "
    "b BOOLEAN, dt DATE, ts TIMESTAMP, tsn TIMESTAMP_NTZ, bin BINARY, dec DECIMAL(20,6)"
)
ENCRYPTED = ["s", "ti", "si", "i", "bi", "f", "d", "b", "dt", "ts", "tsn", "bin", "dec"]


def _typed_rows():
    return [
        (1, "Zoë, \"quoted\"\nline", -128, -32768, -2147483648, -9223372036854775808,
         1.5, 0.1, True, date(1, 1, 1), datetime(1970, 1, 1, 0, 0, 0, 1),
         datetime(2024, 2, 29, 23, 59, 59, 999999), b"\x00\xff\x10", Decimal("-12345678.000001")),
        (2, "", 127, 32767, 2147483647, 9223372036854775807, 3.4028235e38,
         2.2250738585072014e-308, False, date(9999, 12, 31), datetime(2038, 1, 19, 3, 14, 8),
         datetime(1900, 1, 1), b"", Decimal("99999999999999.999999")),
        (3, None, None, None, None, None, None, None, None, None, None, None, None, None),
    ]


@pytest.mark.parametrize("source_format", ["parquet", "json"])
def test_every_supported_type_round_trips(settings, spark, tmp_path, source_format):
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    original = spark.createDataFrame(_typed_rows(), ALL_TYPES)
    if source_format == "json":
        # JSON carries binary as base64 text and times as text (written here to the
        # microsecond; Spark's writer default keeps milliseconds): read back with the
        # explicit schema.
        (original.coalesce(1).write
         .option("timestampFormat", "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX")
         .option("timestampNTZFormat", "yyyy-MM-dd'T'HH:mm:ss.SSSSSS")
         .json(str(landing)))
        schema = ALL_TYPES
    else:
        original.coalesce(1).write.parquet(str(landing))
        schema = ""  # parquet files carry their schema: recorded from the first run
    got = _round_trip(settings, spark, f"types_{source_format}", ENCRYPTED,
                      source=str(landing), source_format=source_format,
                      checkpoint_location=str(tmp_path / "ck"), source_schema=schema)
    expected = {r["id"]: r.asDict() for r in original.collect()}
    assert sorted(got) == [1, 2, 3]
    for row_id, row in expected.items():
        for column in ENCRYPTED:
            assert got[row_id][column] == row[column], (source_format, row_id, column)
            if row[column] is not None:
                assert type(got[row_id][column]) is type(row[column])
