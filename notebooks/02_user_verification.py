# Databricks notebook source
# MAGIC %md
# MAGIC # Envelope encryption: user verification
# MAGIC
# MAGIC Run this as an ordinary user, not as a crypto admin. It shows who you are, whether you
# MAGIC are a member of the account group `<catalog>.<schema>.crypto.user`, and what you see in
# MAGIC an encrypted table: members see plaintext through the column masks, members of the job
# MAGIC group `<catalog>.crypto.jobs` see the cells, everyone else sees no plaintext (NULL by
# MAGIC default). It checks every masked column of the table (read from Unity Catalog), not a
# MAGIC list you type. Non-admins must not be able to read the keyring table.

# COMMAND ----------

# MAGIC %pip install --quiet ..

# COMMAND ----------

# Installs the package from the bundle's synced source (the notebook's folder is the working
# directory). Skip both cells on a cluster that already has the wheel as a library.
dbutils.library.restartPython()

# COMMAND ----------

from envelope_encryption.identifiers import validate_identifier
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.logs import setup_logging

# Before anything touches a key: py4j would print the pickled closures (with the
# DEKs) at DEBUG if this notebook's logging were set to DEBUG.
setup_logging()

for name, default in {"catalog": "main", "schema": "default", "table": "customers",
                      "crypto_schema": "crypto", "keyring_table": "dek_keyring",
                      "columns": "", "local_sql": "false",
                      "kek_backend": "local", "local_kek_file": ""}.items():
    dbutils.widgets.text(name, default, name)
catalog, schema, table, crypto_schema, keyring_table = (
    validate_identifier(dbutils.widgets.get(n), n)
    for n in ("catalog", "schema", "table", "crypto_schema", "keyring_table")
)
lakehouse = Lakehouse.detect()
group = f"{catalog}.{schema}.crypto.user"
# Optional: columns that must be masked besides those Unity Catalog reports (empty: none).
expected_masked = [validate_identifier(c.strip(), "column")
                   for c in dbutils.widgets.get("columns").split(",") if c.strip()]

# COMMAND ----------

from envelope_encryption.config import Settings

local_env = None
if not lakehouse.databricks and dbutils.widgets.get("local_sql") == "true":
    # Local runs only, on request. OSS Spark has no is_account_group_member and no column
    # masks: the stand-ins answer from ENVELOPE_LOCAL_GROUPS and apply the same decrypt SQL
    # as a view (see docs/sql-functions.md). On Databricks nothing here runs.
    from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment

    kek_file = dbutils.widgets.get("local_kek_file")
    local_env = LocalSqlEnvironment(spark, Settings(
        backend=dbutils.widgets.get("kek_backend"), catalog=catalog, schemas=(schema,),
        crypto_schema=crypto_schema, keyring_table=keyring_table,
        options={"local-kek-file": kek_file} if kek_file else {},
    )).install()

# COMMAND ----------

# Who am I, and am I in the group whose members see plaintext, or in the job group whose
# members see the cells?
from envelope_encryption.spark.sql_functions import SqlOptions

job_group = SqlOptions().job_group_name(catalog, schema)
display(spark.sql(
    "SELECT current_user() AS user, :group AS crypto_user_group, "
    "is_account_group_member(:group) AS is_member, :jobs AS job_group, "
    "is_account_group_member(:jobs) AS is_job_group_member",
    args={"group": group, "jobs": job_group},
))

# COMMAND ----------

# Every masked column of the table: from information_schema.column_masks on Databricks, from
# the local masking view locally. The checks below cover all of them.
from envelope_encryption.spark.cells_guard import masked_columns
from envelope_encryption.spark.columns import TableRef

masks = masked_columns(spark, lakehouse, TableRef(catalog, schema, table))
assert masks is not None, (
    f"cannot read {catalog}.information_schema.column_masks: no way to list the masked columns")
unmasked = sorted(set(expected_masked) - set(masks))
assert not unmasked, f"NOT MASKED: {', '.join(unmasked)} of {table} (everyone reads them raw)"
columns = sorted(masks)
if lakehouse.databricks or local_env is not None:  # the checks below need masks to check
    assert columns, (f"{catalog}.{schema}.{table} has no column masks: apply them "
                     "(encrypt_columns --mask=true)")
