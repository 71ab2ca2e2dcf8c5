# Databricks notebook source
# MAGIC %md
# MAGIC # Envelope encryption: user verification
# MAGIC
# MAGIC Run this as an ordinary user, not as a crypto admin. It shows who you are, whether you
# MAGIC are a member of the account group `<catalog>.<schema>.crypto.user`, and what you see in
# MAGIC an encrypted table: members see plaintext through the column masks, everyone else sees
# MAGIC encrypted cells. Non-admins must not be able to read the keyring table.

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
                      "crypto_schema": "crypto", "keyring_table": "keyvault"}.items():
    dbutils.widgets.text(name, default, name)
catalog, schema, table, crypto_schema, keyring_table = (
    validate_identifier(dbutils.widgets.get(n), n)
    for n in ("catalog", "schema", "table", "crypto_schema", "keyring_table")
)
lakehouse = Lakehouse.detect()
group = f"{catalog}.{schema}.crypto.user"

# COMMAND ----------

# Who am I, and am I in the group whose members see plaintext?
display(spark.sql(
    "SELECT current_user() AS user, :group AS crypto_user_group, "
    "is_account_group_member(:group) AS is_member",
    args={"group": group},
))

# COMMAND ----------

# The encrypted table as this user sees it: plaintext for members, encrypted cells otherwise.
display(spark.table(lakehouse.table(catalog, schema, table)).limit(10))

# COMMAND ----------

# The keyring holds wrapped DEKs only, but ordinary users should not see it at all.
try:
    rows = spark.table(lakehouse.table(catalog, crypto_schema, keyring_table)).count()
    print(f"WARNING: this user can read the keyring table ({rows} rows); revoke SELECT on it")
except Exception as error:
    print(f"as expected, the keyring table is not readable: {type(error).__name__}")
