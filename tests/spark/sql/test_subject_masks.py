"""The column masks of subject-keyed columns, run on local Spark through the rendered SQL.

The mask ``decrypt_subject_<schema>`` and ``open_subject_cell`` are the SQL Databricks runs;
its batch Python functions run their real handlers as Arrow UDFs (only the group answer is
simulated). Subjects' salts reach the handler through the mask's correlated lookup of
``dek_subjects``.
"""

from __future__ import annotations

import base64

import pytest
from pyspark.errors import PySparkException

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError
from envelope_encryption.keyring.subjects import SubjectStore
from envelope_encryption.spark.columns import TableRef
from envelope_encryption.spark.sql.deploy import apply_column_masks
from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment
from envelope_encryption.spark.sql.render import render_mask, render_script
from envelope_encryption.spark.sql.subject_mask import (
    read_subject_table_as,
    subject_masked_view,
)
from envelope_encryption.spark.sql.target import SqlOptions, SqlTarget
from envelope_encryption.spark.subject_columns import encrypt_subject_columns

ROWS = [(1, 7, "Ada", "111-11-1111"), (2, 8, "Grace", "222-22-2222"),
        (3, 7, "Ada L.", None), (4, 8, None, "444-44-4444")]
DDL = "id int, customer_id int, name string, ssn string"


def _subjects(ctx) -> SubjectStore:
    return SubjectStore(ctx.spark, ctx.lakehouse, ctx.settings.catalog,
                        ctx.settings.crypto_schema)


def _write(ctx, rows=ROWS, ddl=DDL, table="orders", columns=("name", "ssn")) -> TableRef:
    """Subject-keyed cells of ``rows`` (subject: customer_id) in a local table."""
    spark = ctx.spark
    ref = TableRef(ctx.settings.catalog, "hr", table)
    out = encrypt_subject_columns(spark.createDataFrame(rows, ddl), list(columns),
                                  keyring=ctx.keyring, table=ref,
                                  subject_column="customer_id", subjects=_subjects(ctx))
    ctx.lakehouse.ensure_schema(spark, ref.catalog, "hr", "test data")
    out.write.mode("overwrite").saveAsTable(
        f"{ctx.lakehouse.schema(ref.catalog, 'hr')}.`{table}`")
    return ref


def _env(ctx, groups, **options) -> LocalSqlEnvironment:
    return LocalSqlEnvironment(ctx.spark, ctx.settings, SqlOptions(**options),
                               groups=groups).install()


def _member(ctx) -> str:
    return f"{ctx.settings.catalog}.hr.crypto.user"


def _read(env, ref, columns=("name", "ssn")) -> list[tuple]:
    return [tuple(r) for r in read_subject_table_as(env, ref, columns, "customer_id")
            .orderBy("id").collect()]


def _erase(ctx, ref, subject_id: str) -> None:
    subjects = _subjects(ctx)
    subjects.erase(ref.scope, subjects.hash_of(ctx.keyring, ref.scope, subject_id),
                   ctx.keyring.audit)


def test_member_reads_plaintext_then_an_erased_subject_reads_null(local_ctx):
    ref = _write(local_ctx)
    env = _env(local_ctx, [_member(local_ctx)], decrypt="lenient")
    assert _read(env, ref) == ROWS

    _erase(local_ctx, ref, "7")
    # Subject 7's cells are gone for good; subject 8 still reads, NULLs stay NULL.
    assert _read(env, ref) == [(1, 7, None, None), (2, 8, "Grace", "222-22-2222"),
                               (3, 7, None, None), (4, 8, None, "444-44-4444")]


def test_strict_read_of_an_erased_subject_fails_naming_erasure(local_ctx):
    ref = _write(local_ctx)
    _erase(local_ctx, ref, "8")
    env = _env(local_ctx, [_member(local_ctx)])
    # The project's SubjectErased, naming the subject by its hash (never its id).
    hashed = _subjects(local_ctx).hash_of(local_ctx.keyring, ref.scope, "8")
    with pytest.raises(PySparkException, match=f"SubjectErased.*subject {hashed} was erased"):
        _read(env, ref)
    # The other subject's rows still read (a query that does not touch subject 8).
    view = subject_masked_view(env, ref, ["name", "ssn"], "customer_id")
    rows = local_ctx.spark.table(view).where("customer_id = 7").orderBy("id").collect()
    assert [tuple(r) for r in rows] == [ROWS[0], ROWS[2]]


