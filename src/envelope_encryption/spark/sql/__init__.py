"""The Unity Catalog SQL layer, by role, and the templates and runtime of its functions.

``*.sql`` files are the templates :mod:`.render` fills (pure); :mod:`.target` names what is
deployed; :mod:`.deploy` runs the statements; :mod:`.local_unity_catalog` stands in for what
OSS Spark lacks; :mod:`.runtime` is what the privileged Python functions run, on Databricks
(imported from the wheel named in the function's ENVIRONMENT) and locally (registered as
Spark UDFs). Kept free of imports: the Python functions import :mod:`.runtime` alone.
"""
