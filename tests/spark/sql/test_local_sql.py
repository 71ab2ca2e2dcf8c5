"""The rendered decrypt/encrypt SQL, run on local Spark through the local stand-ins.

Only ``is_account_group_member``, the Python unwrap function's registration and the mask
(a view) are simulated; the decrypt and encrypt functions are the SQL Databricks runs.
"""

from __future__ import annotations

import base64
import os

import pytest
from pyspark.errors import PySparkException

from envelope_encryption.keyring.base import LEGACY_KEY_TYPE
from envelope_encryption.spark.columns import TableRef, decrypt_columns
from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment, read_table_as
from envelope_encryption.spark.sql.target import REDACTION, SqlOptions
from tests.support.keyrings import append_signed

from .conftest import write_encrypted

ROWS = [(1, "Zoë Ångström 日本", "933-73-8723"), (2, "", "123-45-6789"), (3, None, None)]
ROWS_V2 = [(4, "Bob", "111-22-3333"), (5, "Ann ' ; --", "999-88-7777")]


def _member(ctx, schema="hr"):
    return f"{ctx.settings.catalog}.{schema}.crypto.user"


def _plain(df):
    return sorted(tuple(r) for r in df.orderBy("id").collect())


def test_member_reads_plaintext_of_every_dek_version(local_ctx):
    ref = write_encrypted(local_ctx, ROWS)
    local_ctx.keyring.create_version(ref.scope)
    write_encrypted(local_ctx, ROWS_V2)
    stored = local_ctx.spark.table(local_ctx.lakehouse.table(ref.catalog, "hr", "people"))
    versions = {r[0] for r in stored.selectExpr("split_part(ssn, ':', 2)").collect() if r[0]}
    assert versions == {"1", "2"}

    seen = read_table_as(local_ctx.spark, local_ctx.settings, ref, ["name", "ssn"],
                         member=True)
    assert _plain(seen) == sorted(ROWS + ROWS_V2, key=lambda r: r[0])


def test_non_member_reads_no_plaintext_by_default(local_ctx):
    ref = write_encrypted(local_ctx, ROWS)
    env = LocalSqlEnvironment(local_ctx.spark, local_ctx.settings, groups=["someone.else"])
    env.install()
    view = env.masked_view(ref, ["name", "ssn"])
    rows = local_ctx.spark.table(view).orderBy("id").collect()
    assert [(r.name, r.ssn) for r in rows] == [(None, None)] * 3
    # Fail closed: nothing was even unwrapped for a non-member, no keyring was used.
    assert (env.unwrap_calls, env.keyring_uses, env.kek_unwraps) == (0, 0, [])


@pytest.mark.parametrize("mode", ["redacted", "ciphertext"])
def test_non_member_modes_are_explicit_options(local_ctx, mode):
    ref = write_encrypted(local_ctx, ROWS)
    stored = {r.id: r.ssn for r in local_ctx.spark.table(
        local_ctx.lakehouse.table(ref.catalog, "hr", "people")).collect()}
    seen = read_table_as(local_ctx.spark, local_ctx.settings, ref, ["ssn"], member=False,
                         options=SqlOptions(non_member=mode))
    got = {r.id: r.ssn for r in seen.collect()}
    if mode == "redacted":
        assert got == {1: REDACTION, 2: REDACTION, 3: None}
    else:
        assert got == stored


def test_key_service_unwraps_once_per_worker_and_version(local_ctx):
    ref = write_encrypted(local_ctx, ROWS * 50)
    local_ctx.keyring.create_version(ref.scope)
    write_encrypted(local_ctx, ROWS_V2 * 50)
    env = LocalSqlEnvironment(local_ctx.spark, local_ctx.settings, groups=[_member(local_ctx)])
    env.install()
    view = env.masked_view(ref, ["name", "ssn"])
    # Two masked columns, 250 rows in several batches, two versions, two queries: each
    # worker process asks the key service for each version at most once, and not per row.
    assert local_ctx.spark.table(view).where("ssn IS NOT NULL").count() == 200
    first = env.kek_unwraps
    assert {version for _, version in first} == {1, 2}
    assert env.keyring_uses > 0 and env.unwrap_calls == 0  # no key map, no unwrap_key
    local_ctx.spark.table(view).repartition(3).collect()
    unwraps = env.kek_unwraps
    assert len(unwraps) == len(set(unwraps)) <= 2 * len({pid for pid, _ in unwraps})


