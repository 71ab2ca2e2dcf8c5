"""Arrow string arrays to packed values and back, and the Arrow UDF glue of the column
functions: slices (non-zero offset), NULLs, large_string, other types, and the DataFrame
functions on a session that sends large_string."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from envelope_encryption.cell import batch as cell_batch
from envelope_encryption.cell import format as cell_format
from envelope_encryption.cell.texts import Texts
from envelope_encryption.errors import DecryptionError, FormatError
from envelope_encryption.spark import arrow_texts
from envelope_encryption.spark.arrow_texts import texts_from_arrow, texts_to_arrow
from envelope_encryption.spark.columns import (
    TableRef,
    _cells_udf,
    decrypt_columns,
    encrypt_columns,
)

from .test_columns import keyring  # noqa: F401  (the fixture: a keyring with an active DEK)

KEY = bytes(range(32))
PLACE = "main.hr.people.ssn"
VALUES = ["a", None, "", "Zoë 日本 🔐", None, "x" * 70, "b"]


def arrays():
    """The same values as every layout Spark or Arrow may hand over."""
    for kind in (pa.string(), pa.large_string()):
        whole = pa.array(["lead", *VALUES, "tail"], type=kind)
        yield pa.array(VALUES, type=kind)
        yield whole.slice(1, len(VALUES))  # offset 1, offsets not starting at 0
        yield pa.concat_arrays([whole, whole]).slice(len(whole) + 1, len(VALUES))


@pytest.mark.parametrize("array", list(arrays()), ids=lambda a: f"{a.type}-{a.offset}")
def test_string_arrays_read_as_their_values(array):
    texts = texts_from_arrow(array)
    assert texts.to_list() == array.to_pylist() == VALUES
    back = texts_to_arrow(texts)
    back.validate(full=True)
    assert back.type == pa.string() and back.to_pylist() == VALUES
    assert back.null_count == 2


def test_empty_and_all_null_arrays():
    for kind in (pa.string(), pa.large_string()):
        for array in (pa.array([], type=kind), pa.array(["a", "b"], type=kind).slice(2),
                      pa.array([None, None], type=kind)):
            texts = texts_from_arrow(array)
            assert texts.to_list() == array.to_pylist()
            out = texts_to_arrow(texts)
            out.validate(full=True)
            assert out.to_pylist() == array.to_pylist()
    # No values may come with empty buffers.
    for kind in (pa.string(), pa.large_string()):
        bare = pa.Array.from_buffers(kind, 0, [None, pa.py_buffer(b""), pa.py_buffer(b"")])
        assert texts_from_arrow(bare).to_list() == []
        assert texts_to_arrow(texts_from_arrow(bare)).to_pylist() == []


def test_null_slots_holding_bytes_stay_null():
    """Arrow allows bytes under a NULL slot; they are not a value."""
    cell = cell_format.encrypt_value("v", KEY, 1, "string", PLACE).encode()
    offsets = pa.array([0, len(cell), 2 * len(cell)], type=pa.int32()).buffers()[1]
    validity = pa.array([False, True]).buffers()[1]
    array = pa.Array.from_buffers(pa.string(), 2, [validity, offsets, pa.py_buffer(cell * 2)])
    out = cell_batch.decrypt_many(texts_from_arrow(array), {1: KEY}, PLACE, strict=True)
    assert texts_to_arrow(out).to_pylist() == [None, "v"]


def test_other_types_are_not_read_as_texts():
    for array in (pa.array([1, 2]), pa.array([b"a"]), pa.array([None], type=pa.null())):
        assert texts_from_arrow(array) is None


def test_output_too_large_for_one_string_array_is_refused(monkeypatch):
    monkeypatch.setattr(arrow_texts, "MAX_STRING_BYTES", 5)
    assert texts_to_arrow(Texts.from_strings(["12345"])).to_pylist() == ["12345"]
    with pytest.raises(FormatError, match="does not fit one Arrow string array"):
        texts_to_arrow(Texts.from_strings(["123", "456"]))


def _decrypt(name, values, rows):
    return cell_batch.decrypt_many(values, {1: KEY}, PLACE, strict=True, row_column=None
                                   if rows is None else "id", row_values=rows)


def test_udf_glue_reads_slices_nulls_and_large_string(spark):
    cells = cell_batch.encrypt_many(VALUES, KEY, 1, "string", PLACE)
    cells_bound = cell_batch.encrypt_many(VALUES, KEY, 1, "string", PLACE, row_column="id",
                                          row_values=[str(i) for i in range(len(VALUES))])
    unbound = _cells_udf("ssn", _decrypt, False, True).func
    bound = _cells_udf("ssn", _decrypt, True, True).func
    for kind in (pa.string(), pa.large_string()):
        padded = pa.array(["lead", *cells, "tail"], type=kind).slice(1, len(VALUES))
        out = unbound(padded)
        assert out.type == pa.string() and out.to_pylist() == VALUES
        rows = pa.array(["x", *[str(i) for i in range(len(VALUES))]], type=kind).slice(1)
        assert bound(pa.array(cells_bound, type=kind), rows).to_pylist() == VALUES


def test_udf_glue_names_the_column_and_serves_list_transforms(spark):
    cell = cell_format.encrypt_value("v", KEY, 1, "string", PLACE)
    tampered = cell[:-2] + ("A" if cell[-2] != "A" else "B") + cell[-1]
    udf = _cells_udf("ssn", _decrypt, False, True).func
    with pytest.raises(DecryptionError, match=r"^column ssn: .*value 1 of its batch"):
        udf(pa.array([cell, tampered]))

    def listed(name, values, rows):  # what the equality functions do: index and iterate
        return [None if v is None else f"{name}:{v}:{values[i]}" for i, v in enumerate(values)]

    udf = _cells_udf("c", listed, False, True).func
    assert udf(pa.array(["a", None, "é"]).slice(1)).to_pylist() == [None, "c:é:é"]
    assert udf(pa.array([1, None, 3])).to_pylist() == ["c:1:1", None, "c:3:3"]


def test_dataframe_functions_with_large_string_batches(spark, keyring):  # noqa: F811
    """With ``useLargeVarTypes`` Spark hands the UDFs large_string arrays."""
    table = TableRef(keyring.store.catalog, "hr", "people")
    rows = [(i, v) for i, v in enumerate(VALUES * 3)]
    df = spark.createDataFrame(rows, "id int, name string")
    key = "spark.sql.execution.arrow.useLargeVarTypes"
    before = spark.conf.get(key, None)
    spark.conf.set(key, "true")
    try:
        sealed = encrypt_columns(df, ["name"], keyring=keyring, table=table, row_key="id")
        stored = sealed.collect()
        assert all(r.name is None or r.name.startswith("ee1:1:string+row:") for r in stored)
        opened = decrypt_columns(spark.createDataFrame(stored, sealed.schema), ["name"],
                                 keyring=keyring, table=table, row_key="id")
        assert sorted(opened.collect(), key=lambda r: r.id) == df.orderBy("id").collect()
        moved = spark.createDataFrame(stored, sealed.schema).withColumn(
            "id", F.when(F.col("id") == 0, 1).when(F.col("id") == 1, 0).otherwise(F.col("id")))
        lenient = decrypt_columns(moved, ["name"], keyring=keyring, table=table,
                                  row_key="id", strict=False)
        assert {r.id: r.name for r in lenient.collect()}[1] is None
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)
