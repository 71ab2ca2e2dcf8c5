"""Before a job creates anything: the original notebooks' objects, and an old-named keyring.

``kek_setup`` and ``import_legacy`` call :func:`check_catalog` before they touch a key or a
table. It stops, with a message naming what to run, when

* the configured keyring table is the default (``dek_keyring``), does not exist, and a
  keyring of this project's layout exists under the previous default name ``keyvault``: a
  deployment of an earlier release, which keeps its table with ``--keyring-table keyvault``
  (the keyring's integrity key is bound to the table's name, so the table is not renamed);
* the original notebooks' key table (``<catalog>.crypto.keyvault``, their columns) or their
  functions are present, and the keyring holds no imported legacy DEK yet: run
  ``import_legacy`` first (docs/migration.md);
* their objects are present and the configured KEK is the default name, which is their key;
* the configured keyring table *is* their table.

It only reads (table schemas, the function list, the keyring's records): it never writes
into, or drops, anything of theirs. :func:`preflight_check` is the same look from outside,
through the Databricks SDK.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..config import DEFAULT_KEYRING_TABLE, PREVIOUS_KEYRING_TABLE, Settings
from ..errors import ConfigError, KeyringError
from ..keyring.base import LEGACY_KEY_TYPE, DekStore
from ..lakehouse import Lakehouse
from ..legacy.layout import (
    NOTEBOOK_FUNCTIONS,
    NOTEBOOK_SCHEMA,
    NOTEBOOK_TABLE,
    OURS,
    NotebookObjects,
    default_kek_is_theirs,
    table_kind,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from .preflight_grants import CheckResult

log = logging.getLogger(__name__)

# A function name the notebooks' Azure variant used and this project uses too.
SHARED_NAME = "unwrap_key"


def table_columns(spark: SparkSession, lakehouse: Lakehouse, catalog: str, schema: str,
                  table: str) -> list[str] | None:
    """The columns of a table (its schema only, no row read), or None when it is absent."""
    if not lakehouse.table_exists(spark, catalog, schema, table):
        return None
    return spark.table(lakehouse.table(catalog, schema, table)).columns


def schema_functions(spark: SparkSession, lakehouse: Lakehouse, catalog: str,
                     schema: str) -> set[str]:
    """Names of the user functions of a schema (empty when the schema does not exist)."""
    from pyspark.errors import AnalysisException

    try:
        rows = spark.sql(f"SHOW USER FUNCTIONS IN {lakehouse.schema(catalog, schema)}").collect()
    except AnalysisException:
        return set()
    return {row[0].rsplit(".", 1)[-1].strip("`").lower() for row in rows}


def find_notebook_objects(spark: SparkSession, lakehouse: Lakehouse,
                          catalog: str) -> NotebookObjects:
    """The notebooks' key table and functions in ``<catalog>.crypto``, if any."""
    found = NotebookObjects(catalog)
    columns = table_columns(spark, lakehouse, catalog, NOTEBOOK_SCHEMA, NOTEBOOK_TABLE)
    kind = table_kind(columns) if columns is not None else None
    if kind not in (None, OURS):
        found.table, found.kind = f"{catalog}.{NOTEBOOK_SCHEMA}.{NOTEBOOK_TABLE}", kind
    present = schema_functions(spark, lakehouse, catalog, NOTEBOOK_SCHEMA)
    found.functions = [name for name in NOTEBOOK_FUNCTIONS if name in present]
    return found


def has_imported_legacy(store: DekStore) -> bool:
    """Whether the keyring holds any DEK imported from the notebooks (records read, not
    unwrapped). False when there is no keyring yet (an aws-sm DEK secret not created)."""
    try:
        return any(r.key_type == LEGACY_KEY_TYPE for r in store.current())
    except KeyringError:
        return False


def check_keyring_name(spark: SparkSession, lakehouse: Lakehouse, settings: Settings) -> None:
    """Stop a deployment of an earlier release from starting a new, empty keyring."""
    s = settings
    if s.backend == "aws-sm" or s.keyring_table != DEFAULT_KEYRING_TABLE:
        return
    if lakehouse.table_exists(spark, s.catalog, s.crypto_schema, s.keyring_table):
        return
    columns = table_columns(spark, lakehouse, s.catalog, s.crypto_schema, PREVIOUS_KEYRING_TABLE)
    if columns is not None and table_kind(columns) == OURS:
        old = f"{s.catalog}.{s.crypto_schema}.{PREVIOUS_KEYRING_TABLE}"
        raise ConfigError(
            f"this deployment's keyring is {old} (the default name of earlier releases), and "
            f"the default is now {DEFAULT_KEYRING_TABLE}: keep it with --keyring-table="
            f"{PREVIOUS_KEYRING_TABLE} (bundle variable keyring_table: "
            f"{PREVIOUS_KEYRING_TABLE}) on every job. Do not rename the table: its integrity "
            "key is bound to its name (docs/migration.md, \"Upgrading this project\")"
        )