def test_cell_moved_to_another_column_fails(local_ctx):
    ref = write_encrypted(local_ctx, ROWS)
    spark = local_ctx.spark
    table = local_ctx.lakehouse.table(ref.catalog, "hr", "people")
    # An attacker with write access copies the ssn cells into the name column.
    spark.table(table).selectExpr("id", "ssn AS name", "ssn").createOrReplaceTempView("moved")
    env = LocalSqlEnvironment(spark, local_ctx.settings, groups=[_member(local_ctx)]).install()
    decrypt = env.decrypt_function("hr")
    refused = "envelope encryption: a cell does not authenticate here"
    with pytest.raises(PySparkException, match=refused):
        spark.sql(f"SELECT {decrypt}(name, 'people', 'name') FROM moved").collect()
    # Same cells under a table of another name (copied to another table): also refused.
    with pytest.raises(PySparkException, match=refused):
        spark.sql(f"SELECT {decrypt}(ssn, 'people2', 'ssn') FROM moved "
                  "WHERE ssn IS NOT NULL").collect()
    # Lenient: the moved cells read as NULL, never as garbage.
    lenient = LocalSqlEnvironment(spark, local_ctx.settings, SqlOptions(decrypt="lenient"),
                                  groups=[_member(local_ctx)]).install()
    rows = spark.sql(f"SELECT {lenient.decrypt_function('hr')}(name, 'people', 'name') AS v "
                     "FROM moved").collect()
    assert [r.v for r in rows] == [None, None, None]


def _one(spark, function, value, table="people", column="ssn"):
    return spark.sql(f"SELECT {function}(:v, :t, :c) AS v",
                     args={"v": value, "t": table, "c": column}).first().v


