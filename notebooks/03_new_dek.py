# Databricks notebook source
# MAGIC %md
# MAGIC # Envelope encryption: new DEK
# MAGIC
# MAGIC The interactive version of the `dek_generation` job: a new DEK version for
# MAGIC `<catalog>.<schema>` (the `schema` widget; empty means the first of `schemas`). It becomes
# MAGIC the active version for encryption; cells written with older versions keep decrypting.
# MAGIC For a schema that has no DEK yet, this creates version 1. Run it as a crypto admin.
# MAGIC The `local` back end is refused on Databricks.

# COMMAND ----------

# MAGIC %pip install --quiet ..

# COMMAND ----------

# Installs the package from the bundle's synced source (the notebook's folder is the working
# directory). Skip both cells on a cluster that already has the wheel as a library.
dbutils.library.restartPython()

# COMMAND ----------

from envelope_encryption.jobs import dek_generation
from envelope_encryption.jobs.notebook_widgets import (
    declare_settings_widgets,
    settings_from_widgets,
)
from envelope_encryption.logs import setup_logging

# Before anything touches a key: py4j would print the pickled closures (with the
# DEKs) at DEBUG if this notebook's logging were set to DEBUG.
setup_logging()

names = declare_settings_widgets(dbutils)
dbutils.widgets.text("schema", "", "schema")

# Refuses the local back end on Databricks: its KEK file would not outlive the session.
_, settings = settings_from_widgets(dbutils, dek_generation.build_parser(), names)
print(settings)

# COMMAND ----------

record = dek_generation.run(settings, spark, dbutils.widgets.get("schema"))
print(f"DEK {record.scope} v{record.version} is now active")
