"""The Unity Catalog SQL layer: functions, column masks and grants, rendered per back end.

What is deployed in ``<catalog>.<crypto schema>`` (see docs/sql-functions.md):

- ``unwrap_key(wrapped_key, key_alias, key_version, kek_id, kek_version) -> BINARY``: a batch
  Python UDF using the target's service credential. Its handler calls
  :mod:`envelope_encryption.spark.sql.runtime` from the project's wheel, so it unwraps with
  the same provider code as the jobs. Nobody but its owner may execute it.
- ``dek_records(key_alias) -> STRING`` (``aws-sm`` only, where the keyring is a secret): the
  scope's current wrapped DEK records as JSON.
- ``decrypt_<schema>(value, table_name, column_name) -> STRING`` per configured schema: the
  column mask. One scalar subquery per query yields ``{member, keys: map<version, key>,
  legacy_version}``: membership of ``<catalog>.<schema>.crypto.user`` is checked first and
  the keys of the scope's enabled versions are unwrapped only for members, once per query
  per version. Each cell names its version; the native ``aes_decrypt`` checks the header and
  the place (``catalog.schema.table.column``) as associated data.
- ``encrypt_<schema>(value, table_name, column_name) -> STRING``: a cell of the active
  version (type tag ``string``).

Rendering is pure (strings in, strings out) and every identifier goes through
:mod:`envelope_encryption.identifiers`; group and credential names through
``validate_principal``. The same templates render the Databricks DDL (golden files under
``tests/sql/golden``) and the local dialect that the tests run on OSS Spark
(:mod:`envelope_encryption.spark.access`): temporary functions with one-part names, and the
keyring's local table name. The Databricks-only parts (``LANGUAGE PYTHON``, ``CREDENTIALS``,
``SET MASK``, grants) exist only in the Databricks rendering.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..config import Settings
from ..errors import ConfigError
from ..identifiers import quote, sql_string, validate_identifier, validate_principal
from ..keyring.base import LEGACY_KEY_TYPE
from ..lakehouse import Lakehouse
from .columns import TableRef
from .sql import runtime

if TYPE_CHECKING:
    from ..jobs.common import JobContext

log = logging.getLogger(__name__)

NON_MEMBER_MODES = ("null", "redacted", "ciphertext")
DECRYPT_MODES = ("strict", "lenient")
REDACTION = "[REDACTED]"
UNWRAP_FUNCTION = "unwrap_key"
DEK_RECORDS_FUNCTION = "dek_records"
OPEN_CELL_FUNCTION = "open_cell"
SEAL_CELL_FUNCTION = "seal_cell"
PACKAGES_VOLUME = "packages"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_WHEEL_PATH = re.compile(r"^[A-Za-z0-9_./=+@-]+\.whl$|^[A-Za-z0-9_.\-\[\]]+(==[A-Za-z0-9_.+-]+)$")
_SAFE_TEXT = re.compile(r"^[^'\\$\x00-\x1f]*$")


@dataclass(frozen=True)
class SqlOptions:
    """Choices of the SQL layer (kek_setup parameters ``--sql-*``).

    ``non_member``: what a reader outside the group sees: ``null`` (default, fail closed),
    ``redacted`` (the fixed text ``[REDACTED]``) or ``ciphertext`` (the cell, as the
    original notebooks did; opt-in only). ``decrypt``: ``strict`` (default; a cell that does
    not authenticate, names an unknown version or is malformed fails the query) or
    ``lenient`` (such cells read as NULL). ``udf_wheel``: where the unwrap function installs
    the project's wheel from (default: the ``packages`` volume of the crypto schema).
    """

    non_member: str = "null"
    decrypt: str = "strict"
    udf_wheel: str = ""
    reader_group: str = "{catalog}.{schema}.crypto.user"
    writer_group: str = "{catalog}.{schema}.crypto.writer"
    admin_group: str = ""
    extra_dependencies: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.non_member not in NON_MEMBER_MODES:
            raise ConfigError(
                f"--sql-non-member must be one of {', '.join(NON_MEMBER_MODES)}, "
                f"not {self.non_member!r}"
            )
        if self.decrypt not in DECRYPT_MODES:
            raise ConfigError(
                f"--sql-decrypt must be one of {', '.join(DECRYPT_MODES)}, not {self.decrypt!r}"
            )
        for dependency in (self.udf_wheel, *self.extra_dependencies):
            if dependency and not _WHEEL_PATH.match(dependency):
                raise ConfigError(
                    f"invalid Python UDF dependency {dependency!r}: give a wheel path "
                    "(/Volumes/<catalog>/<schema>/<volume>/<file>.whl) or 'package==version'"
                )
        if self.admin_group:
            validate_principal(self.admin_group, "admin group")

    def group(self, pattern: str, catalog: str, schema: str) -> str:
        """A group name from its pattern (``{catalog}`` and ``{schema}`` are filled in)."""
        try:
            name = pattern.format(catalog=catalog, schema=schema)
        except (KeyError, IndexError, ValueError):
            raise ConfigError(
                f"invalid group pattern {pattern!r}: only {{catalog}} and {{schema}} may appear"
            ) from None
        return validate_principal(name, "group")


@dataclass(frozen=True)
class SqlTarget:
    """Names of the SQL objects of one deployment in one dialect."""

    settings: Settings
    databricks: bool = True

    @property
    def lakehouse(self) -> Lakehouse:
        return Lakehouse(databricks=self.databricks)

    def function(self, name: str) -> str:
        """A function's name: three-part on Databricks, a temporary one-part name locally."""
        validate_identifier(name, "function")
        s = self.settings
        if self.databricks:
            return f"{quote(s.catalog, 'catalog')}.{quote(s.crypto_schema, 'schema')}.{quote(name)}"
        return quote(self.local_function_name(name), "function")

    def local_function_name(self, name: str) -> str:
        s = self.settings
        return validate_identifier(f"{s.catalog}__{s.crypto_schema}__{name}", "function")

    def decrypt_name(self, schema: str) -> str:
        return f"decrypt_{validate_identifier(schema, 'schema')}"

    def encrypt_name(self, schema: str) -> str:
        return f"encrypt_{validate_identifier(schema, 'schema')}"

    @property
    def keyring(self) -> str:
        s = self.settings
        return self.lakehouse.table(s.catalog, s.crypto_schema, s.keyring_table)

    @property
    def crypto_schema(self) -> str:
        s = self.settings
        return self.lakehouse.schema(s.catalog, s.crypto_schema)


