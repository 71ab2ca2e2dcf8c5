"""Fixtures of the SQL-layer tests: a deployment on local Spark with a local KEK."""

from __future__ import annotations

import uuid

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.jobs.common import JobContext
from envelope_encryption.kek.local import LocalKekProvider
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.spark.columns import TableRef, encrypt_columns


@pytest.fixture(autouse=True)
def _drop_group_stand_in():
    """Leave no ``is_account_group_member`` behind for tests that define their own."""
    yield
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.sql("DROP TEMPORARY FUNCTION IF EXISTS is_account_group_member")
        # Nor a local principal's groups, which the masks on table names read.
        from envelope_encryption.spark.sql.local_masks import set_local_groups

        set_local_groups(session, [])


def make_local_context(spark, tmp_path, schemas=("hr",)) -> JobContext:
    catalog = f"s{uuid.uuid4().hex[:8]}"
    settings = Settings(
        backend="local", catalog=catalog, schemas=tuple(schemas),
        options={"local-kek-file": str(tmp_path / "kek.key")},
    )
    lakehouse = Lakehouse(databricks=False)
    store = TableDekStore(spark, catalog, lakehouse=lakehouse)
    store.ensure()
    kek = LocalKekProvider(tmp_path / "kek.key")
    kek.ensure()
    keyring = Keyring(store, kek, "tester")
    for schema in schemas:
        keyring.ensure_active(settings.scope(schema))
    return JobContext(settings, spark, lakehouse, kek, store, keyring)


def write_encrypted(ctx: JobContext, rows, table="people", schema="hr",
                    ddl="id int, name string, ssn string", columns=("name", "ssn"),
                    mode="append") -> TableRef:
    """Encrypt ``rows`` with the scope's active DEK and store them in a local table."""
    spark = ctx.spark
    ref = TableRef(ctx.settings.catalog, schema, table)
    df = spark.createDataFrame(rows, ddl)
    out = encrypt_columns(df, list(columns), keyring=ctx.keyring, table=ref)
    ctx.lakehouse.ensure_schema(spark, ref.catalog, schema, "test data")
    out.write.mode(mode).saveAsTable(
        f"{ctx.lakehouse.schema(ref.catalog, schema)}.`{table}`"
    )
    return ref


@pytest.fixture()
def local_ctx(spark, tmp_path) -> JobContext:
    return make_local_context(spark, tmp_path)
