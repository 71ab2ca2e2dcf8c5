"""Render the Unity Catalog SQL layer: pure, settings in, SQL text out.

The templates are the ``*.sql`` files of this package; :func:`render_template` fills their
``{{name}}`` placeholders. The same templates render the Databricks DDL (:func:`render_script`,
the golden files) and the local dialect the tests run on OSS Spark
(:mod:`.local_unity_catalog`): temporary functions with one-part names, and the keyring's
local table name. The Databricks-only parts (``LANGUAGE PYTHON``, ``CREDENTIALS``,
``SET MASK``, grants) exist only in the Databricks rendering. Nothing here touches Spark.
"""

from __future__ import annotations

from collections.abc import Sequence

from ... import __version__
from ...config import Settings
from ...errors import ConfigError
from ...identifiers import quote, validate_identifier
from ..columns import TableRef
from .cell_shape import non_member_sql, open_cell_values
from .equality_sql import equality_header, render_equality_functions, render_equality_grants
from .function_sql import default_udf_wheel as default_udf_wheel  # its public place
from .function_sql import (
    indent,
    managed,
    python_function,
    sql_function,
)
from .keyring_sql import integrity_record, keys_subquery, records_relation, render_template
from .keyring_sql import template as _template
from .passed_records import record_struct_sql
from .subject_mask import PRIVATE_FUNCTIONS as SUBJECT_FUNCTIONS
from .subject_mask import decrypt_subject_name, render_subject_deployment
from .target import (
    DECRYPT_CELLS_FUNCTION,
    DEK_RECORDS_FUNCTION,
    OPEN_CELL_FUNCTION,
    SEAL_CELL_FUNCTION,
    UNWRAP_FUNCTION,
    SqlOptions,
    SqlTarget,
    quote_principal,
)

# -- SQL functions ----------------------------------------------------------------------------


def _scope(target: SqlTarget, schema: str) -> str:
    return target.settings.scope(validate_identifier(schema, "schema"))


def render_open_cell_function(target: SqlTarget, options: SqlOptions) -> str:
    """``open_cell(value, place, k)``: one cell, given the query's ``k``.

    Shared by the decrypt functions of every schema, which evaluate ``k`` (membership and
    the scope's keyring records, never a key) once per query in a scalar subquery and pass
    it in; ``decrypt_cells`` opens the cell, ``open_cell`` turns a refusal into the error.
    """
    non_member, others = non_member_sql(options)
    comment = (
        f"Decrypts one cell with the keyring from a decrypt_<schema> mask: the cell unchanged "
        f"for the job group, plaintext for members, {others} for everyone else "
        f"({options.decrypt} decryption). Not for direct use. {managed()}"
    )
    return sql_function(target, "open_cell.sql", OPEN_CELL_FUNCTION, comment,
                         open_cell_values(options.decrypt == "strict", non_member,
                                          f"{target.function(DECRYPT_CELLS_FUNCTION)}"
                                          "(value, place, k.keyring)"))


def _scope_function(target: SqlTarget, name: str, scope: str, comment: str,
                    cell_function: str, keys: str) -> str:
    """``decrypt_<schema>`` or ``encrypt_<schema>``: a cell function bound to the value's place."""
    return sql_function(target, "scope_function.sql", name, comment, {
        "cell_function": target.function(cell_function),
        "keys": indent(keys, 2),
        "scope": scope,
    })


def render_decrypt_function(target: SqlTarget, schema: str, options: SqlOptions) -> str:
    """``decrypt_<schema>(value, table_name, column_name)``: the column mask of a scope."""
    settings = target.settings
    scope = _scope(target, schema)
    group = options.group(options.reader_group, settings.catalog, schema)
    jobs = options.job_group_name(settings.catalog, schema)
    keys = keys_subquery(target, schema, options)
    exempt = f"; members of {jobs} read the cells unchanged" if jobs else ""
    comment = (
        f"Column mask of {scope}: plaintext for members of {group} only{exempt}. Use: "
        f"ALTER TABLE t ALTER COLUMN c SET MASK ... USING COLUMNS (<table>, <column>). "
        f"{managed()}"
    )
    return _scope_function(target, target.decrypt_name(schema), scope, comment,
                           OPEN_CELL_FUNCTION, keys)


def render_seal_cell_function(target: SqlTarget) -> str:
    """``seal_cell(value, place, a)``: one value into a cell with the active key ``a``."""
    comment = (
        f"Encrypts one STRING into a cell with the active key from an encrypt_<schema> "
        f"function. Not for direct use. {managed()}"
    )
    return sql_function(target, "seal_cell.sql", SEAL_CELL_FUNCTION, comment, {})


