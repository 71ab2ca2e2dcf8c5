"""What a deployment of the SQL layer is: its options and the names of its SQL objects.

:class:`SqlOptions` holds the choices of kek_setup's ``--sql-*`` parameters;
:class:`SqlTarget` names the functions, schema and keyring of one deployment in one
dialect: three-part Unity Catalog names on Databricks, one-part temporary names locally.
Every identifier goes through :mod:`envelope_encryption.identifiers`, every group and
credential name through ``validate_principal``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...cell.equality import DomainSpec
from ...config import Settings
from ...errors import ConfigError
from ...identifiers import quote, validate_identifier, validate_principal
from ...lakehouse import Lakehouse

NON_MEMBER_MODES = ("null", "redacted", "ciphertext")
DECRYPT_MODES = ("strict", "lenient")
REDACTION = "[REDACTED]"
UNWRAP_FUNCTION = "unwrap_key"
DECRYPT_CELLS_FUNCTION = "decrypt_cells"
DEK_RECORDS_FUNCTION = "dek_records"
OPEN_CELL_FUNCTION = "open_cell"
SEAL_CELL_FUNCTION = "seal_cell"
EQUALITY_VALUES_FUNCTION = "equality_values"
# The lookup functions of an equality domain, by the kind equality_values computes.
LOOKUP_KINDS = {"blind_index": "blind_index_{domain}", "deterministic": "deterministic_{domain}"}
PACKAGES_VOLUME = "packages"
# A Python UDF dependency: a wheel path or a pinned 'package==version', nothing that could
# break out of the ENVIRONMENT clause's string.
WHEEL_PATH = re.compile(r"^[A-Za-z0-9_./=+@-]+\.whl$|^[A-Za-z0-9_.\-\[\]]+(==[A-Za-z0-9_.+-]+)$")


@dataclass(frozen=True)
class SqlOptions:
    """Choices of the SQL layer (kek_setup parameters ``--sql-*``).

    ``non_member``: what a reader outside the group sees: ``null`` (default, fail closed),
    ``redacted`` (the fixed text ``[REDACTED]``) or ``ciphertext`` (the cell, as the
    original notebooks did; opt-in only). ``decrypt``: ``strict`` (default; a cell that does
    not authenticate, names an unknown version or is malformed fails the query) or
    ``lenient`` (such cells read as NULL). ``udf_wheel``: where the unwrap function installs
    the project's wheel from (default: the ``packages`` volume of the crypto schema).

    Group patterns (``{catalog}`` and ``{schema}`` are filled in): ``reader_group``, whose
    members read plaintext; ``job_group``, whose members read the cells unchanged through
    the masks (the principals of the jobs that rewrite or count cells; checked before the
    reader group, so a member of both reads cells, never plaintext; empty: nobody); and
    ``writer_group``, granted EXECUTE on ``encrypt_<schema>`` only when set (default: no
    writer grants, since a GRANT to a group that does not exist fails).

    ``crypto_catalog``: the catalog of the crypto schema's functions (the unwrap function,
    the masks' functions, the wheel's volume); default: the data catalog. A dedicated
    catalog keeps the unwrap function out of reach of catalog-level grants on the data
    catalog (``EXECUTE`` or ``ALL PRIVILEGES`` on ``<catalog>`` would cover it there).

    ``equality_domains`` (``--equality-domains``, the syntax of
    :func:`~envelope_encryption.cell.equality.parse_domain_specs`): the deployment's
    equality domains. Members then also read deterministic (``ed1``) cells of these domains
    through the masks, and ``blind_index_<domain>`` / ``deterministic_<domain>`` compute a
    literal's index or cell for lookups. ``lookup_group`` (``--sql-lookup-group``, may use
    ``{catalog}``): granted EXECUTE on those lookup functions only when set. No domains: the
    SQL is what it was without them.
    """

    non_member: str = "null"
    decrypt: str = "strict"
    udf_wheel: str = ""
    reader_group: str = "{catalog}.{schema}.crypto.user"
    job_group: str = "{catalog}.crypto.jobs"
    writer_group: str = ""
    admin_group: str = ""
    crypto_catalog: str = ""
    extra_dependencies: tuple[str, ...] = field(default_factory=tuple)
    equality_domains: Mapping[str, DomainSpec] = field(default_factory=dict)
    lookup_group: str = ""

    def __post_init__(self) -> None:
        for name, spec in self.equality_domains.items():
            if not isinstance(spec, DomainSpec) or spec.name != name:
                raise ConfigError(f"equality domain {name!r}: give a DomainSpec of that name "
                                  "(parse_domain_specs)")
        if self.lookup_group:
            if not self.equality_domains:
                raise ConfigError("--sql-lookup-group needs --equality-domains: there is no "
                                  "lookup function to grant")
            self.lookup_group_name("catalog")
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
            if dependency and not WHEEL_PATH.match(dependency):
                raise ConfigError(
                    f"invalid Python UDF dependency {dependency!r}: give a wheel path "
                    "(/Volumes/<catalog>/<schema>/<volume>/<file>.whl) or 'package==version'"
                )
        if self.admin_group:
            validate_principal(self.admin_group, "admin group")
        if self.crypto_catalog:
            validate_identifier(self.crypto_catalog, "crypto catalog")
        # Patterns fail here, with their option's name, not in the middle of a deployment.
        for option, pattern in (("--sql-reader-group", self.reader_group),
                                ("--sql-job-group", self.job_group),
                                ("--sql-writer-group", self.writer_group)):
            if pattern:
                try:
                    self.group(pattern, "catalog", "schema")
                except ConfigError as error:
                    raise ConfigError(f"{option}: {error}") from None
        if not self.reader_group:
            raise ConfigError("--sql-reader-group cannot be empty")
        if self.job_group and self.job_group == self.reader_group:
            raise ConfigError(
                "--sql-job-group must differ from the reader group: its members read cells, "
                "not plaintext"
            )

    def lookup_group_name(self, catalog: str) -> str:
        """The lookup group of a catalog, or '' when none is configured."""
        if not self.lookup_group:
            return ""
        try:
            name = self.lookup_group.format(catalog=catalog)
        except (KeyError, IndexError, ValueError):
            raise ConfigError(f"--sql-lookup-group: invalid group pattern "
                              f"{self.lookup_group!r}: only {{catalog}} may appear") from None
        return validate_principal(name, "lookup group")

    def job_group_name(self, catalog: str, schema: str) -> str:
        """The job group of a scope, or '' when none is configured."""
        return self.group(self.job_group, catalog, schema) if self.job_group else ""

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
    # The catalog of the crypto schema's functions (SqlOptions.crypto_catalog); '' = the
    # data catalog. The keyring table stays where the settings put it.
    crypto_catalog: str = ""

    @classmethod
    def of(cls, settings: Settings, options: SqlOptions, databricks: bool = True) -> SqlTarget:
        return cls(settings, databricks, options.crypto_catalog)

    @property
    def functions_catalog(self) -> str:
        return self.crypto_catalog or self.settings.catalog

    @property
    def lakehouse(self) -> Lakehouse:
        return Lakehouse(databricks=self.databricks)

    def function(self, name: str) -> str:
        """A function's name: three-part on Databricks, a temporary one-part name locally."""
        validate_identifier(name, "function")
        s = self.settings
        if self.databricks:
            return (f"{quote(self.functions_catalog, 'catalog')}."
                    f"{quote(s.crypto_schema, 'schema')}.{quote(name)}")
        return quote(self.local_function_name(name), "function")

    def local_function_name(self, name: str) -> str:
        """Locally, temporary functions have one-part names: ``<catalog>__<schema>__<name>``
        with the functions' catalog (the crypto catalog when one is configured)."""
        s = self.settings
        return validate_identifier(f"{self.functions_catalog}__{s.crypto_schema}__{name}",
                                   "function")

    def decrypt_name(self, schema: str) -> str:
        return f"decrypt_{validate_identifier(schema, 'schema')}"

    def encrypt_name(self, schema: str) -> str:
        return f"encrypt_{validate_identifier(schema, 'schema')}"

    def lookup_name(self, kind: str, domain: str) -> str:
        """``blind_index_<domain>`` or ``deterministic_<domain>``."""
        try:
            pattern = LOOKUP_KINDS[kind]
        except KeyError:
            raise ConfigError(f"no lookup function of kind {kind!r}") from None
        return pattern.format(domain=validate_identifier(domain, "equality domain"))

    @property
    def keyring(self) -> str:
        s = self.settings
        return self.lakehouse.table(s.catalog, s.crypto_schema, s.keyring_table)

    @property
    def packages_volume(self) -> str:
        """The volume of the crypto schema the Python functions install the wheel from."""
        return f"{self.crypto_schema}.{quote(PACKAGES_VOLUME)}"

    @property
    def crypto_schema(self) -> str:
        """The schema of the functions (in the crypto catalog when one is configured)."""
        return self.lakehouse.schema(self.functions_catalog, self.settings.crypto_schema)


def quote_principal(name: str) -> str:
    """A group, user or credential name as a backtick-quoted SQL identifier."""
    return f"`{validate_principal(name)}`"