def _padding_bits_set(cell: str) -> str:
    """The same payload bytes, written with non-zero unused bits (non-canonical base64)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    stem = cell.rstrip("=")
    assert stem != cell, "the test cell's payload has padding"
    last = alphabet.index(stem[-1])
    return stem[:-1] + alphabet[last | 1] + cell[len(stem):]


def test_tampered_truncated_unknown_and_plain_values(local_ctx):
    ref = write_encrypted(local_ctx, ROWS)
    spark = local_ctx.spark
    cell = spark.table(local_ctx.lakehouse.table(ref.catalog, "hr", "people")).where(
        "id = 1").first().ssn
    env = LocalSqlEnvironment(spark, local_ctx.settings, groups=[_member(local_ctx)]).install()
    decrypt = env.decrypt_function("hr")
    assert _one(spark, decrypt, cell) == "933-73-8723"
    header, payload = cell.rsplit(":", 1)
    raw = bytearray(base64.b64decode(payload))
    raw[20] ^= 1
    bad = {
        "tampered": f"{header}:{base64.b64encode(bytes(raw)).decode()}",
        "truncated": cell[:-8],
        "junk appended": cell + ":AAAA",
        "other version": cell.replace("ee1:1:", "ee1:7:", 1),
        "other type": cell.replace(":string:", ":int:", 1),
        "not a cell": "933-73-8723",
        # What Spark's lenient unbase64 used to let through.
        "trailing newline": cell + "\n",
        "leading space": " " + cell,
        "zero-width space": cell[:20] + "\u200b" + cell[20:],
        "'=' appended": cell + "=",
        "line break in payload": cell[:30] + "\r\n" + cell[30:],
        "payload shorter than IV and tag": header + ":" + base64.b64encode(raw[:20]).decode(),
        "empty payload": header + ":",
        "fullwidth version digit": cell.replace("ee1:1:", "ee1:\uff11:", 1),
    }
    for what, value in bad.items():
        # The project's error, never plaintext nor a raw Java error.
        with pytest.raises(PySparkException, match="envelope encryption: ") as info:
            _one(spark, decrypt, value)
            pytest.fail(f"{what} decrypted")
        assert "IllegalArgumentException" not in str(info.value), what
    lenient = LocalSqlEnvironment(spark, local_ctx.settings, SqlOptions(decrypt="lenient"),
                                  groups=[_member(local_ctx)]).install()
    for what, value in bad.items():
        assert _one(spark, lenient.decrypt_function("hr"), value) is None, what
    # The same payload bytes written as non-canonical base64 (the empty name's cell has
    # padding): Spark's unbase64 would decode it to the authentic payload.
    padded = spark.table(local_ctx.lakehouse.table(ref.catalog, "hr", "people")).where(
        "id = 2").first().name
    assert _one(spark, lenient.decrypt_function("hr"), padded, column="name") == ""
    lenient_values = {}
    for value in (_padding_bits_set(padded), padded.rstrip("=")):
        lenient_values[value] = _one(spark, lenient.decrypt_function("hr"), value, column="name")
    assert lenient_values == dict.fromkeys(lenient_values)
    # Strict again (the functions of one deployment share their names).
    LocalSqlEnvironment(spark, local_ctx.settings, groups=[_member(local_ctx)]).install()
    assert _one(spark, decrypt, padded, column="name") == ""
    changed = _padding_bits_set(padded)
    assert base64.b64decode(changed.rsplit(":", 1)[1]) == base64.b64decode(
        padded.rsplit(":", 1)[1])
    for value in (changed, padded.rstrip("=")):  # and the padding stripped
        with pytest.raises(PySparkException, match="envelope encryption: a value is a malf"):
            _one(spark, decrypt, value, column="name")


def test_retired_version_decrypts_nothing(local_ctx):
    ref = write_encrypted(local_ctx, ROWS)
    local_ctx.keyring.create_version(ref.scope)
    local_ctx.keyring.retire(ref.scope, 1, in_use=True, force=True)
    seen = read_table_as(local_ctx.spark, local_ctx.settings, ref, ["ssn"], member=True,
                         options=SqlOptions(decrypt="lenient"))
    assert [r.ssn for r in seen.collect()] == [None, None, None]


def test_sql_encrypt_makes_cells_the_library_reads(local_ctx):
    ref = write_encrypted(local_ctx, ROWS)
    local_ctx.keyring.create_version(ref.scope)
    spark = local_ctx.spark
    env = LocalSqlEnvironment(spark, local_ctx.settings, groups=[_member(local_ctx)]).install()
    encrypt = env.encrypt_function("hr")
    df = spark.sql(
        f"SELECT 1 AS id, {encrypt}('Zoë 日本', 'people', 'name') AS name, "
        f"{encrypt}(CAST(NULL AS STRING), 'people', 'ssn') AS ssn"
    )
    cells = df.collect()[0]
    assert cells.name.startswith("ee1:2:string:") and cells.ssn is None
    back = decrypt_columns(df, ["name", "ssn"], keyring=local_ctx.keyring, table=ref,
                           types={"name": "string", "ssn": "string"})
    assert back.first().name == "Zoë 日本"
    # Two encryptions of one value differ (random IV), and the SQL decrypt reads them.
    two = [r.c for r in spark.sql(f"SELECT {encrypt}('x', 'people', 'ssn') AS c "
                                  "FROM range(2)").collect()]
    assert two[0] != two[1]
    assert [_one(spark, env.decrypt_function("hr"), c) for c in two] == ["x", "x"]


def test_legacy_cells_of_the_original_notebooks(local_ctx, spark):
    """A scope whose v1 is an imported legacy DEK reads header-less cells and new ones."""
    from envelope_encryption.kek.base import WrapContext
    from envelope_encryption.keyring.base import DekRecord
    from envelope_encryption.secret import SecretKey

    scope = f"{local_ctx.settings.catalog}.legacy"
    dek_text = b"0123456789abcdefghijklmnopqrstuv"  # the original's 32-character DEK
    wrapped = local_ctx.kek.wrap(SecretKey(dek_text), WrapContext(scope, 1))
    append_signed(local_ctx.store, local_ctx.kek,
                  DekRecord(scope=scope, version=1, wrapped=wrapped, kek_backend="local",
                            key_type=LEGACY_KEY_TYPE))
    settings = local_ctx.settings.__class__(**{**local_ctx.settings.__dict__,
                                               "schemas": ("hr", "legacy")})
    legacy = spark.sql(
        "SELECT base64(aes_encrypt('Ada Lovelace', :k, 'GCM', 'DEFAULT')) AS v",
        args={"k": dek_text},
    ).first().v
    env = LocalSqlEnvironment(spark, settings, groups=[
        f"{settings.catalog}.legacy.crypto.user", f"{settings.catalog}.hr.crypto.user"
    ]).install()
    decrypt = env.decrypt_function("legacy")
    assert _one(spark, decrypt, legacy, "t", "c") == "Ada Lovelace"
    new = _one(spark, env.encrypt_function("legacy"), "Grace", "t", "c")
    assert new.startswith("ee1:1:string:")
    assert _one(spark, decrypt, new, "t", "c") == "Grace"
    # Without an imported legacy key, a header-less value is refused.
    with pytest.raises(PySparkException):
        _one(spark, env.decrypt_function("hr"), legacy, "t", "c")


def test_no_key_reaches_a_plan_string(local_ctx):
    ref = write_encrypted(local_ctx, ROWS)
    key = local_ctx.keyring.dek(ref.scope, 1).reveal()
    seen = read_table_as(local_ctx.spark, local_ctx.settings, ref, ["name", "ssn"],
                         member=True)
    seen.collect()
    plan = seen._jdf.queryExecution().toString()
    assert key.hex().upper() not in plan.upper()
    assert base64.b64encode(key).decode() not in plan


def test_groups_come_from_the_environment_by_default(local_ctx, monkeypatch):
    ref = write_encrypted(local_ctx, ROWS)
    monkeypatch.setenv("ENVELOPE_LOCAL_GROUPS", f"x, {_member(local_ctx)}")
    env = LocalSqlEnvironment(local_ctx.spark, local_ctx.settings).install()
    assert env.groups == sorted(["x", _member(local_ctx)])
    view = env.masked_view(ref, ["ssn"])
    assert local_ctx.spark.table(view).where("id = 1").first().ssn == "933-73-8723"
    assert os.environ["ENVELOPE_LOCAL_GROUPS"]


def test_read_table_as_other_scope_table_ref(local_ctx):
    with pytest.raises(Exception, match="not one of --schemas"):
        read_table_as(local_ctx.spark, local_ctx.settings,
                      TableRef(local_ctx.settings.catalog, "sales", "t"), ["x"], member=True)


def test_the_job_group_reads_cells_unchanged_and_unwraps_nothing(local_ctx):
    ref = write_encrypted(local_ctx, ROWS)
    spark = local_ctx.spark
    stored = {r.id: (r.name, r.ssn) for r in spark.table(
        local_ctx.lakehouse.table(ref.catalog, "hr", "people")).collect()}
    jobs = f"{local_ctx.settings.catalog}.crypto.jobs"
    # A job-group member, and one also in the reader group: the job group is checked first.
    for groups in ([jobs], [jobs, _member(local_ctx)]):
        env = LocalSqlEnvironment(spark, local_ctx.settings, groups=groups).install()
        view = env.masked_view(ref, ["name", "ssn"], name="people_as_job")
        assert {r.id: (r.name, r.ssn) for r in spark.table(view).collect()} == stored
        # Cells, never plaintext: no key is unwrapped, no keyring used.
        assert (env.unwrap_calls, env.keyring_uses, env.kek_unwraps) == (0, 0, [])
    # Without a job group nobody is exempt: the same principal reads NULL.
    env = LocalSqlEnvironment(spark, local_ctx.settings, SqlOptions(job_group=""),
                              groups=[jobs]).install()
    view = env.masked_view(ref, ["name", "ssn"], name="people_no_job_group")
    assert {r.ssn for r in spark.table(view).collect()} == {None}


def test_set_groups_changes_the_principal_of_the_masks_on_table_names(local_ctx):
    from envelope_encryption.spark.sql.deploy import apply_column_masks

    ref = write_encrypted(local_ctx, ROWS)
    spark = local_ctx.spark
    name = local_ctx.lakehouse.table(ref.catalog, "hr", "people")
    stored = {r.id: r.ssn for r in spark.table(name).collect()}
    apply_column_masks(spark, local_ctx.settings, ref, ["ssn"], databricks=False)
    env = LocalSqlEnvironment(spark, local_ctx.settings, groups=[]).install()
    assert {r.ssn for r in spark.table(name).collect()} == {None}
    env.set_groups([f"{local_ctx.settings.catalog}.crypto.jobs"])
    assert {r.id: r.ssn for r in spark.table(name).collect()} == stored
    # The masks stay on when applied again, to more columns; the stored rows are untouched.
    apply_column_masks(spark, local_ctx.settings, ref, ["name"], databricks=False)
    env.set_groups([])
    assert {(r.name, r.ssn) for r in spark.table(name).collect()} == {(None, None)}
    assert read_table_as(spark, local_ctx.settings, ref, ["ssn"], member=True).where(
        "id = 1").first().ssn == "933-73-8723"


def test_non_member_ciphertext_mode_passes_only_cells(local_ctx):
    """Fail closed: a row that was never encrypted is NULL, not its plaintext."""
    from envelope_encryption.spark.sql.deploy import apply_column_masks

    ref = write_encrypted(local_ctx, ROWS)
    spark = local_ctx.spark
    table = local_ctx.lakehouse.table(ref.catalog, "hr", "people")
    cells = {r.id: r.ssn for r in spark.table(table).collect()}
    spark.createDataFrame([(7, "x", "555-55-5555"), (8, "y", cells[1] + "\n")],
                          "id int, name string, ssn string").write.insertInto(table)
    options = SqlOptions(non_member="ciphertext")
    seen = read_table_as(spark, local_ctx.settings, ref, ["ssn"], member=False, options=options)
    assert {r.id: r.ssn for r in seen.collect()} == {**cells, 7: None, 8: None}
    # The same on the table's name (the local mask every reader goes through).
    apply_column_masks(spark, local_ctx.settings, ref, ["ssn"], databricks=False,
                       options=options)
    assert {r.id: r.ssn for r in spark.table(table).collect()} == {**cells, 7: None, 8: None}


def test_sql_encrypt_refuses_text_that_is_not_utf8_and_writes_one_line_cells(local_ctx):
    ref = write_encrypted(local_ctx, ROWS)
    spark = local_ctx.spark
    env = LocalSqlEnvironment(spark, local_ctx.settings, groups=[_member(local_ctx)]).install()
    encrypt = env.encrypt_function("hr")
    # CAST(X'FF' AS STRING) keeps the byte FF in Spark's string: encrypting it would make a
    # cell whose plaintext no reader can decode.
    with pytest.raises(PySparkException, match="not valid UTF-8"):
        spark.sql(f"SELECT {encrypt}(CAST(X'FF' AS STRING), 'people', 'ssn')").collect()
    # base64() chunks long output into 76-character lines; a cell is one canonical line.
    long_text = "Zoë " * 100
    cell = _one(spark, encrypt, long_text)
    assert "\r" not in cell and "\n" not in cell
    back = decrypt_columns(spark.createDataFrame([(cell,)], "ssn string"), ["ssn"],
                           keyring=local_ctx.keyring, table=ref, types={"ssn": "string"})
    assert back.first().ssn == long_text
    assert _one(spark, env.decrypt_function("hr"), cell) == long_text
