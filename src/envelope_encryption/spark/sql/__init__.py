"""Templates of the Unity Catalog SQL layer and the runtime of its Python functions.

``*.sql`` files are the templates :mod:`envelope_encryption.spark.sql_functions` renders;
:mod:`.runtime` is what the privileged Python functions run, on Databricks (imported from
the wheel named in the function's ENVIRONMENT) and locally (registered as Spark UDFs).
"""