# -- templates --------------------------------------------------------------------------------


def _template(name: str) -> str:
    return resources.files("envelope_encryption.spark.sql").joinpath(name).read_text("utf-8")


def render_template(text: str, values: dict[str, str]) -> str:
    """Fill ``{{name}}`` placeholders; every placeholder must have a value and vice versa."""
    used = set(_PLACEHOLDER.findall(text))
    missing = used - set(values)
    if missing:
        raise ConfigError(f"template placeholders without a value: {', '.join(sorted(missing))}")
    unused = set(values) - used
    if unused:
        raise ConfigError(f"values for no placeholder: {', '.join(sorted(unused))}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text).strip()


def _literal(text: str, what: str) -> str:
    """Text that goes inside a SQL string literal (comments, messages): no quotes, no '$'."""
    if not _SAFE_TEXT.match(text):
        raise ConfigError(f"{what} contains a quote, backslash, '$' or control character")
    return text


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return text.replace("\n", "\n" + pad)


# -- SQL functions ----------------------------------------------------------------------------


def _records(target: SqlTarget, scope: str, member: str = "") -> str:
    """The scope's current, enabled DEK records as a relation.

    For ``aws-sm`` the records come from the secret through ``dek_records``; ``member``
    gates that call, so the secret is not even read for a non-member.
    """
    if target.settings.backend == "aws-sm":
        return render_template(_template("records_secret.sql"), {
            "dek_records": target.function(DEK_RECORDS_FUNCTION),
            "scope": scope,
            "gate": f" WHERE {member}" if member else "",
        })
    return render_template(_template("records_table.sql"), {
        "keyring": target.keyring, "scope": scope, "gate": "",
    })


def _scope(target: SqlTarget, schema: str) -> str:
    return target.settings.scope(validate_identifier(schema, "schema"))


def _managed() -> str:
    return f"Managed by envelope-encryption {__version__}."


def _comment(target: SqlTarget, text: str) -> str:
    """A COMMENT clause on Databricks (local temporary functions take none)."""
    return f"COMMENT '{_literal(text, 'comment')}'\n" if target.databricks else ""


def render_open_cell_function(target: SqlTarget, options: SqlOptions) -> str:
    """``open_cell(value, place, k)``: one cell, given the query's key map ``k``.

    Shared by the decrypt functions of every schema, which evaluate ``k`` (membership and
    the unwrapped keys) once per query in a scalar subquery and pass it in.
    """
    strict = options.decrypt == "strict"
    non_member = {
        "null": "CAST(NULL AS STRING)",
        "redacted": f"'{REDACTION}'",
        "ciphertext": "value",
    }[options.non_member]
    others = {"null": "NULL", "redacted": REDACTION, "ciphertext": "the cell"}[options.non_member]
    return render_template(_template("open_cell.sql"), {
        "temporary": "" if target.databricks else "TEMPORARY ",
        "function": target.function(OPEN_CELL_FUNCTION),
        "comment": _comment(target, (
            f"Decrypts one cell with a key map from a decrypt_<schema> mask: plaintext for "
            f"members, {others} for everyone else ({options.decrypt} decryption). Not for "
            f"direct use. {_managed()}"
        )),
        "non_member": non_member,
        "aes_decrypt": "aes_decrypt" if strict else "try_aes_decrypt",
        # Strict: a cell whose version has no enabled key (or whose payload is not base64)
        # fails the query; a cell that does not authenticate already fails in aes_decrypt.
        "undecryptable": (
            "raise_error('envelope encryption: a cell does not decrypt: its DEK version is "
            "unknown or retired, or it is malformed')" if strict else "CAST(NULL AS STRING)"
        ),
        "not_a_cell": (
            "raise_error('envelope encryption: a value is not an encrypted cell and the scope "
            "has no imported legacy DEK')" if strict else "CAST(NULL AS STRING)"
        ),
    })


def render_decrypt_function(target: SqlTarget, schema: str, options: SqlOptions) -> str:
    """``decrypt_<schema>(value, table_name, column_name)``: the column mask of a scope."""
    settings = target.settings
    scope = _scope(target, schema)
    group = options.group(options.reader_group, settings.catalog, schema)
    member = f"is_account_group_member({sql_string(group)})"
    keys = render_template(_template("keys_subquery.sql"), {
        "member": member,
        "unwrap": target.function(UNWRAP_FUNCTION),
        "records": _indent(_records(target, scope, member), 2),
    })
    return render_template(_template("decrypt.sql"), {
        "temporary": "" if target.databricks else "TEMPORARY ",
        "function": target.function(target.decrypt_name(schema)),
        "comment": _comment(target, (
            f"Column mask of {scope}: plaintext for members of {group} only. Use: ALTER "
            f"TABLE t ALTER COLUMN c SET MASK ... USING COLUMNS (<table>, <column>). "
            f"{_managed()}"
        )),
        "open_cell": target.function(OPEN_CELL_FUNCTION),
        "keys": _indent(keys, 2),
        "scope": scope,
    })


def render_seal_cell_function(target: SqlTarget) -> str:
    return render_template(_template("seal_cell.sql"), {
        "temporary": "" if target.databricks else "TEMPORARY ",
        "function": target.function(SEAL_CELL_FUNCTION),
        "comment": _comment(target, (
            f"Encrypts one STRING into a cell with the active key from an encrypt_<schema> "
            f"function. Not for direct use. {_managed()}"
        )),
    })


def render_encrypt_function(target: SqlTarget, schema: str) -> str:
    """``encrypt_<schema>(value, table_name, column_name)``: a cell of the active version."""
    scope = _scope(target, schema)
    active = render_template(_template("active_subquery.sql"), {
        "unwrap": target.function(UNWRAP_FUNCTION),
        "records": _indent(_records(target, scope), 2),
    })
    return render_template(_template("encrypt.sql"), {
        "temporary": "" if target.databricks else "TEMPORARY ",
        "function": target.function(target.encrypt_name(schema)),
        "comment": _comment(target, (
            f"Encrypts a STRING into a cell of the active DEK of {scope}, bound to "
            f"{scope}.<table_name>.<column_name>. {_managed()}"
        )),
        "seal_cell": target.function(SEAL_CELL_FUNCTION),
        "active": _indent(active, 2),
        "scope": scope,
    })


def default_udf_wheel(settings: Settings) -> str:
    return (f"/Volumes/{settings.catalog}/{settings.crypto_schema}/{PACKAGES_VOLUME}/"
            f"envelope_encryption-{__version__}-py3-none-any.whl")


def _python_body(entry: str, payload: dict[str, Any]) -> str:
    for key, value in [*payload.items(), *payload["options"].items()]:
        if isinstance(value, str) and ("$$" in value or "\n" in value):
            raise ConfigError(f"setting {key} cannot contain '$$' or a line break")
    lines = [
        f"from envelope_encryption.spark.sql.runtime import {entry}",
        "",
        "# The deployment's settings (names and options only; no secret).",
        "SETTINGS = {",
    ]
    for key, value in payload.items():
        if key == "options":
            lines.append("    'options': {")
            lines += [f"        {k!r}: {v!r}," for k, v in value.items()]
            lines.append("    },")
        elif isinstance(value, list):
            lines.append(f"    {key!r}: [{', '.join(repr(v) for v in value)}],")
        else:
            lines.append(f"    {key!r}: {value!r},")
    lines += [
        "}",
        "",
        "",
        "def handler(batch_iter):",
        f"    return {entry}(batch_iter, SETTINGS)",
    ]
    return "\n".join(lines)


def _python_function(target: SqlTarget, options: SqlOptions, name: str, parameters: str,
                     returns: str, entry: str, comment: str) -> str:
    settings = target.settings
    if settings.backend == "local":
        raise ConfigError(
            "the local back end keeps its KEK in a file on one machine: Unity Catalog functions "
            "cannot use it. Deploy the SQL functions with aws-kms, aws-sm or azure"
        )
    if not settings.service_credential:
        raise ConfigError(
            "the SQL unwrap function needs a Unity Catalog service credential: set "
            "--service-credential (bundle variable service_credential)"
        )
    wheel = options.udf_wheel or default_udf_wheel(settings)
    dependencies = [wheel, *options.extra_dependencies]
    for dependency in dependencies:
        if not _WHEEL_PATH.match(dependency):
            raise ConfigError(f"invalid Python UDF dependency {dependency!r}")
    payload = runtime.settings_payload(settings)
    return render_template(_template("python_function.sql"), {
        "function": target.function(name),
        "parameters": parameters,
        "returns": returns,
        "credentials": f"CREDENTIALS ({quote_principal(settings.service_credential)} DEFAULT)\n",
        "dependencies": "[" + ", ".join(f'"{d}"' for d in dependencies) + "]",
        "comment": _literal(comment, "comment"),
        "body": _python_body(entry, payload),
    })


def quote_principal(name: str) -> str:
    """A group, user or credential name as a backtick-quoted SQL identifier."""
    return f"`{validate_principal(name)}`"


def render_unwrap_function(target: SqlTarget, options: SqlOptions) -> str:
    s = target.settings
    return _python_function(
        target, options, UNWRAP_FUNCTION,
        "wrapped_key BINARY, key_alias STRING, key_version INT, kek_id STRING, kek_version STRING",
        "BINARY", "unwrap_batches",
        f"Unwraps DEKs of catalog {s.catalog} with the {s.backend} KEK. Privileged: only its "
        "owner executes it (through the decrypt and encrypt functions). Managed by "
        f"envelope-encryption {__version__}.",
    )


def render_dek_records_function(target: SqlTarget, options: SqlOptions) -> str:
    s = target.settings
    return _python_function(
        target, options, DEK_RECORDS_FUNCTION, "key_alias STRING", "STRING",
        "dek_records_batches",
        f"Current wrapped DEK records of a scope of catalog {s.catalog}, read from Secrets "
        f"Manager (JSON, no plaintext). Managed by envelope-encryption {__version__}.",
    )


# -- grants and masks -------------------------------------------------------------------------


def render_grants(target: SqlTarget, options: SqlOptions) -> list[str]:
    """Privileges: nothing for readers on the crypto schema; EXECUTE on encrypt for writers.

    Masks run the decrypt function for the reader, with the function owner's rights over the
    keyring and the unwrap function, so readers need no privilege on the crypto schema.
    """
    s = target.settings
    schema = target.crypto_schema
    statements = [f"REVOKE ALL PRIVILEGES ON SCHEMA {schema} FROM `account users`"]
    private = [UNWRAP_FUNCTION, OPEN_CELL_FUNCTION, SEAL_CELL_FUNCTION]
    if s.backend == "aws-sm":
        private.append(DEK_RECORDS_FUNCTION)
    for name in private:
        statements.append(
            f"REVOKE ALL PRIVILEGES ON FUNCTION {target.function(name)} FROM `account users`"
        )
    for schema_name in s.schemas:
        writers = quote_principal(options.group(options.writer_group, s.catalog, schema_name))
        statements.append(f"GRANT USE SCHEMA ON SCHEMA {schema} TO {writers}")
        statements.append(
            f"GRANT EXECUTE ON FUNCTION {target.function(target.encrypt_name(schema_name))} "
            f"TO {writers}"
        )
    if options.admin_group:
        statements.append(
            f"GRANT ALL PRIVILEGES ON SCHEMA {schema} TO {quote_principal(options.admin_group)}"
        )
    return statements


def render_mask(target: SqlTarget, ref: TableRef, column: str) -> str:
    """``ALTER TABLE ... SET MASK decrypt_<schema> USING COLUMNS ('<table>', '<column>')``."""
    if ref.catalog != target.settings.catalog:
        raise ConfigError(
            f"table {ref.catalog}.{ref.schema}.{ref.table} is not in catalog "
            f"{target.settings.catalog}, whose crypto schema holds the decrypt functions"
        )
    validate_identifier(column, "column")
    table = target.lakehouse.table(ref.catalog, ref.schema, ref.table)
    function = target.function(target.decrypt_name(ref.schema))
    return (f"ALTER TABLE {table} ALTER COLUMN {quote(column, 'column')} SET MASK {function} "
            f"USING COLUMNS ('{validate_identifier(ref.table, 'table')}', '{column}')")


def render_deployment(settings: Settings, options: SqlOptions | None = None) -> list[str]:
    """Every Databricks statement kek_setup runs for the SQL layer, in order."""
    options = options or SqlOptions()
    target = SqlTarget(settings, databricks=True)
    volume = (f"{target.crypto_schema}.{quote(PACKAGES_VOLUME)}")
    statements = [
        f"CREATE SCHEMA IF NOT EXISTS {target.crypto_schema} COMMENT 'Envelope encryption: "
        "keyring and SQL functions. No grants for readers.'",
        f"CREATE VOLUME IF NOT EXISTS {volume} COMMENT 'The envelope-encryption wheel the "
        "unwrap function installs'",
        render_unwrap_function(target, options),
    ]
    if settings.backend == "aws-sm":
        statements.append(render_dek_records_function(target, options))
    statements.append(render_open_cell_function(target, options))
    statements.append(render_seal_cell_function(target))
    for schema in settings.schemas:
        statements.append(render_decrypt_function(target, schema, options))
        statements.append(render_encrypt_function(target, schema))
    statements += render_grants(target, options)
    return statements


def render_script(settings: Settings, options: SqlOptions | None = None,
                  masks: Sequence[tuple[TableRef, str]] = ()) -> str:
    """The deployment as one SQL script (the golden files), statements ending in ';'."""
    options = options or SqlOptions()
    header = [
        f"-- envelope-encryption {__version__}: Unity Catalog SQL layer, {settings.backend} "
        f"back end, catalog {settings.catalog}.",
        "-- Rendered by envelope_encryption.spark.sql_functions.render_script; run by kek_setup "
        "--sql-functions=true.",
        f"-- Readers: members of {options.reader_group} see plaintext; everyone else sees "
        f"{options.non_member} ({options.decrypt} decryption).",
    ]
    target = SqlTarget(settings, databricks=True)
    statements = render_deployment(settings, options)
    statements += [render_mask(target, ref, column) for ref, column in masks]
    return "\n".join(header) + "\n\n" + "\n\n".join(s + ";" for s in statements) + "\n"


# -- running them -----------------------------------------------------------------------------


@dataclass
class SqlDeployReport:
    statements: int
    functions: list[str]
    local: bool

    def __str__(self) -> str:
        where = "locally (temporary functions)" if self.local else "in Unity Catalog"
        return f"SQL functions {', '.join(self.functions)} deployed {where}"


def deploy(ctx: JobContext, options: SqlOptions | None = None) -> SqlDeployReport:
    """Create or replace the SQL layer (kek_setup ``--sql-functions=true``).

    On Databricks every statement of :func:`render_deployment` runs in order. Elsewhere the
    same decrypt/encrypt SQL is installed as temporary functions over local stand-ins
    (:mod:`.access`), which is what local runs and tests can do without Unity Catalog.
    """
    options = options or SqlOptions()
    settings = ctx.settings
    target = SqlTarget(settings, databricks=ctx.lakehouse.databricks)
    names = [target.decrypt_name(s) for s in settings.schemas]
    names += [target.encrypt_name(s) for s in settings.schemas]
    if not ctx.lakehouse.databricks:
        from .access import LocalSqlEnvironment

        LocalSqlEnvironment(ctx.spark, settings, options).install()
        log.info("SQL functions installed as temporary functions (local run)")
        return SqlDeployReport(0, names, local=True)
    statements = render_deployment(settings, options)
    for statement in statements:
        ctx.spark.sql(statement)
    log.info("deployed %d SQL statement(s) in %s.%s", len(statements), settings.catalog,
             settings.crypto_schema)
    return SqlDeployReport(len(statements), [UNWRAP_FUNCTION, *names], local=False)


def apply_column_masks(ctx: JobContext, ref: TableRef, columns: Sequence[str]) -> list[str]:
    """Put the decrypt mask of the table's schema on every encrypted column.

    On Databricks the decrypt function must exist (kek_setup ``--sql-functions=true``);
    locally the masks are applied as a temporary view ``<table>_masked`` over the same SQL.
    Returns the statements run (or the view made).
    """
    settings = ctx.settings
    target = SqlTarget(settings, databricks=ctx.lakehouse.databricks)
    if ref.schema not in settings.schemas:
        raise ConfigError(
            f"schema {ref.schema} has no decrypt function: add it to --schemas and run kek_setup "
            "with --sql-functions=true"
        )
    if not ctx.lakehouse.databricks:
        from .access import LocalSqlEnvironment

        env = LocalSqlEnvironment(ctx.spark, settings, SqlOptions())
        env.install()
        view = env.masked_view(ref, columns)
        log.info("local run: column masks applied as the temporary view %s", view)
        return [view]
    function = f"{settings.catalog}.{settings.crypto_schema}.{target.decrypt_name(ref.schema)}"
    if not ctx.spark.catalog.functionExists(function):
        raise ConfigError(
            f"function {function} does not exist: run kek_setup with --sql-functions=true "
            "before masking columns"
        )
    statements = [render_mask(target, ref, column) for column in columns]
    for statement in statements:
        ctx.spark.sql(statement)
    log.info("masked %s on %s.%s.%s", ", ".join(columns), ref.catalog, ref.schema, ref.table)
    return statements


__all__ = [
    "DECRYPT_MODES",
    "LEGACY_KEY_TYPE",
    "NON_MEMBER_MODES",
    "REDACTION",
    "SqlDeployReport",
    "SqlOptions",
    "SqlTarget",
    "apply_column_masks",
    "deploy",
    "render_decrypt_function",
    "render_deployment",
    "render_encrypt_function",
    "render_grants",
    "render_mask",
    "render_script",
    "render_unwrap_function",
]