def refuse_adopting(found: NotebookObjects, settings: Settings) -> None:
    """Refuse a configuration whose keyring table or (default) KEK is the notebooks' own."""
    s = settings
    if found.table and (s.crypto_schema, s.keyring_table) == (NOTEBOOK_SCHEMA, NOTEBOOK_TABLE):
        raise ConfigError(
            f"the keyring table {found.table} is the original notebooks' key table: use this "
            f"project's default --keyring-table={DEFAULT_KEYRING_TABLE}; their table is only "
            f"read, by {found.import_command()}"
        )
    why = default_kek_is_theirs(s)
    if why:
        raise ConfigError(f"found {found.describe()}; {why}. Nothing was changed")


def check_catalog(spark: SparkSession, lakehouse: Lakehouse, settings: Settings,
                  store: DekStore, *, sql: bool = False) -> NotebookObjects:
    """Refuse to go on where the notebooks' objects (or an old-named keyring) would be
    touched; see the module docstring. ``sql``: the SQL functions are to be deployed too,
    which would replace a function of theirs named like ours (their Azure ``unwrap_key``).
    Returns what was found of the notebooks'."""
    check_keyring_name(spark, lakehouse, settings)
    if settings.backend == "local":
        return NotebookObjects(settings.catalog)
    found = find_notebook_objects(spark, lakehouse, settings.catalog)
    if not found.found:
        return found
    refuse_adopting(found, settings)
    s = settings
    ours = lakehouse.table_exists(spark, s.catalog, s.crypto_schema, s.keyring_table) \
        if s.backend != "aws-sm" else True
    if not (ours and has_imported_legacy(store)):
        raise ConfigError(
            f"found {found.describe()} of the original envelope-encryption notebooks, and "
            f"nothing imported from them yet: run {found.import_command()} first, so their "
            "DEKs become legacy versions of this keyring. Nothing was changed"
        )
    if sql and s.crypto_schema == NOTEBOOK_SCHEMA and SHARED_NAME in schema_functions(
            spark, lakehouse, s.catalog, NOTEBOOK_SCHEMA):
        raise ConfigError(
            f"{s.catalog}.{NOTEBOOK_SCHEMA}.{SHARED_NAME} exists beside {found.describe()}: "
            "deploying this project's functions there would replace theirs, which their "
            "decrypt still calls. Deploy ours in a schema of their own (--crypto-schema, "
            "bundle variable crypto_schema, e.g. envelope) or drop theirs first "
            "(docs/migration.md)"
        )
    log.info("the original notebooks' objects stay as they are (%s); their DEKs were "
             "imported", found.describe())
    return found


def preflight_check(client: Any, settings: Settings, before: bool) -> CheckResult:
    """The notebooks' objects as the Databricks SDK sees them (functions and key table)."""
    from databricks.sdk.errors import DatabricksError

    from .preflight_grants import CheckResult, Status

    schema = f"{settings.catalog}.{NOTEBOOK_SCHEMA}"
    try:
        client.schemas.get(schema)
    except DatabricksError:  # no crypto schema: nothing of theirs (nor ours) to look at
        return CheckResult("original notebooks", schema, Status.OK, "no such schema")
    present = []
    # Their Secrets Manager variant had no key table (and aws-sm keeps no keyring table).
    ours = (settings.crypto_schema, settings.keyring_table) == (NOTEBOOK_SCHEMA, NOTEBOOK_TABLE)
    names = [] if ours or settings.backend == "aws-sm" else [
        ("table", NOTEBOOK_TABLE, client.tables.get)]
    names += [("function", name, client.functions.get) for name in NOTEBOOK_FUNCTIONS]
    for what, name, get in names:
        try:
            info = get(f"{schema}.{name}")
        except DatabricksError:  # absent, or not visible to this principal
            continue
        columns = [c.name for c in (getattr(info, "columns", None) or [])]
        if what == "table" and table_kind(columns) in (None, OURS):
            continue  # a keyring of this project (an earlier release's name), or unrelated
        present.append(f"{schema}.{name}")
    if not present:
        return CheckResult("original notebooks", schema, Status.OK, "none of their objects")
    found = ", ".join(present)
    if before:
        return CheckResult(
            "original notebooks", schema, Status.PROBLEM, f"their objects exist: {found}",
            "run import_legacy first and give this project a KEK name of its own "
            "(docs/migration.md); their objects are never changed")
    return CheckResult("original notebooks", schema, Status.OK,
                       f"their objects exist beside ours (migration in progress, "
                       f"docs/migration.md): {found}")
