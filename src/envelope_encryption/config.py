"""Settings shared by every job, built from job parameters (the bundle's variables).

One :class:`Settings` describes a deployment: which KEK back end, which catalog and schemas,
where the keyring lives, and the back end's own options. The bundle passes these as named
parameters (``--catalog=main``); local runs read the same YAML. Back-end options are kept in
one table, :data:`BACKEND_OPTIONS`, so the CLI, the bundle tests and the docs agree.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ConfigError
from .identifiers import validate_identifier, validate_principal

BACKENDS = ("local", "aws-kms", "aws-sm", "azure")
# The keyring table's default name. Releases before this one used ``keyvault``, the name of
# the original notebooks' table: a deployment of such a release keeps its table with
# ``--keyring-table keyvault`` (docs/migration.md, "Upgrading this project").
DEFAULT_KEYRING_TABLE = "dek_keyring"
PREVIOUS_KEYRING_TABLE = "keyvault"
_METASTORE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class OptionSpec:
    """A back-end option: its parameter name, help text and default."""

    name: str
    help: str
    default: str = ""


# Options every back end takes (appended to each back end's tuple below).
COMMON_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "dek-cache-max-age-seconds",
        "Seconds an unwrapped DEK stays cached in a process before it is unwrapped again: "
        "a disabled or revoked KEK stops working within this time (docs/keyring-integrity.md).",
        "300",
    ),
    OptionSpec(
        "audit-table",
        "Table in the crypto schema that records every key operation (docs/audit.md); "
        "'none' keeps the trail in the job log only.",
        "key_audit",
    ),
    OptionSpec(
        "usage-table",
        "Table in the crypto schema that counts encryptions per DEK version "
        "(docs/usage-limits.md); 'none' counts within each run only.",
        "dek_usage",
    ),
    OptionSpec(
        "dek-usage-hard-limit",
        "Encryptions per DEK version after which encrypting is refused (AES-GCM random IVs: "
        "at most 2^32, NIST SP 800-38D; docs/usage-limits.md).",
        "1073741824",
    ),
    OptionSpec(
        "dek-usage-soft-limit",
        "Encryptions per DEK version after which jobs warn, or rotate with --auto-rotate.",
        "536870912",
    ),
    OptionSpec(
        "auto-rotate",
        "Create a new DEK version when the active one reaches its soft usage limit "
        "(true/false).",
        "false",
    ),
    OptionSpec(
        "run-id",
        "The Databricks job run this process belongs to, recorded with each audit event "
        "(the bundle passes {{job.run_id}}); empty outside a job run.",
    ),
)

# Options of each back end, as job parameters (``--<name>=<value>``). Empty means unset.
BACKEND_OPTIONS: dict[str, tuple[OptionSpec, ...]] = {
    "local": (
        OptionSpec(
            "local-kek-file",
            "Path of the development KEK file (created with mode 0600). Development only.",
            ".envelope/local-kek.key",
        ),
    ),
    "aws-kms": (
        OptionSpec("aws-region", "AWS region of the KMS key."),
        OptionSpec("aws-endpoint-url", "Endpoint override (emulators such as moto)."),
        OptionSpec("kms-key-id", "Existing KMS key id, ARN or alias to use as the KEK."),
        OptionSpec(
            "kms-key-alias",
            "Alias of the KEK created by kek_setup "
            "(default alias/unity_catalog/<metastore_id>/<catalog>/cmk).",
        ),
        OptionSpec("kms-enable-rotation", "Enable KMS automatic yearly rotation (true/false).",
                   "true"),
        OptionSpec(
            "kms-rotation",
            "What rotate_kek does: new-key (create a new KMS key, move the alias to it, "
            "re-wrap every DEK with ReEncrypt) or on-demand (KMS RotateKeyOnDemand: new key "
            "material under the same key; nothing to re-wrap).",
            "new-key",
        ),
    ),
    "aws-sm": (
        OptionSpec("aws-region", "AWS region of the secrets."),
        OptionSpec("aws-endpoint-url", "Endpoint override (emulators such as moto)."),
        OptionSpec(
            "sm-kek-secret",
            "Name of the secret holding the KEK "
            "(default unity_catalog/<metastore_id>/<catalog>/kek).",
        ),
        OptionSpec(
            "sm-dek-secret",
            "Name of the secret holding the wrapped DEKs "
            "(default unity_catalog/<metastore_id>/<catalog>/deks).",
        ),
        OptionSpec(
            "sm-kms-key-id",
            "KMS key Secrets Manager encrypts both secrets with (default aws/secretsmanager).",
        ),
        OptionSpec(
            "sm-legacy-secret",
            "Secret of the original notebooks, read by import_legacy "
            "(default unity_catalog/<metastore_id>/<catalog>).",
        ),
    ),
    "azure": (
        OptionSpec("azure-vault-url", "Key Vault (or Managed HSM) URL, https://<name>.vault.azure.net/."),
        OptionSpec(
            "azure-key-name",
            "KEK name (default unity-catalog-<metastore_id>-<catalog>-kek).",
        ),
        OptionSpec("azure-key-type", "RSA (standard vault, RSA-OAEP-256) or oct-HSM (A256KW).",
                   "RSA"),
        OptionSpec("azure-tenant-id", "Tenant of a client-secret credential (optional)."),
        OptionSpec("azure-client-id", "Client id of a client-secret credential (optional)."),
        OptionSpec(
            "azure-client-secret-env",
            "Name of the environment variable holding the client secret (never the secret).",
        ),
        OptionSpec("azure-ca-bundle", "CA bundle to verify the vault's TLS certificate (tests)."),
        OptionSpec(
            "azure-authority-host",
            "Microsoft Entra authority of the credential (sovereign clouds, e.g. "
            "https://login.microsoftonline.us; default: public cloud).",
        ),
        OptionSpec("azure-key-size", "RSA KEK size in bits (2048, 3072 or 4096).", "3072"),
    ),
}


BACKEND_OPTIONS = {name: options + COMMON_OPTIONS for name, options in BACKEND_OPTIONS.items()}


def all_option_specs() -> dict[str, OptionSpec]:
    """Every back-end option by name (options shared by back ends appear once)."""
    specs: dict[str, OptionSpec] = {}
    for options in BACKEND_OPTIONS.values():
        for spec in options:
            specs.setdefault(spec.name, spec)
    return specs


@dataclass(frozen=True)
class Settings:
    """One deployment's configuration."""

    backend: str = "local"
    catalog: str = "main"
    schemas: tuple[str, ...] = ("default",)
    metastore_id: str = "local"
    crypto_schema: str = "crypto"
    keyring_table: str = DEFAULT_KEYRING_TABLE
    service_credential: str = ""
    options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"unknown KEK back end {self.backend!r}: choose one of {', '.join(BACKENDS)}"
            )
        validate_identifier(self.catalog, "catalog")
        for schema in self.schemas:
            validate_identifier(schema, "schema")
        validate_identifier(self.crypto_schema, "crypto schema")
        validate_identifier(self.keyring_table, "keyring table")
        if not _METASTORE_ID.match(self.metastore_id):
            # Metastore ids are UUIDs: they may start with a digit, unlike identifiers.
            raise ConfigError(
                f"invalid metastore id {self.metastore_id!r}: use letters, digits, '_' or '-'"
            )
        if self.service_credential:
            validate_principal(self.service_credential, "service credential")
        known = all_option_specs()
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            raise ConfigError(f"unknown back-end option(s): {', '.join(unknown)}")

    def option(self, name: str) -> str:
        """A back-end option's value, or its default ('' when unset)."""
        spec = all_option_specs().get(name)
        if spec is None:
            raise ConfigError(f"unknown back-end option {name!r}")
        value = self.options.get(name, "")
        return value if value != "" else spec.default

    def require(self, name: str) -> str:
        """A back-end option that must be set, with an actionable error when it is not."""
        value = self.option(name)
        if not value:
            raise ConfigError(
                f"the {self.backend} back end needs --{name} "
                f"(bundle variable {name.replace('-', '_')})"
            )
        return value

    def scope(self, schema: str) -> str:
        """The DEK scope (key alias) of a schema of this catalog."""
        return f"{self.catalog}.{validate_identifier(schema, 'schema')}"

    @property
    def group_prefix(self) -> str:
        return self.catalog


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the parameters every job takes (common settings and back-end options)."""
    group = parser.add_argument_group("deployment")
    group.add_argument("--kek-backend", default="local", choices=BACKENDS,
                       help="Where the KEK lives (default: local, development only).")
    group.add_argument("--catalog", default="main", help="Unity Catalog catalog (default: main).")
    group.add_argument("--schemas", default="default",
                       help="Comma-separated schemas that get a DEK (default: default).")
    group.add_argument("--metastore-id", default="local",
                       help="Metastore id, part of default KEK names and the KMS context.")
    group.add_argument("--crypto-schema", default="crypto",
                       help="Schema holding the keyring table and SQL functions.")
    group.add_argument("--keyring-table", default=DEFAULT_KEYRING_TABLE,
                       help="Keyring table name (deployments of releases before this one: "
                            f"{PREVIOUS_KEYRING_TABLE}, see docs/migration.md).")
    group.add_argument("--service-credential", default="",
                       help="Unity Catalog service credential used to reach the key service.")
    backend = parser.add_argument_group("back-end options")
    for spec in all_option_specs().values():
        default = f" (default: {spec.default})" if spec.default else ""
        backend.add_argument(f"--{spec.name}", default="", help=spec.help + default)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Build :class:`Settings` from parsed arguments."""
    options = {}
    for spec in all_option_specs().values():
        value = getattr(args, spec.name.replace("-", "_"), "")
        if value:
            options[spec.name] = value
    schemas = tuple(s.strip() for s in args.schemas.split(",") if s.strip())
    if not schemas:
        raise ConfigError("--schemas needs at least one schema")
    return Settings(
        backend=args.kek_backend,
        catalog=args.catalog,
        schemas=schemas,
        metastore_id=args.metastore_id,
        crypto_schema=args.crypto_schema,
        keyring_table=args.keyring_table,
        service_credential=args.service_credential,
        options=options,
    )


def cache_max_age(settings: Settings) -> float:
    """``--dek-cache-max-age-seconds`` as seconds, in (0, 86400]."""
    text = settings.option("dek-cache-max-age-seconds")
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 86_400:
        raise ConfigError(
            f"--dek-cache-max-age-seconds must be a number of seconds in (0, 86400], not {text!r}"
        )
    return seconds


def split_list(value: str) -> list[str]:
    """A comma-separated parameter as a list (blanks dropped)."""
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_bool(value: str | bool, name: str = "") -> bool:
    """A true/false parameter; anything else is a :class:`ConfigError` naming it."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    where = f"--{name} " if name else ""
    raise ConfigError(f"{where}must be true or false, not {value!r}")


def actor() -> str:
    """Who runs this process, for the keyring's created_by/modified_by columns."""
    return (
        os.environ.get("DATABRICKS_USER")
        or os.environ.get("SPARK_USER")
        or os.environ.get("USER")
        or "unknown"
    )
