"""Job ``dek_state``: move a DEK version to enabled, decrypt-only, retired or destroyed.

States (docs/key-lifecycle.md): ENABLED (the highest one encrypts; all decrypt),
DECRYPT_ONLY (decrypts, never encrypts), RETIRED (decrypts nothing; ``--to enabled`` or
``--to decrypt-only`` brings it back), DESTROYED (crypto-shredding: the wrapped key is
removed from the keyring and from every copy the project controls; terminal).

Before ``--to retired`` or ``--to destroyed`` the tables given (``--tables``, else the
tables registered for the scope) are scanned for cells of the version, as ``retire_dek``
does; cells found refuse the change unless ``--force`` (those values become unreadable).
Every destroy needs ``--confirm <catalog>.<schema>:v<version>``, the scope and version typed
out again. ``--domain`` instead of ``--schema`` changes a version of an equality domain's key:
its values are counted in the domain's registered columns (:mod:`.domain_columns`). The
only ENABLED version of a scope cannot leave ENABLED: run ``dek_generation``
first. A second run is a "no change" and exits 0. Each change (and each refusal) is in the
audit trail as ``dek_state_changed`` or ``dek_destroyed``. What a destroy cannot remove
(Delta history, clones, backups) is the ``purge_residue`` job's and the operator's part.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..config import Settings, parse_bool, split_list
from ..errors import ConfigError, UnknownKeyVersion
from ..keyring.base import DekState
from ..keyring.lifecycle import StateChange
from ..spark.sql.target import SqlOptions
from .common import JobContext, build_context, job_parser, run_main
from .domain_columns import add_scope_arguments, key_scope, scope_domain
from .guarded_reads import add_cells_guard_arguments, cells_in_use
from .table_registry import tables_to_check

TARGET_STATES = tuple(state.label for state in DekState)


def stored_cells(ctx: JobContext, scope: str, version: int, tables: Sequence[str], *,
                 force: bool, job: str, job_group: str, allow_null_columns: bool) -> int:
    """How many values of the given (else registered) tables still need the version.

    With no table to check the count would prove nothing: refused unless ``force`` (then 0).
    An equality domain's scope is checked in its registered columns (and those of
    ``tables``), which :func:`cells_in_use` finds itself.
    """
    if scope_domain(scope) is not None:
        return 0 if force and not tables else cells_in_use(
            ctx, scope, version, tables, job_group=job_group,
            allow_null_columns=allow_null_columns)
    if not tables and not force:
        tables = tables_to_check(ctx, scope, tables, job)
    if not tables and not force:
        raise ConfigError(
            f"refusing to take {scope} v{version} out of use without --tables: no table is "
            "registered for the scope, so nothing shows that no cell uses it. Give every "
            "table that holds cells of the scope, or --force=true (cells still using it "
            "become unreadable)")
    if not tables:
        return 0
    # Every table is checked before any is counted, and all before anything changes.
    return cells_in_use(ctx, scope, version, tables, job_group=job_group,
                        allow_null_columns=allow_null_columns)


def run(settings: Settings, spark=None, *, schema: str = "", version: int, to: str,
        tables: Sequence[str] = (), force: bool = False, confirm: str = "",
        job_group: str = SqlOptions.job_group, allow_null_columns: bool = False,
        domain: str = "") -> StateChange:
    """Change the state of a version of ``schema``'s DEK or of ``domain``'s key."""
    target = DekState.parse(to)
    scope = key_scope(settings, schema, domain)
    with build_context(settings, spark) as ctx:
        current = {r.version: r.state for r in ctx.keyring.versions(scope)}
        if version not in current:
            raise UnknownKeyVersion(f"{scope} has no DEK version {version}")
        in_use = 0
        # Counted when the version stops decrypting now, and before any destroy (a version
        # retired by force may still have cells, and a destroy is not undone).
        before = current[version]
        if (not target.decrypts and before.decrypts) or (
                target is DekState.DESTROYED and before is not DekState.DESTROYED):
            in_use = stored_cells(ctx, scope, version, tables, force=force, job="dek_state",
                                  job_group=job_group, allow_null_columns=allow_null_columns)
        return ctx.keyring.set_state(scope, version, target, in_use=in_use > 0, force=force,
                                     confirm=confirm)


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("dek_state", "Move a DEK version to enabled, decrypt-only, retired "
                                     "or destroyed (docs/key-lifecycle.md).")
    add_scope_arguments(parser, "Schema of the DEK scope (or --domain).")
    parser.add_argument("--version", type=int, required=True, help="DEK version to change.")
    parser.add_argument("--to", required=True, choices=TARGET_STATES,
                        help="The new state. destroyed cannot be undone.")
    parser.add_argument("--tables", default="",
                        help="Comma-separated tables to check for cells of that version "
                             "(retired, destroyed): every table holding cells of the scope. "
                             "Empty: the tables registered for the scope (table_registry).")
    parser.add_argument("--force", type=parse_bool, default=False,
                        help="Retire or destroy even if cells still use it (they become "
                             "unreadable).")
    parser.add_argument("--confirm", default="",
                        help="For --to destroyed: <catalog>.<schema>:v<version>, the scope "
                             "and version typed out again (for --domain: "
                             "'<catalog>.$equality.<domain>:v<version>', in single quotes "
                             "in a shell).")
    add_cells_guard_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> str:
        return str(run(settings, schema=args.schema, domain=args.domain,
                       version=args.version, to=args.to,
                       tables=split_list(args.tables), force=args.force,
                       confirm=args.confirm, job_group=args.sql_job_group,
                       allow_null_columns=args.allow_null_columns))

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