def render_encrypt_function(target: SqlTarget, schema: str) -> str:
    """``encrypt_<schema>(value, table_name, column_name)``: a cell of the active version."""
    scope = _scope(target, schema)
    active = render_template(_template("active_subquery.sql"), {
        "unwrap": target.function(UNWRAP_FUNCTION),
        "scope": scope,
        "record": record_struct_sql("r"),
        "integrity": indent(integrity_record(target), 4),
        "records": indent(records_relation(target, scope), 8),
    })
    comment = (
        f"Encrypts a STRING into a cell of the active DEK of {scope}, bound to "
        f"{scope}.<table_name>.<column_name>. {managed()}"
    )
    return _scope_function(target, target.encrypt_name(schema), scope, comment,
                           SEAL_CELL_FUNCTION, active)


# -- Python functions (Databricks only) -------------------------------------------------------


def render_unwrap_function(target: SqlTarget, options: SqlOptions) -> str:
    """``unwrap_key(key_alias, records, keyring_integrity)``: the privileged batch Python UDF
    that unwraps a scope's keyring records, all at once.

    It takes the records collected by the key subquery (one JSON object per DEK version,
    every column the record's tag covers, see :mod:`.passed_records`) and the newest
    integrity record, verifies each record, and returns their DEKs in the same order, so
    the plaintext keys exist only after the aggregation, in the query's final projection:
    none crosses a shuffle. A record the keyring does not vouch for is refused.
    """
    s = target.settings
    return python_function(
        target, options, UNWRAP_FUNCTION,
        "key_alias STRING, records ARRAY<STRING>, keyring_integrity STRING",
        "ARRAY<BINARY>", "unwrap_batches",
        f"Unwraps the DEKs of verified keyring records of the scopes of catalog {s.catalog} "
        f"({', '.join(s.schemas)}) with the {s.backend} KEK; refuses other scopes and any "
        "record whose integrity tag does not verify. Privileged: only its owner executes it "
        "(through the decrypt and encrypt functions). Managed by "
        f"envelope-encryption {__version__}.",
    )


def render_decrypt_cells_function(target: SqlTarget, options: SqlOptions) -> str:
    """``decrypt_cells(value, place, keyring)``: the privileged batch Python UDF that opens
    the masks' cells, a batch at a time, with the DEKs of the verified keyring records it is
    passed (unwrapped inside it, once per worker and version: :mod:`.decrypt_cells`)."""
    s = target.settings
    return python_function(
        target, options, DECRYPT_CELLS_FUNCTION, "value STRING, place STRING, keyring STRING",
        "STRING", "decrypt_cells_batches",
        f"Opens cells of the scopes of catalog {s.catalog} ({', '.join(s.schemas)}) with the "
        f"DEKs of verified keyring records, unwrapped inside with the {s.backend} KEK: "
        "+plaintext or !cause per value. Privileged: only its owner executes it (through "
        f"the decrypt functions). Managed by envelope-encryption {__version__}.",
        module="decrypt_cells", domains=True,
    )


def render_dek_records_function(target: SqlTarget, options: SqlOptions) -> str:
    """``dek_records(key_alias)`` (``aws-sm``): a scope's wrapped DEK records as JSON."""
    s = target.settings
    return python_function(
        target, options, DEK_RECORDS_FUNCTION, "key_alias STRING", "STRING",
        "dek_records_batches",
        f"Current wrapped DEK records of a scope of catalog {s.catalog}, read from Secrets "
        f"Manager (JSON, no plaintext). Managed by envelope-encryption {__version__}.",
        domains=True,
    )


# -- grants, masks, the whole deployment ------------------------------------------------------


def render_grants(target: SqlTarget, options: SqlOptions) -> list[str]:
    """Privileges: nothing for readers on the crypto schema; EXECUTE on encrypt for writers
    (only when a writer group is configured).

    Masks run the decrypt function for the reader, with the function owner's rights over the
    keyring and the unwrap function, so readers need no privilege on the crypto schema.
    """
    s = target.settings
    schema = target.crypto_schema
    statements = [f"REVOKE ALL PRIVILEGES ON SCHEMA {schema} FROM `account users`"]
    private = [UNWRAP_FUNCTION, DECRYPT_CELLS_FUNCTION, OPEN_CELL_FUNCTION, SEAL_CELL_FUNCTION,
               *SUBJECT_FUNCTIONS]
    if s.backend == "aws-sm":
        private.append(DEK_RECORDS_FUNCTION)
    for name in private:
        statements.append(
            f"REVOKE ALL PRIVILEGES ON FUNCTION {target.function(name)} FROM `account users`"
        )
    # Writer grants are opt-in: a GRANT to a group that does not exist fails the deployment.
    for schema_name in s.schemas if options.writer_group else ():
        writers = quote_principal(options.group(options.writer_group, s.catalog, schema_name))
        statements.append(f"GRANT USE SCHEMA ON SCHEMA {schema} TO {writers}")
        statements.append(
            f"GRANT EXECUTE ON FUNCTION {target.function(target.encrypt_name(schema_name))} "
            f"TO {writers}"
        )
    if options.equality_domains:
        statements += render_equality_grants(target, options)
    if options.admin_group:
        statements.append(
            f"GRANT ALL PRIVILEGES ON SCHEMA {schema} TO {quote_principal(options.admin_group)}"
        )
    return statements