def test_non_members_read_null_and_unwrap_nothing_job_group_reads_cells(local_ctx):
    ref = _write(local_ctx)
    stored = [tuple(r) for r in local_ctx.spark.table(
        local_ctx.lakehouse.table(ref.catalog, "hr", "orders")).orderBy("id").collect()]

    outsider = _env(local_ctx, ["someone.else"])
    assert _read(outsider, ref) == [(r[0], r[1], None, None) for r in ROWS]
    assert (outsider.keyring_uses, outsider.kek_unwraps) == (0, [])

    jobs = f"{local_ctx.settings.catalog}.crypto.jobs"
    job = _env(local_ctx, [jobs, _member(local_ctx)])
    assert _read(job, ref) == stored  # the cells as stored: a member of both gets no plaintext
    assert (job.keyring_uses, job.kek_unwraps) == (0, [])

    redacted = _env(local_ctx, [], non_member="redacted")
    assert {r[2] for r in _read(redacted, ref)} == {"[REDACTED]", None}


def test_unwraps_are_dek_versions_never_subjects(local_ctx):
    rows = [(i, i, f"person-{i}", f"{i:03d}-00-0000") for i in range(1, 201)]
    ref = _write(local_ctx, rows)
    local_ctx.keyring.create_version(ref.scope)  # a second version, not used by any cell
    env = _env(local_ctx, [_member(local_ctx)])
    assert _read(env, ref) == rows
    # 200 subjects: each worker process unwrapped each DEK version at most once.
    assert env.kek_unwraps, "the handler unwrapped nothing: the count proves nothing"
    assert len(env.kek_unwraps) == len(set(env.kek_unwraps))
    assert {version for _, version in env.kek_unwraps} <= {1, 2}
    assert len(env.kek_unwraps) <= 2 * len({pid for pid, _ in env.kek_unwraps})


def test_no_key_or_salt_derived_key_in_the_plan(local_ctx):
    ref = _write(local_ctx)
    env = _env(local_ctx, [_member(local_ctx)])
    frame = read_subject_table_as(env, ref, ["name", "ssn"], "customer_id")
    assert frame.count() == len(ROWS)
    plan = frame._jdf.queryExecution().toString()
    # The salts come in as a join, not as literals: one lookup per masked column.
    executed = frame._jdf.queryExecution().executedPlan().toString()
    assert executed.count("dek_subjects[") == 2
    deks = local_ctx.keyring.deks(ref.scope)
    id_key = _subjects(local_ctx).id_key(local_ctx.keyring, ref.scope).reveal()
    for secret in [*(k.reveal() for k in deks.values()), id_key]:
        for text in (secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode()):
            assert text not in plan


def test_cells_of_another_subject_or_column_are_refused(local_ctx):
    ref = _write(local_ctx)
    table = local_ctx.lakehouse.table(ref.catalog, "hr", "orders")
    spark = local_ctx.spark
    cells = {r.id: r for r in spark.table(table).collect()}
    tampered = [
        (1, 7, cells[2].name, cells[1].ssn),  # subject 8's cell on a row of subject 7
        (2, 8, cells[2].ssn, cells[2].ssn),  # moved from another column
        (3, 7, cells[1].name[:-6] + "AAAAA=", None),  # edited payload
        (4, 9, cells[1].name, None),  # a subject that has no salt
    ]
    spark.createDataFrame(tampered, DDL).write.mode("overwrite").saveAsTable(table)
    lenient = _env(local_ctx, [_member(local_ctx)], decrypt="lenient")
    assert _read(lenient, ref) == [(1, 7, None, "111-11-1111"), (2, 8, None, "222-22-2222"),
                                   (3, 7, None, None), (4, 9, None, None)]
    strict = _env(local_ctx, [_member(local_ctx)])
    view = subject_masked_view(strict, ref, ["name"], "customer_id")
    with pytest.raises(PySparkException, match=r"does not authenticate at .*orders\.name"):
        spark.table(view).where("id = 1").collect()
    with pytest.raises(PySparkException, match="no salt in the subject table"):
        spark.table(view).where("id = 4").collect()


def test_rendered_mask_statement_and_apply_column_masks(local_ctx):
    settings = Settings(backend="aws-kms", catalog="main", schemas=("default",),
                        metastore_id="m", service_credential="c",
                        options={"aws-region": "eu-west-1"})
    target = SqlTarget.of(settings, SqlOptions())
    ref = TableRef("main", "default", "orders")
    assert render_mask(target, ref, "email", "customer_id") == (
        "ALTER TABLE `main`.`default`.`orders` ALTER COLUMN `email` SET MASK "
        "`main`.`crypto`.`decrypt_subject_default` USING COLUMNS ('orders', 'email', "
        "`customer_id`)")
    with pytest.raises(ConfigError, match="subject column"):
        render_mask(target, ref, "email", "email")
    script = render_script(settings)
    assert "REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`subject_hash`" in script
    assert "REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`decrypt_subject_cells`" in script

    # Locally the masks on the table's name have no key path: as for every mask, members
    # read through the rendered functions, everyone else the non-member mode.
    ref = _write(local_ctx)
    name = apply_column_masks(local_ctx.spark, local_ctx.settings, ref, ["name", "ssn"],
                              databricks=False, subject_column="customer_id")[0]
    rows = local_ctx.spark.table(name).orderBy("id").collect()
    assert [(r.name, r.ssn) for r in rows] == [(None, None)] * len(ROWS)


