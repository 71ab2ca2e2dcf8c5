"""The check jobs run before they rewrite or count cells: what they read must be cells."""

from __future__ import annotations

import base64
import os

import pytest
from pyspark.errors import PySparkException

from envelope_encryption.cell import encrypt_value
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.spark.cells_guard import (
    NotCellsError,
    checked_rewrite,
    masked_columns,
    require_cells,
)
from envelope_encryption.spark.columns import TableRef

REF = TableRef("main", "hr", "people")
LOCAL = Lakehouse(databricks=False)
KEY = bytes(range(32))


def _cell(text: str) -> str:
    return encrypt_value(text, KEY, 1, "string", REF.place("ssn"))


def _df(spark, values):
    return spark.createDataFrame([(i, v) for i, v in enumerate(values)], "id int, ssn string")


def _require(spark, df, **kw):
    return require_cells(spark, df, REF, ["ssn"], lakehouse=LOCAL, job_group="main.crypto.jobs",
                         **kw)


def test_cells_and_nulls_pass_and_are_counted(spark):
    seen = _require(spark, _df(spark, [_cell("a"), None, _cell("b")]))
    assert seen.rows == 3 and seen.columns["ssn"].non_null == 2
    assert _require(spark, _df(spark, [])).rows == 0  # an empty table is no evidence


def test_plaintext_from_a_mask_is_refused(spark):
    with pytest.raises(NotCellsError, match=r"column ssn: 2 of 3 non-NULL values are not cells: "
                                            r"plaintext or \[REDACTED\] from a mask\?"):
        _require(spark, _df(spark, [_cell("a"), "933-73-8723", "[REDACTED]"]))


def test_a_column_null_in_every_row_is_refused_unless_allowed(spark):
    df = _df(spark, [None] * 12)
    with pytest.raises(NotCellsError, match=r"12 of 12 values NULL.*--allow-null-columns"):
        _require(spark, df)
    assert _require(spark, df, allow_null_columns=True).rows == 12


def test_legacy_values_count_only_where_the_scope_has_a_legacy_key(spark):
    legacy = base64.b64encode(os.urandom(12 + 5 + 16)).decode()
    df = _df(spark, [legacy, _cell("a")])
    assert _require(spark, df, legacy=True).columns["ssn"].legacy == 1
    with pytest.raises(NotCellsError, match="1 of 2 non-NULL values are not cells"):
        _require(spark, df)
    # Plaintext is no legacy value, even in a legacy scope.
    with pytest.raises(NotCellsError):
        _require(spark, _df(spark, ["Ada Lovelace", legacy]), legacy=True)


def test_a_rewrite_that_loses_values_fails_before_it_is_written(spark):
    df = _df(spark, [_cell("a"), _cell("b"), None])
    seen = _require(spark, df)
    kept = checked_rewrite(spark, df, seen, "_rewrite_kept")
    assert kept.count() == 3
    lost = df.selectExpr("id", "CASE WHEN id = 0 THEN NULL ELSE ssn END AS ssn")
    with pytest.raises(PySparkException, match="nothing was written"):
        checked_rewrite(spark, lost, seen, "_rewrite_lost").collect()
    fewer = df.where("id > 0")
    with pytest.raises(PySparkException, match="nothing was written"):
        checked_rewrite(spark, fewer, seen, "_rewrite_fewer").collect()


class FakeDatabricks:
    """Answers the two queries the check makes on Databricks; everything else is local."""

    def __init__(self, spark, masks, member: bool) -> None:
        self.spark, self.masks, self.member = spark, masks, member
        self.queries: list[str] = []

    def sql(self, text, args=None):
        self.queries.append(text)
        if "information_schema.column_masks" in text:
            if self.masks is None:
                raise PermissionError("information_schema is not readable")
            rows = [(c, "main", "crypto", "decrypt_hr") for c in self.masks]
            return self.spark.createDataFrame(
                rows, "column_name string, mask_catalog string, mask_schema string, "
                      "mask_name string")
        if "is_account_group_member('main.crypto.jobs')" in text:
            return self.spark.createDataFrame([(self.member,)], "m boolean")
        raise AssertionError(f"unexpected query {text}")


