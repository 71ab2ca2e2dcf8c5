"""The column masks of subject-keyed columns (erasure scopes): SQL, local stand-ins, masks.

``decrypt_subject_<schema>(value, table_name, column_name, subject)`` is the mask of a
column whose cells are keyed by a data subject (``encrypt_columns --subject-column``), put
on with ``SET MASK ... USING COLUMNS ('<table>', '<column>', <subject column>)``. It reads
like ``decrypt_<schema>``: members of the scope's reader group read plaintext, members of
the job group the cells, everyone else the non-member mode; an erased subject's cells read
NULL (lenient) or fail with the error naming erasure (strict). How it runs:

- ``open_subject_cell(value, place, k, subject)``: the order of ``open_cell`` (NULL, job
  group, non-members), then ``decrypt_subject_cells(value, place, k.keyring, <lookup>,
  <strict>)``, which answers the plaintext, or NULL / the error itself (the lookup must
  appear once: each copy of it would be one more join);
- ``<lookup>`` (``subject_subquery.sql``): a scalar subquery on ``dek_subjects`` correlated
  on the row's subject through ``subject_hash(subject, k.keyring)``, which Spark runs as a
  left outer join on the hash (checked on OSS Spark; Databricks documents lookups in
  mapping tables from masks and row filters). It gives the subject's hash and salt packed
  in one BINARY (the hash alone once erased, NULL when unknown or for a non-reader);
- ``subject_hash`` and ``decrypt_subject_cells`` are batch Python functions
  (:mod:`.subject_cells`), privileged like ``decrypt_cells``: only their owner executes them.

Key-service calls stay DEK versions (plus the integrity key) per worker, whatever the
number of subjects; no key enters a plan. Salts are values of the query's join (like the
keyring records): see docs/threat-model.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ... import __version__
from ...config import Settings
from ...errors import ConfigError
from ...identifiers import quote, validate_identifier
from ...keyring.subjects import COLUMNS as SUBJECT_COLUMNS
from ...keyring.subjects import SUBJECT_TABLE, SubjectStore
from ..columns import TableRef
from .cell_shape import non_member_sql
from .function_sql import literal_text, sql_function
from .keyring_sql import indent, keys_subquery, render_template, template
from .target import SqlOptions, SqlTarget

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class LocalFunctions(Protocol):
    """What :func:`install_local` uses of a ``LocalSqlEnvironment`` (which calls it)."""

    spark: SparkSession
    settings: Settings
    options: SqlOptions
    target: SqlTarget
    _keyring_uses: Any
    _kek_unwraps: Any

SUBJECT_HASH_FUNCTION = "subject_hash"
DECRYPT_SUBJECT_CELLS_FUNCTION = "decrypt_subject_cells"
OPEN_SUBJECT_CELL_FUNCTION = "open_subject_cell"
# The functions only their owner executes (revoked from account users).
PRIVATE_FUNCTIONS = (SUBJECT_HASH_FUNCTION, DECRYPT_SUBJECT_CELLS_FUNCTION,
                     OPEN_SUBJECT_CELL_FUNCTION)


def decrypt_subject_name(schema: str) -> str:
    return f"decrypt_subject_{validate_identifier(schema, 'schema')}"


def render_open_subject_cell_function(target: SqlTarget, options: SqlOptions) -> str:
    """``open_subject_cell(value, place, k, subject)``: one subject-keyed cell, given ``k``."""
    non_member, others = non_member_sql(options)
    lookup = render_template(template("subject_subquery.sql"), {
        "subjects": target.lakehouse.table(target.settings.catalog,
                                           target.settings.crypto_schema, SUBJECT_TABLE),
        "subject_hash": target.function(SUBJECT_HASH_FUNCTION),
    })
    comment = (
        f"Decrypts one subject-keyed cell from a decrypt_subject_<schema> mask: the cell "
        f"unchanged for the job group, plaintext for members, {others} for everyone else "
        f"({options.decrypt} decryption: an erased subject reads as "
        f"{'an error' if options.decrypt == 'strict' else 'NULL'}). Not for direct use. "
        f"Managed by envelope-encryption {__version__}."
    )
    return sql_function(target, "open_subject_cell.sql", OPEN_SUBJECT_CELL_FUNCTION,
                        comment, {
                            "non_member": non_member,
                            "decrypt": target.function(DECRYPT_SUBJECT_CELLS_FUNCTION),
                            "lookup": indent(lookup, 4),
                            "strict": "TRUE" if options.decrypt == "strict" else "FALSE",
                        })


def render_decrypt_subject_function(target: SqlTarget, schema: str,
                                    options: SqlOptions) -> str:
    """``decrypt_subject_<schema>(value, table_name, column_name, subject)``: the mask."""
    settings = target.settings
    scope = settings.scope(validate_identifier(schema, "schema"))
    group = options.group(options.reader_group, settings.catalog, schema)
    comment = (
        f"Column mask of subject-keyed columns of {scope}: plaintext for members of {group} "
        f"only, NULL or an error for erased subjects. Use: ALTER TABLE t ALTER COLUMN c SET "
        f"MASK ... USING COLUMNS (<table>, <column>, <subject column>). Managed by "
        f"envelope-encryption {__version__}."
    )
    return sql_function(target, "subject_function.sql",
                        decrypt_subject_name(schema), comment, {
                            "open_function": target.function(OPEN_SUBJECT_CELL_FUNCTION),
                            "scope": scope,
                            "keys": indent(keys_subquery(target, schema, options,
                                                         with_domains=False), 2),
                        })


# render._python_function: a batch Python function of the deployment (passed in, since
# render.py composes the deployment from this module).
PythonFunction = Callable[..., str]


def render_python_functions(target: SqlTarget, options: SqlOptions,
                            python_function: PythonFunction) -> list[str]:
    """The two batch Python functions (Databricks only)."""
    s = target.settings
    scopes = f"catalog {s.catalog} ({', '.join(s.schemas)})"
    return [
        python_function(
            target, options, SUBJECT_HASH_FUNCTION, "subject STRING, keyring STRING",
            "STRING", "subject_hash_batches",
            f"Hashes data subject ids of the scopes of {scopes} with the subject-id key "
            "derived from the verified keyring integrity key. Privileged: only its owner "
            f"executes it. Managed by envelope-encryption {__version__}.",
            module="subject_cells"),
        python_function(
            target, options, DECRYPT_SUBJECT_CELLS_FUNCTION,
            "value STRING, place STRING, keyring STRING, subject BINARY, strict BOOLEAN",
            "STRING",
            "decrypt_subject_cells_batches",
            f"Opens subject-keyed cells of the scopes of {scopes} with keys derived from the "
            f"DEKs of verified keyring records (unwrapped inside with the {s.backend} KEK) "
            "and the salts of the subjects; NULL or an error (strict) for a cell that does not "
            "open. Privileged: only its "
            f"owner executes it. Managed by envelope-encryption {__version__}.",
            module="subject_cells"),
    ]


def render_subject_table(target: SqlTarget) -> str:
    """``CREATE TABLE IF NOT EXISTS`` of ``dek_subjects``, which ``open_subject_cell`` reads
    (a SQL function's body is resolved when it is created, so the table must exist)."""
    s = target.settings
    table = target.lakehouse.table(s.catalog, s.crypto_schema, SUBJECT_TABLE)
    comment = literal_text(SubjectStore.COMMENT, "comment")
    return (f"CREATE TABLE IF NOT EXISTS {table} ({' '.join(SUBJECT_COLUMNS.split())}) "
            f"COMMENT '{comment}'")


def render_subject_deployment(target: SqlTarget, options: SqlOptions,
                              python_function: PythonFunction) -> list[str]:
    """The Databricks statements of the subject masks (after the scope masks')."""
    statements = [render_subject_table(target)]
    statements += render_python_functions(target, options, python_function)
    statements.append(render_open_subject_cell_function(target, options))
    statements += [render_decrypt_subject_function(target, schema, options)
                   for schema in target.settings.schemas]
    return statements


# -- local Spark ------------------------------------------------------------------------------


def install_local(env: LocalFunctions) -> None:
    """Register the batch functions as Arrow UDFs running the same handlers (calls and
    key-service unwraps counted with the scope masks'), then the rendered SQL functions."""
    from pyspark.sql.functions import arrow_udf
    from pyspark.sql.pandas.functions import ArrowUDFType
    from pyspark.sql.types import StringType

    from . import runtime

    payload = runtime.settings_payload(env.settings)
    uses, unwraps = env._keyring_uses, env._kek_unwraps

    def subject_hash(batches: Iterator[Any]) -> Iterator[Any]:
        from envelope_encryption.spark.sql.subject_cells import subject_hash_batches

        yield from subject_hash_batches(batches, payload)

    def decrypt_subject_cells(batches: Iterator[Any]) -> Iterator[Any]:
        import os

        from envelope_encryption.spark.sql.subject_cells import decrypt_subject_cells_batches

        def counted() -> Iterator[Any]:
            for batch in batches:
                uses.add(int(batch[2].null_count < len(batch[2])))  # any keyring
                yield batch

        def unwrapped(version: int) -> None:
            unwraps.add([(os.getpid(), version)])

        yield from decrypt_subject_cells_batches(counted(), payload, unwrapped)

    import warnings

    with warnings.catch_warnings():
        # Arrow UDF types rather than type hints, as the scope masks' stand-ins do.
        warnings.simplefilter("ignore", UserWarning)
        for name, function in ((SUBJECT_HASH_FUNCTION, subject_hash),
                               (DECRYPT_SUBJECT_CELLS_FUNCTION, decrypt_subject_cells)):
            env.spark.udf.register(env.target.local_function_name(name),
                                   arrow_udf(function, StringType(), ArrowUDFType.SCALAR_ITER))
    # The table the lookup reads must exist before the function is created.
    settings = env.settings
    SubjectStore(env.spark, env.target.lakehouse, settings.catalog,
                 settings.crypto_schema).ensure()
    env.spark.sql(render_open_subject_cell_function(env.target, env.options))
    for schema in env.settings.schemas:
        env.spark.sql(render_decrypt_subject_function(env.target, schema, env.options))


def subject_masked_view(env: LocalFunctions, ref: TableRef, columns: Sequence[str],
                        subject_column: str, name: str = "") -> str:
    """A temporary view of the table's stored rows with ``decrypt_subject_<schema>`` on
    ``columns`` (what a reader with the environment's groups sees on Databricks)."""
    if ref.schema not in env.settings.schemas:
        raise ConfigError(f"schema {ref.schema} is not one of --schemas: no decrypt function")
    table = env.target.lakehouse.storage_table(env.spark, ref.catalog, ref.schema, ref.table)
    existing = env.spark.table(table).columns
    masked = {validate_identifier(c, "column") for c in columns}
    missing = sorted((masked | {subject_column}) - set(existing))
    if missing:
        raise ConfigError(f"{ref.catalog}.{ref.schema}.{ref.table} has no column "
                          f"{', '.join(missing)}")
    if subject_column in masked:
        raise ConfigError("the subject column cannot be masked by the subject mask")
    function = env.target.function(decrypt_subject_name(ref.schema))
    select = ", ".join(
        f"{function}({quote(c)}, '{ref.table}', '{c}', {quote(subject_column)}) AS {quote(c)}"
        if c in masked else quote(c, "column")
        for c in existing
    )
    view = validate_identifier(name or f"{ref.table}_subject_masked", "view")
    env.spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {quote(view)} AS "
                  f"SELECT {select} FROM {table}")
    return view


def read_subject_table_as(env: LocalFunctions, ref: TableRef, columns: Sequence[str],
                          subject_column: str) -> DataFrame:
    """The rows as a reader with the environment's groups sees them through the masks."""
    return env.spark.table(quote(subject_masked_view(env, ref, columns, subject_column)))
