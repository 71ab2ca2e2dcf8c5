# Databricks notebook source
# MAGIC %md
# MAGIC # Envelope encryption: new DEK
# MAGIC
# MAGIC The interactive version of the `dek_generation` job: a new DEK version for
# MAGIC `<catalog>.<schema>` (the `schema` widget; empty means the first of `schemas`). It becomes
# MAGIC the active version for encryption; cells written with older versions keep decrypting.
# MAGIC For a schema that has no DEK yet, this creates version 1. Run it as a crypto admin.

# COMMAND ----------

# MAGIC %pip install --quiet ..

# COMMAND ----------

# Installs the package from the bundle's synced source (the notebook's folder is the working
# directory). Skip both cells on a cluster that already has the wheel as a library.
dbutils.library.restartPython()

# COMMAND ----------

from envelope_encryption.config import all_option_specs, settings_from_args
from envelope_encryption.jobs import dek_generation

SETTINGS = {"kek_backend": "local", "catalog": "main", "schemas": "default",
            "metastore_id": "local", "crypto_schema": "crypto", "keyring_table": "keyvault",
            "service_credential": ""}
OPTIONS = [spec.name.replace("-", "_") for spec in all_option_specs().values()]
for name, default in SETTINGS.items():
    dbutils.widgets.text(name, default, name)
for name in OPTIONS:
    dbutils.widgets.text(name, "", name)
dbutils.widgets.text("schema", "", "schema")

argv = [f"--{n.replace('_', '-')}={dbutils.widgets.get(n)}" for n in [*SETTINGS, *OPTIONS]]
settings = settings_from_args(dek_generation.build_parser().parse_args(argv))
print(settings)

# COMMAND ----------

record = dek_generation.run(settings, spark, dbutils.widgets.get("schema"))
print(f"DEK {record.scope} v{record.version} is now active")