DATABRICKS = Lakehouse(databricks=True)


@pytest.mark.parametrize("masks", [None, ["ssn"]])
def test_on_databricks_masked_or_unknown_needs_the_job_group(spark, masks):
    df = _df(spark, [_cell("a")])
    outsider = FakeDatabricks(spark, masks, member=False)
    with pytest.raises(NotCellsError, match=r"not a member of main\.crypto\.jobs") as error:
        require_cells(outsider, df, REF, ["ssn"], lakehouse=DATABRICKS,
                      job_group="main.crypto.jobs")
    if masks is None:
        assert "cannot be told" in str(error.value)
    job = FakeDatabricks(spark, masks, member=True)
    assert require_cells(job, df, REF, ["ssn"], lakehouse=DATABRICKS,
                         job_group="main.crypto.jobs").rows == 1


def test_on_databricks_an_unmasked_table_needs_no_group(spark):
    fake = FakeDatabricks(spark, [], member=False)
    assert masked_columns(fake, DATABRICKS, REF) == {}
    assert require_cells(fake, _df(spark, [_cell("a")]), REF, ["ssn"], lakehouse=DATABRICKS,
                         job_group="main.crypto.jobs").rows == 1
    assert "schema_name = :schema AND table_name = :table" in fake.queries[0]


def test_census_counts_exactly_what_is_cell_accepts(spark):
    """The census applies the cell grammar to whole Arrow columns: it must agree with
    ``is_cell`` value by value, on near-misses too (trailing newline, non-ASCII digits,
    look-alike letters, padding, a version too long)."""
    from envelope_encryption.cell import is_cell
    from envelope_encryption.spark.cells_guard import census

    cell = _cell("a")
    decimal = encrypt_value("1.50", KEY, 12, "decimal(3,2)", REF.place("ssn"))
    legacy = base64.b64encode(os.urandom(12 + 5 + 16)).decode()
    values = [cell, cell + "\n", cell.replace("ee1:1:", "ee1:\u0661:"), decimal,
              decimal.replace("(3,", "(\u0663,"), None, "plain", "ee1:01:string:AAAA",
              "ee1:1:string+row:AAAA", "ee1:1:String:AAAA", " " + cell, cell + " ",
              "ee1:1:string:AA==", "ee1:1:string:A===", "ee1:12345678901:string:AAAA",
              cell.replace("A", "\uff21"), legacy, legacy + "\n", ""]
    counted = census(_df(spark, values), REF, ["ssn"], legacy=True).columns["ssn"]
    assert counted.cells == sum(1 for v in values if v is not None and is_cell(v)) >= 4
    assert counted.non_null == len(values) - 1 and counted.legacy == 1


def test_subject_keyed_and_deterministic_cells_are_cells_too(spark):
    """A masked column of subject-keyed or deterministic cells reads as cells for the job
    group; near-misses of those forms do not."""
    from envelope_encryption.cell.equality import DeterministicSealer, DomainKeys
    from envelope_encryption.cell.subject import is_subject_cell
    from envelope_encryption.secret import SecretKey

    deterministic = DeterministicSealer(
        DomainKeys.derive("ssn", 3, SecretKey(KEY, "domain"))).seal("933-73-8723", "string")
    subject = _cell("a").replace("ee1:1:string:", "ee1:1:string+subj:")
    assert is_subject_cell(subject)  # the subject form's own parser accepts its shape
    good = [deterministic, subject, _cell("b")]
    bad = [deterministic + "\n", "ed1:0:string:AAAA", subject.replace("+subj", "+sub"),
           "bi1:1:00ff", "ed1:1:string:"]
    seen = _require(spark, _df(spark, good))
    assert seen.columns["ssn"].cells == 3
    with pytest.raises(NotCellsError, match=r"5 of 8 non-NULL values are not cells"):
        _require(spark, _df(spark, good + bad))