print(f"masked columns of {catalog}.{schema}.{table}: {', '.join(columns) or 'none'}")

# COMMAND ----------

# The encrypted table as this user sees it: plaintext for members, no plaintext otherwise.
from envelope_encryption.identifiers import quote

readable = lakehouse.table(catalog, schema, table)
if local_env is not None:
    # Local runs: the full decrypt SQL over the stored rows (the masking view under the
    # table's name has no key, so local member reads go through this view).
    readable = quote(local_env.masked_view(TableRef(catalog, schema, table), columns))
display(spark.table(readable).limit(10))

# COMMAND ----------

# The keyring holds wrapped DEKs only, but ordinary users should not see it at all.
try:
    rows = spark.table(lakehouse.table(catalog, crypto_schema, keyring_table)).count()
    print(f"WARNING: this user can read the keyring table ({rows} rows); revoke SELECT on it")
except Exception as error:
    print(f"as expected, the keyring table is not readable: {type(error).__name__}")

# COMMAND ----------

# The crypto schema's functions are not for ordinary users: the unwrap function must not run
# for them, and they need no privilege on the decrypt functions (the masks run those).
from envelope_encryption.spark.sql_functions import SqlTarget

sql = SqlTarget(Settings(catalog=catalog, schemas=(schema,), crypto_schema=crypto_schema,
                         keyring_table=keyring_table), databricks=lakehouse.databricks)
unwrap = sql.function("unwrap_key")
try:
    # No records: the function returns at once if this user may execute it at all.
    spark.sql(f"SELECT {unwrap}(:scope, CAST(array() AS ARRAY<STRING>), NULL) AS k",
              args={"scope": f"{catalog}.{schema}"}).collect()
    print(f"WARNING: this user ran {unwrap}; revoke EXECUTE on it from everyone but its owner")
except Exception as error:
    print(f"as expected, {unwrap} is not usable: {type(error).__name__}")
decrypt = sql.function(sql.decrypt_name(schema))
try:
    spark.sql(f"DESCRIBE FUNCTION {decrypt}").collect()
    print(f"note: this user can see {decrypt} (harmless: it returns plaintext to members only)")
except Exception as error:
    print(f"as expected, {decrypt} is not visible: {type(error).__name__}")

# COMMAND ----------

# The decisive check, column by column over every masked column: plaintext exactly when
# this user is a member (and not in the job group, which reads the cells).
from envelope_encryption.cell import CELL_PREFIX
from envelope_encryption.spark.sql_functions import REDACTION

if not lakehouse.databricks and local_env is None:
    print("local run without the SQL stand-ins (local_sql=false): no masks to check")
else:
    member, in_job_group = spark.sql(
        "SELECT is_account_group_member(:group) AS m, is_account_group_member(:jobs) AS j",
        args={"group": group, "jobs": job_group}).first()
    sample = spark.table(readable).select(*columns).limit(100).collect()
    totals = {"plaintext": 0, "cells": 0, "values": 0}
    for column in columns:
        values = [str(row[column]) for row in sample if row[column] is not None]
        plaintext = [v for v in values if not v.startswith(CELL_PREFIX) and v != REDACTION]
        cells = [v for v in values if v.startswith(CELL_PREFIX)]
        if in_job_group:
            assert not plaintext, f"a job-group member sees plaintext in {column}: wrong mask"
        elif member:
            assert values and not cells, (
                f"a member sees no plaintext in {column}: check its mask and the keyring")
        else:
            assert not plaintext, (
                f"a NON-MEMBER SEES PLAINTEXT in {column}: its mask is missing or wrong")
        totals["plaintext"] += len(plaintext)
        totals["cells"] += len(cells)
        totals["values"] += len(values)
    verdict = (f"in {job_group} (reads cells)" if in_job_group
               else f"member of {group}" if member else f"not a member of {group}")
    print(f"{verdict}: {totals['plaintext']} plaintext value(s), {totals['cells']} "
          f"cell(s) in {totals['values']} sampled value(s) of {', '.join(columns)}, every "
          "masked column: as it should be")
