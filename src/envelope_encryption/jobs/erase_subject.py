"""Job ``erase_subject``: crypto-shred one data subject of a scope keyed by a subject column.

The subject's salt is removed from ``<catalog>.<crypto schema>.dek_subjects`` (a tombstone
row stays, naming the subject by its hash only): the subject's cells in every table of the
scope can no longer be opened, while every other subject's still can. Idempotent: erasing
an erased subject changes nothing; erasing a subject never written records a tombstone, so
its later writes are refused. Every run is recorded in the audit trail (``subject_erased``,
with the subject's hash, never its id).

The salt's bytes stay in older versions of the Delta table until they are vacuumed: see
docs/erasure-scopes.md and docs/key-lifecycle.md for what stays recoverable after an erase.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..config import Settings
from ..errors import ConfigError
from ..keyring.subjects import SubjectStore
from .common import build_context, job_parser, run_main


def run(settings: Settings, spark=None, *, schema: str, subject: str = "",
        subject_hash: str = "") -> str:
    """Erase the subject ``subject`` (its id, as Spark's CAST AS STRING writes it) or
    ``subject_hash`` (its hash, as the audit trail names it) of ``schema``'s scope.
    Returns what was done."""
    if bool(subject) == bool(subject_hash):
        raise ConfigError("give exactly one of --subject (the id) and --subject-hash")
    with build_context(settings, spark) as ctx:
        scope = settings.scope(schema)
        subjects = SubjectStore(ctx.spark, ctx.lakehouse, settings.catalog,
                                settings.crypto_schema)
        hashed = subject_hash.strip().lower() or subjects.hash_of(ctx.keyring, scope, subject)
        outcome = subjects.erase(scope, hashed, ctx.keyring.audit)
        return f"subject {hashed} of {scope}: {outcome}"


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("erase_subject",
                        "Crypto-shred one data subject: its cells can no longer be opened.")
    parser.add_argument("--schema", required=True, help="Schema of the DEK scope.")
    parser.add_argument("--subject", default="",
                        help="The subject's id, as in the subject column (cast to STRING).")
    parser.add_argument("--subject-hash", default="",
                        help="Or the subject's hash (32 hex characters), as the audit trail "
                             "and the subject table name it.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> str:
        return run(settings, schema=args.schema, subject=args.subject,
                   subject_hash=args.subject_hash)

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
