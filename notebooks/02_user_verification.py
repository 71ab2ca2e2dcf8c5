# Databricks notebook source
# MAGIC %md
# MAGIC # Envelope encryption: user verification
# MAGIC
# MAGIC Run this as an ordinary user, not as a crypto admin. It shows who you are, whether you
# MAGIC are a member of the account group `<catalog>.<schema>.crypto.user`, and what you see in
# MAGIC an encrypted table: members see plaintext through the column masks, everyone else sees
# MAGIC no plaintext (NULL by default). Non-admins must not be able to read the keyring table.

# COMMAND ----------

# MAGIC %pip install --quiet ..

# COMMAND ----------

# Installs the package from the bundle's synced source (the notebook's folder is the working
# directory). Skip both cells on a cluster that already has the wheel as a library.
dbutils.library.restartPython()

# COMMAND ----------

from envelope_encryption.identifiers import validate_identifier
from envelope_encryption.lakehouse import Lakehouse

for name, default in {"catalog": "main", "schema": "default", "table": "customers",
                      "crypto_schema": "crypto", "keyring_table": "keyvault",
                      "columns": "name,email,ssn", "local_sql": "false",
                      "kek_backend": "local", "local_kek_file": ""}.items():
    dbutils.widgets.text(name, default, name)
catalog, schema, table, crypto_schema, keyring_table = (
    validate_identifier(dbutils.widgets.get(n), n)
    for n in ("catalog", "schema", "table", "crypto_schema", "keyring_table")
)
lakehouse = Lakehouse.detect()
group = f"{catalog}.{schema}.crypto.user"
columns = [validate_identifier(c.strip(), "column")
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

# Who am I, and am I in the group whose members see plaintext?
display(spark.sql(
    "SELECT current_user() AS user, :group AS crypto_user_group, "
    "is_account_group_member(:group) AS is_member",
    args={"group": group},
))

# COMMAND ----------

# The encrypted table as this user sees it: plaintext for members, no plaintext otherwise.
from envelope_encryption.identifiers import quote
from envelope_encryption.spark.columns import TableRef

readable = lakehouse.table(catalog, schema, table)
if local_env is not None:  # local runs: the masks as a view over the same decrypt SQL
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
    spark.sql(f"SELECT {unwrap}(X'00', :scope, 1, 'kek', '') AS k",
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

# The decisive check: the masked columns show plaintext exactly when this user is a member.
from envelope_encryption.cell import CELL_PREFIX
from envelope_encryption.spark.sql_functions import REDACTION

if not lakehouse.databricks and local_env is None:
    print("local run without the SQL stand-ins (local_sql=false): no masks to check")
else:
    member = spark.sql("SELECT is_account_group_member(:group) AS m",
                       args={"group": group}).first().m
    values = [v for row in spark.table(readable).select(*columns).limit(100).collect()
              for v in row if v is not None]
    plaintext = [v for v in values if not v.startswith(CELL_PREFIX) and v != REDACTION]
    cells = [v for v in values if v.startswith(CELL_PREFIX)]
    if member:
        assert values and not cells, "a member sees encrypted cells: check masks and keyring"
    else:
        assert not plaintext, "a NON-MEMBER SEES PLAINTEXT: the masks are missing or wrong"
    print(f"{'member' if member else 'not a member'} of {group}: {len(plaintext)} plaintext "
          f"value(s), {len(cells)} cell(s) in {len(values)} sampled value(s) of "
          f"{', '.join(columns)}: as it should be")
