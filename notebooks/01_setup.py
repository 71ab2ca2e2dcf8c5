# Databricks notebook source
# MAGIC %md
# MAGIC # Envelope encryption: setup
# MAGIC
# MAGIC The interactive version of the `kek_setup` job: ensures the KEK, the crypto schema with
# MAGIC the keyring table, and an active DEK for every schema listed in `schemas`. Idempotent.
# MAGIC Run it as a crypto admin. The widgets carry the bundle's variable names; empty back-end
# MAGIC options take their defaults. With `sql_functions` true it also creates the Unity Catalog
# MAGIC SQL layer (unwrap, decrypt and encrypt functions, grants; see docs/sql-functions.md),
# MAGIC after copying the deployed wheel (`wheel_source`) into the `packages` volume. The
# MAGIC `local` back end is refused on Databricks.

# COMMAND ----------

# MAGIC %pip install --quiet ..

# COMMAND ----------

# Installs the package from the bundle's synced source (the notebook's folder is the working
# directory). Skip both cells on a cluster that already has the wheel as a library.
dbutils.library.restartPython()

# COMMAND ----------

from envelope_encryption.cell.equality import parse_domain_specs
from envelope_encryption.jobs import kek_setup
from envelope_encryption.jobs.notebook_widgets import (
    declare_settings_widgets,
    settings_from_widgets,
)
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.logs import setup_logging

# Before anything touches a key: py4j would print the pickled closures (with the
# DEKs) at DEBUG if this notebook's logging were set to DEBUG.
setup_logging()

names = declare_settings_widgets(dbutils)
# The SQL layer is Unity Catalog's: created by default on Databricks, on request locally.
# On Databricks the notebook's folder is the working directory, so ../dist is the bundle's
# deployed wheel, which kek_setup copies into the packages volume before the functions.
databricks = Lakehouse.detect().databricks
SQL = {"sql_functions": "true" if databricks else "false",
       "sql_non_member": "null", "sql_decrypt": "strict", "sql_udf_wheel": "",
       "wheel_source": "../dist" if databricks else "",
       # Equality domains (docs/equality.md): their keys, and the SQL lookup functions.
       "equality_domains": "", "sql_lookup_group": ""}
for name, default in SQL.items():
    dbutils.widgets.text(name, default, name)

# Refuses the local back end on Databricks: its KEK file would not outlive the session.
args, settings = settings_from_widgets(dbutils, kek_setup.build_parser(), [*names, *SQL])
print(settings)

# COMMAND ----------

sql = kek_setup.sql_options(args)  # None unless sql_functions is true
report = kek_setup.run(settings, spark, sql=sql, wheel_source=args.wheel_source,
                       equality_domains=parse_domain_specs(args.equality_domains))
print(report)
