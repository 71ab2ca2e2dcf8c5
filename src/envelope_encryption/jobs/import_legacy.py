"""Job ``import_legacy``: the original notebooks' DEKs become legacy versions of the keyring.

Every variant of the notebooks is read, and only read:

* ``--kek-backend=aws-sm``: their secret (``--sm-legacy-secret``, by default
  ``unity_catalog/<metastore_id>/<catalog>``); each schema's DEK becomes version 1
  (:mod:`envelope_encryption.legacy.notebook_secret`).
* ``--kek-backend=aws-kms`` / ``azure``: their key table ``<catalog>.crypto.keyvault``; every
  row (all versions, enabled or not) is unwrapped with their KEK (``--legacy-key``, by default
  their key name) and becomes the same version of the same scope
  (:mod:`envelope_encryption.legacy.notebook_table`).

A fresh DEK then becomes each scope's active version: legacy DEKs only decrypt. The import is
idempotent; a scope that conflicts with the keyring is refused and the job fails (exit code
2) after importing the others. ``--dry-run=true`` reads and unwraps, and writes nothing. See
docs/migration.md for the whole migration.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..config import Settings, actor, parse_bool, split_list
from ..errors import ConfigError, KeyringError
from ..identifiers import parse_scope
from ..keyring.base import LEGACY_KEY_TYPE, DekStore
from ..legacy.importer import EmptyStore, ImportReport, LegacyDek, import_versions
from ..legacy.layout import (
    AWS_KMS,
    AZURE,
    NOTEBOOK_SCHEMA,
    NOTEBOOK_TABLE,
    notebook_azure_key_name,
    notebook_kms_alias,
)
from ..logs import guard_key_loggers
from .common import build_context, job_parser, run_main
from .legacy_detection import check_keyring_name, find_notebook_objects, refuse_adopting

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SUPPORTED = ("import_legacy reads the original notebooks' aws-sm variant (their secret) and "
             "their aws-kms and azure variants (their key table <catalog>.crypto.keyvault)")


def run(
    settings: Settings, spark: SparkSession | None = None, *, schemas: Sequence[str] = (),
    dry_run: bool = False, legacy_key: str = "", legacy_vault_url: str = "",
) -> ImportReport:
    """Import the legacy DEKs of ``schemas`` (every schema found when empty)."""
    guard_key_loggers()  # the key services' clients log at WARNING, as in every job
    if settings.backend == "aws-sm":
        return _run_secret(settings, spark, schemas, dry_run)
    if settings.backend not in (AWS_KMS, AZURE):
        raise ConfigError(f"{SUPPORTED}; --kek-backend={settings.backend} is none of them: run "
                          "it with the target of the notebooks' variant (aws-sm, aws-kms or "
                          "azure)")
    return _run_table(settings, spark, schemas, dry_run, legacy_key, legacy_vault_url)


def _run_secret(settings: Settings, spark: SparkSession | None, schemas: Sequence[str],
                dry_run: bool) -> ImportReport:
    # Loaded when the job runs, not when the CLI lists the jobs (botocore is slow to import).
    from ..kek import build_kek_provider
    from ..kek.aws.secrets import default_legacy_secret, sm_client_from_settings
    from ..keyring.factory import build_dek_store
    from ..legacy.notebook_secret import import_legacy_secret

    store = build_dek_store(settings, spark)  # the DEK secret: no Spark needed
    with build_kek_provider(settings) as kek:
        if not dry_run:
            kek.ensure()
            store.ensure()
        elif not _readable(store):
            store = EmptyStore()  # a dry run before the DEK secret exists
        source = settings.option("sm-legacy-secret") or default_legacy_secret(settings)
        return import_legacy_secret(sm_client_from_settings(settings), source,
                                    settings.catalog, store, kek, list(schemas) or None,
                                    actor(), dry_run=dry_run)


def _readable(store: DekStore) -> bool:
    try:
        store.current()
    except KeyringError:
        return False
    return True


def notebook_kek(settings: Settings, legacy_key: str = "", legacy_vault_url: str = "") -> Any:
    """The notebooks' KEK (their default name unless ``legacy_key``), asked only to unwrap."""
    from ..legacy.notebook_table import AzureNotebookKek, KmsNotebookKek

    ms, catalog = settings.metastore_id, settings.catalog
    if settings.backend == AWS_KMS:
        from ..kek.aws.kms import kms_client

        return KmsNotebookKek(kms_client(settings), ms, catalog,
                              legacy_key or notebook_kms_alias(ms, catalog))
    from ..kek.azure.credentials import ca_bundle, credential_from_settings

    bundle = settings.option("azure-ca-bundle")
    return AzureNotebookKek(legacy_vault_url or settings.require("azure-vault-url"),
                            legacy_key or notebook_azure_key_name(ms, catalog),
                            credential_from_settings(settings),
                            ca_bundle(bundle) if bundle else None)


