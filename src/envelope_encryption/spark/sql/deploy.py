"""Deploy the Unity Catalog SQL layer: run the rendered statements through a Spark session.

The caller says where the session runs (``databricks=``; jobs pass their lakehouse's
answer). On Databricks the statements of :mod:`.render` run as they are; on local Spark the
same decrypt/encrypt SQL is installed as temporary functions over the stand-ins of
:mod:`.local_unity_catalog`, which is what local runs and tests can do without Unity Catalog.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...config import Settings
from ...errors import ConfigError
from ..columns import TableRef
from .deployed_objects import FUNCTION, deployed_objects
from .equality_sql import lookup_functions
from .local_masks import apply_local_masks
from .local_unity_catalog import LocalSqlEnvironment
from .render import render_deployment, render_mask
from .subject_mask import decrypt_subject_name
from .target import SqlOptions, SqlTarget

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@dataclass
class SqlDeployReport:
    """What :func:`deploy_sql_layer` did: statements run and the functions now in place."""

    statements: int
    functions: list[str]
    local: bool

    def __str__(self) -> str:
        where = "locally (temporary functions)" if self.local else "in Unity Catalog"
        return f"SQL functions {', '.join(self.functions)} deployed {where}"


def deploy_sql_layer(spark: SparkSession, settings: Settings, options: SqlOptions | None = None,
                     *, databricks: bool) -> SqlDeployReport:
    """Create or replace the SQL layer (kek_setup ``--sql-functions=true``).

    On Databricks every statement of :func:`.render.render_deployment` runs in order.
    Elsewhere the same decrypt/encrypt SQL is installed as temporary functions.
    """
    options = options or SqlOptions()
    target = SqlTarget.of(settings, options, databricks=databricks)
    names = [target.decrypt_name(s) for s in settings.schemas]
    names += [target.encrypt_name(s) for s in settings.schemas]
    names += [name for _, _, name in lookup_functions(target, options)]
    if not databricks:
        LocalSqlEnvironment(spark, settings, options).install()
        log.info("SQL functions installed as temporary functions (local run)")
        return SqlDeployReport(0, names, local=True)
    statements = render_deployment(settings, options)
    for statement in statements:
        spark.sql(statement)
    log.info("deployed %d SQL statement(s) in %s.%s", len(statements), settings.catalog,
             settings.crypto_schema)
    return SqlDeployReport(len(statements), [o.name for o in deployed_objects(target, options)
                                             if o.kind == FUNCTION], local=False)


def apply_column_masks(spark: SparkSession, settings: Settings, ref: TableRef,
                       columns: Sequence[str], *, databricks: bool,
                       options: SqlOptions | None = None,
                       subject_column: str = "") -> list[str]:
    """Put the decrypt mask of the table's schema on every encrypted column.

    On Databricks the decrypt function must exist (kek_setup ``--sql-functions=true``; its
    options were chosen then). Locally the masks apply to every reader of the table's name,
    as in Unity Catalog: a persistent view over the stored rows (see :mod:`.local_masks`),
    made with ``options``. Returns the statements run (or the view's name).

    ``subject_column``: the columns are subject-keyed (``encrypt_columns --subject-column``):
    the mask is ``decrypt_subject_<schema>``, given that column too (``USING COLUMNS``).
    Locally the view's key-less paths are the same for both masks.
    """
    target = SqlTarget.of(settings, options or SqlOptions(), databricks=databricks)
    if ref.schema not in settings.schemas:
        raise ConfigError(
            f"schema {ref.schema} has no decrypt function: add it to --schemas and run kek_setup "
            "with --sql-functions=true"
        )
    if not databricks:
        view = apply_local_masks(spark, settings, ref, columns, options)
        log.info("local run: column masks applied to every reader of %s", view)
        return [view]
    name = (decrypt_subject_name(ref.schema) if subject_column
            else target.decrypt_name(ref.schema))
    function = f"{target.functions_catalog}.{settings.crypto_schema}.{name}"
    if not spark.catalog.functionExists(function):
        raise ConfigError(
            f"function {function} does not exist: run kek_setup with --sql-functions=true "
            "before masking columns"
        )
    statements = [render_mask(target, ref, column, subject_column) for column in columns]
    for statement in statements:
        spark.sql(statement)
    log.info("masked %s on %s.%s.%s", ", ".join(columns), ref.catalog, ref.schema, ref.table)
    return statements