def test_aws_kms_on_moto_unwraps_per_worker_never_per_subject(spark, moto):
    from tests.support.kms_strict import count_kms_requests

    from .test_backends import _kms_context

    ctx = _kms_context(spark, moto)
    rows = [(i, i, f"person-{i}", None) for i in range(1, 201)]
    ref = _write(ctx, rows)
    env = _env(ctx, [_member(ctx)], decrypt="lenient")
    with count_kms_requests() as calls:
        assert _read(env, ref) == rows
    _erase(ctx, ref, "5")
    with count_kms_requests() as again:
        seen = _read(env, ref)
    assert seen[4] == (5, 5, None, None) and seen[:4] + seen[5:] == rows[:4] + rows[5:]
    # KMS Decrypt: the DEK and the integrity key, once per Python worker process: 200
    # subjects cost no more than one.
    workers = {pid for pid, _ in env.kek_unwraps}
    assert [version for _, version in env.kek_unwraps] == [1] * len(workers)
    print(f"KMS Decrypt calls for 200 subjects: {calls['Decrypt']} (first read), "
          f"{again['Decrypt']} (second read); worker processes: {len(workers)}")
    assert 1 <= calls["Decrypt"] <= 2 * (len(workers) + 2)
    assert again["Decrypt"] <= calls["Decrypt"]


def test_the_batch_handler_reads_pandas_and_arrow_alike(monkeypatch):
    """The handler Unity Catalog runs (pandas Series) and the local one (pyarrow arrays):
    NULL for no reader, plaintext, NULL or the project's error per strictness."""
    import os

    import pandas as pd
    import pyarrow as pa

    from envelope_encryption.cell.subject import (
        SubjectCiphers,
        SubjectErased,
        encrypt_subject_many,
    )
    from envelope_encryption.spark.sql import subject_cells

    place = "c.hr.orders.name"
    ciphers = SubjectCiphers("c.hr", {1: os.urandom(32)})
    (h7, s7), (h8, s8) = ("a" * 32, os.urandom(32)), ("b" * 32, os.urandom(32))
    cell7, cell8 = encrypt_subject_many(["Ada", "Grace"], [h7, h8], [s7, s8], [False, False],
                                        ciphers, 1, "string", place)
    assert subject_cells.unpack_subject(None) == (None, None, None)
    assert subject_cells.unpack_subject(bytes.fromhex(h7)) == (h7, None, True)
    assert subject_cells.unpack_subject(bytes.fromhex(h7) + s7) == (h7, s7, False)

    # The keyring's verification is another test's: here the ciphers are given.
    monkeypatch.setattr(subject_cells, "_ciphers", lambda payload, keyring, on_unwrap: ciphers)
    rows = [  # value, keyring, subject -> lenient answer
        (cell7, "k", bytes.fromhex(h7) + s7, "Ada"),
        (cell7, None, bytes.fromhex(h7) + s7, None),  # not a reader of plaintext
        (None, "k", None, None),
        (cell8, "k", bytes.fromhex(h7) + s7, None),  # another subject's cell
        (cell8, "k", bytes.fromhex(h8), None),  # erased
        (cell7, "k", None, None),  # no salt
        ("Ada", "k", bytes.fromhex(h7) + s7, None),  # not a cell
    ]
    values, keyrings, subjects, expected = (list(c) for c in zip(*rows, strict=True))
    places = [place] * len(rows)
    for kind in (pd.Series, pa.array):
        columns = [kind(values), kind(places), kind(keyrings), kind(subjects),
                   kind([False] * len(rows))]
        assert subject_cells.open_subject_batch({}, columns) == expected
    strict = [pd.Series(c) for c in ([cell8], [place], ["k"], [bytes.fromhex(h8)], [True])]
    with pytest.raises(SubjectErased, match=f"{place}: subject {h8} was erased"):
        subject_cells.open_subject_batch({}, strict)


def test_databricks_masks_of_subject_columns_name_the_subject_mask():
    from .test_deploy import SETTINGS, RecordingSession

    ref = TableRef("main", "default", "customers")
    with pytest.raises(ConfigError, match="decrypt_subject_default does not exist"):
        apply_column_masks(RecordingSession(functions=("main.crypto.decrypt_default",)),
                           SETTINGS, ref, ["ssn"], databricks=True, subject_column="id")
    session = RecordingSession(functions=("main.crypto.decrypt_subject_default",))
    apply_column_masks(session, SETTINGS, ref, ["ssn"], databricks=True, subject_column="id")
    assert session.statements == [
        "ALTER TABLE `main`.`default`.`customers` ALTER COLUMN `ssn` SET MASK "
        "`main`.`crypto`.`decrypt_subject_default` USING COLUMNS ('customers', 'ssn', `id`)"]