def _run_table(settings: Settings, spark: SparkSession | None, schemas: Sequence[str],
               dry_run: bool, legacy_key: str, legacy_vault_url: str) -> ImportReport:
    from ..legacy.notebook_table import read_notebook_rows

    s = settings
    with build_context(s, spark) as ctx:
        check_keyring_name(ctx.spark, ctx.lakehouse, s)
        found = find_notebook_objects(ctx.spark, ctx.lakehouse, s.catalog)
        where = f"{s.catalog}.{NOTEBOOK_SCHEMA}.{NOTEBOOK_TABLE}"
        if not found.table:
            raise ConfigError(f"no key table of the original notebooks at {where} (columns "
                              "key_alias or key_name, key_enabled, key_version, key_type, "
                              f"key): nothing to import. {SUPPORTED}")
        if found.kind != s.backend:
            raise ConfigError(f"{where} is the notebooks' {found.kind} variant: run "
                              f"import_legacy with --kek-backend={found.kind}")
        refuse_adopting(found, s)
        rows = read_notebook_rows(ctx.spark, ctx.lakehouse.table(s.catalog, NOTEBOOK_SCHEMA,
                                                                 NOTEBOOK_TABLE),
                                  found.kind, s.catalog)
        wanted = set(schemas)
        rows = [r for r in rows if not wanted or parse_scope(r.scope)[1] in wanted]
        missing = sorted(wanted - {parse_scope(r.scope)[1] for r in rows})
        if missing:
            raise ConfigError(f"{where} has no DEK for schema(s) {', '.join(missing)}")
        theirs = notebook_kek(s, legacy_key, legacy_vault_url)
        deks: dict[str, list[LegacyDek]] = {}
        for row in rows:
            dek, opened_by = theirs.unwrap(row)
            note = f"opened by {theirs.description} ({opened_by})"
            if not row.enabled:
                note += "; disabled in their table, imported so its cells stay readable"
            deks.setdefault(row.scope, []).append(LegacyDek(row.version, dek, note))
        store = ctx.store
        if not dry_run:
            ctx.store.ensure()
            ctx.keyring.check_kek()  # a KEK repointed since the keyring pinned it is refused
            ctx.kek.ensure()
        elif not ctx.lakehouse.table_exists(ctx.spark, s.catalog, s.crypto_schema,
                                            s.keyring_table):
            store = EmptyStore()
        return import_versions(deks, store, ctx.kek, where, actor(), dry_run=dry_run,
                               audit=ctx.keyring.audit)


def describe(report: ImportReport) -> str:
    """What the import did (or would do), one line per version, and what is left to do."""
    verb = "would import" if report.dry_run else "imported"
    lines = [f"{verb} {item} ({LEGACY_KEY_TYPE}) from {report.source}"
             for item in report.imported]
    lines += [f"{item}: already imported, skipped" for item in report.already_imported]
    fresh = "would be a fresh DEK" if report.dry_run else "a fresh DEK"
    lines += [f"{item}: {fresh}, the active version (legacy versions only decrypt)"
              for item in report.activated]
    now = "would be made" if report.dry_run else "made"
    lines += [f"{item}: {now} DECRYPT_ONLY (an earlier release imported it ENABLED)"
              for item in report.decrypt_only]
    lines += report.notes
    if report.dry_run:
        lines.append("dry run: nothing was written")
    lines.append(f"{report.source} was not changed; keep it until every legacy cell has been "
                 "re-encrypted (docs/migration.md)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(
        "import_legacy",
        "Import the original notebooks' DEKs (aws-sm: their secret; aws-kms, azure: their "
        "key table <catalog>.crypto.keyvault) as decrypt-only legacy versions; a fresh DEK "
        "becomes active. Their objects are only read.",
    )
    parser.add_argument("--import-schemas", default="",
                        help="Comma-separated schemas to import (default: every schema found).")
    parser.add_argument("--dry-run", type=parse_bool, default=False,
                        help="Read and unwrap, report what would be imported, write nothing.")
    parser.add_argument("--legacy-key", default="",
                        help="The notebooks' KEK: KMS key id/alias (default alias/unity_catalog/"
                             "<metastore_id>/<catalog>/cmk) or Key Vault key name (default "
                             "unity-catalog-<metastore_id>-<catalog>-kek).")
    parser.add_argument("--legacy-vault-url", default="",
                        help="azure: the vault of the notebooks' key (default --azure-vault-url).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> str:
        report = run(settings, schemas=split_list(args.import_schemas), dry_run=args.dry_run,
                     legacy_key=args.legacy_key, legacy_vault_url=args.legacy_vault_url)
        if not report.ok:
            # What was imported is reported before the failure, so a re-run is understood.
            print(describe(report), flush=True)
            refused = "; ".join(f"refused {scope}: {why}" for scope, why in report.refused)
            raise KeyringError(refused)
        return describe(report)

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
