"""The Unity Catalog SQL layer: functions, column masks and grants, rendered per back end.

This module is the layer's public face; the work is done by role in :mod:`.sql`:
:mod:`.sql.target` (options and names), :mod:`.sql.render` (pure: settings in, SQL out),
:mod:`.sql.deploy` (runs the statements through a Spark session) and
:mod:`.sql.local_unity_catalog` (the stand-ins that run the same SQL on OSS Spark). The
golden files under ``tests/spark/sql/golden`` name :func:`render_script` by its path here.

What is deployed in ``<catalog>.<crypto schema>``, or ``<crypto catalog>.<crypto schema>``
with ``SqlOptions.crypto_catalog`` (see docs/sql-functions.md):

- ``unwrap_key(key_alias, records, keyring_integrity) -> ARRAY<BINARY>``: a batch Python
  UDF using the target's service credential, called once per query on the collected
  records of one of the deployment's scopes (every column their integrity tag covers) and
  the keyring's newest integrity record. Its handler calls
  :mod:`envelope_encryption.spark.sql.runtime` from the project's wheel, which verifies each
  record as the jobs' keyring does and unwraps with the same provider code; a record the
  keyring does not vouch for is refused. Nobody but its owner may execute it.
- ``dek_records(key_alias) -> STRING`` (``aws-sm`` only, where the keyring is a secret): the
  scope's current wrapped DEK records as JSON.
- ``decrypt_<schema>(value, table_name, column_name) -> STRING`` per configured schema: the
  column mask. One scalar subquery per query yields ``{job, member, keys: map<version,
  key>, legacy_versions}``: members of the job group (``<catalog>.crypto.jobs``) get the cell
  unchanged; membership of ``<catalog>.<schema>.crypto.user`` is checked next and the keys
  of the scope's enabled versions are unwrapped only for members, once per query per
  version. Each cell names its version; the native ``aes_decrypt`` checks the header and
  the place (``catalog.schema.table.column``) as associated data.
- ``encrypt_<schema>(value, table_name, column_name) -> STRING``: a cell of the active
  version (type tag ``string``).
"""

from __future__ import annotations

from .sql.deploy import SqlDeployReport, apply_column_masks, deploy_sql_layer
from .sql.render import (
    default_udf_wheel,
    render_decrypt_function,
    render_deployment,
    render_encrypt_function,
    render_grants,
    render_mask,
    render_script,
    render_unwrap_function,
)
from .sql.target import (
    DECRYPT_MODES,
    DEK_RECORDS_FUNCTION,
    NON_MEMBER_MODES,
    OPEN_CELL_FUNCTION,
    PACKAGES_VOLUME,
    REDACTION,
    SEAL_CELL_FUNCTION,
    UNWRAP_FUNCTION,
    SqlOptions,
    SqlTarget,
)

__all__ = [
    "DECRYPT_MODES",
    "DEK_RECORDS_FUNCTION",
    "NON_MEMBER_MODES",
    "OPEN_CELL_FUNCTION",
    "PACKAGES_VOLUME",
    "REDACTION",
    "SEAL_CELL_FUNCTION",
    "UNWRAP_FUNCTION",
    "SqlDeployReport",
    "SqlOptions",
    "SqlTarget",
    "apply_column_masks",
    "default_udf_wheel",
    "deploy_sql_layer",
    "render_decrypt_function",
    "render_deployment",
    "render_encrypt_function",
    "render_grants",
    "render_mask",
    "render_script",
    "render_unwrap_function",
]