def render_mask(target: SqlTarget, ref: TableRef, column: str, subject_column: str = "") -> str:
    """``ALTER TABLE ... SET MASK decrypt_<schema> USING COLUMNS ('<table>', '<column>')``;
    for a subject-keyed column, ``decrypt_subject_<schema>`` with the subject column too."""
    if ref.catalog != target.settings.catalog:
        raise ConfigError(
            f"table {ref.catalog}.{ref.schema}.{ref.table} is not in catalog "
            f"{target.settings.catalog}, whose crypto schema holds the decrypt functions"
        )
    validate_identifier(column, "column")
    table = target.lakehouse.table(ref.catalog, ref.schema, ref.table)
    function = target.function(target.decrypt_name(ref.schema))
    subject = ""
    if subject_column:
        if subject_column == column:
            raise ConfigError("the subject column cannot be the masked column itself")
        function = target.function(decrypt_subject_name(ref.schema))
        subject = f", {quote(subject_column, 'subject column')}"
    return (f"ALTER TABLE {table} ALTER COLUMN {quote(column, 'column')} SET MASK {function} "
            f"USING COLUMNS ('{validate_identifier(ref.table, 'table')}', '{column}'{subject})")


def render_deployment(settings: Settings, options: SqlOptions | None = None) -> list[str]:
    """Every Databricks statement kek_setup runs for the SQL layer, in order."""
    options = options or SqlOptions()
    target = SqlTarget.of(settings, options)
    volume = target.packages_volume
    statements = [
        f"CREATE SCHEMA IF NOT EXISTS {target.crypto_schema} COMMENT 'Envelope encryption: "
        "keyring and SQL functions. No grants for readers.'",
        f"CREATE VOLUME IF NOT EXISTS {volume} COMMENT 'The envelope-encryption wheel the "
        "unwrap function installs'",
        render_unwrap_function(target, options),
    ]
    if settings.backend == "aws-sm":
        statements.append(render_dek_records_function(target, options))
    statements.append(render_decrypt_cells_function(target, options))
    statements.append(render_open_cell_function(target, options))
    statements.append(render_seal_cell_function(target))
    for schema in settings.schemas:
        statements.append(render_decrypt_function(target, schema, options))
        statements.append(render_encrypt_function(target, schema))
    if options.equality_domains:
        statements += render_equality_functions(target, options)
    statements += render_subject_deployment(target, options, python_function)
    statements += render_grants(target, options)
    return statements


def render_script(settings: Settings, options: SqlOptions | None = None,
                  masks: Sequence[tuple[TableRef, str]] = ()) -> str:
    """The deployment as one SQL script (the golden files), statements ending in ';'."""
    options = options or SqlOptions()
    header = [
        f"-- envelope-encryption {__version__}: Unity Catalog SQL layer, {settings.backend} "
        f"back end, catalog {settings.catalog}.",
        # The public name of this function: the facade envelope_encryption.spark.sql_functions.
        "-- Rendered by envelope_encryption.spark.sql_functions.render_script; run by kek_setup "
        "--sql-functions=true.",
        f"-- Readers: members of {options.reader_group} see plaintext; everyone else sees "
        f"{options.non_member} ({options.decrypt} decryption).",
        f"-- Jobs: members of {options.job_group or '(no job group)'} read the cells unchanged "
        "(checked first); writers: "
        f"{options.writer_group or 'no grants (no writer group configured)'}.",
    ]
    if options.equality_domains:
        header.append(equality_header(options))
    target = SqlTarget.of(settings, options)
    statements = render_deployment(settings, options)
    statements += [render_mask(target, ref, column) for ref, column in masks]
    return "\n".join(header) + "\n\n" + "\n\n".join(s + ";" for s in statements) + "\n"
