"""Job ``preflight``: check a Databricks workspace before and after deployment.

Reads the workspace with the Databricks SDK's ``WorkspaceClient``, authenticated the way the
SDK resolves it (``DATABRICKS_HOST``/``DATABRICKS_TOKEN``, ``--profile``, or the job's own
identity on Databricks), and prints one line per check: ``ok``, ``problem`` (with how to fix
it), ``skipped``, or ``to create`` (before deployment). Changes nothing. Exits with status 1
when any check is a problem and 2 on an error, also when a wheel task calls :func:`main`
(which ignores a returned value). See docs/preflight.md.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..cell.equality import parse_domain_specs
from ..config import Settings, split_list
from ..errors import ConfigError
from ..spark.sql.target import SqlOptions
from .common import job_parser, run_main
from .preflight_checks import STAGES, PreflightOptions, run_checks
from .preflight_grants import CheckResult, Status

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

EXIT_PROBLEM = 1
# preflight's own parameters besides --stage: name, default, help.
OPTIONS = (
    ("admin-groups", "",
     "Comma-separated principals (groups, users, service principal application ids) allowed "
     "to hold privileges on the crypto objects besides their owner."),
    ("reader-group-pattern", SqlOptions.reader_group,
     "Reader group of each schema; {catalog} and {schema} are filled in."),
    ("writer-group-pattern", "",
     "Writer group of each schema, when writer grants are deployed (may hold USE SCHEMA on "
     "the crypto schema); empty: none."),
    ("sql-job-group", SqlOptions.job_group,
     "Group the column masks give the cells unchanged to, as given to kek_setup: the jobs' "
     "principal must be in it (empty: none)."),
    ("sql-udf-wheel", "",
     "Wheel the unwrap function installs, as given to kek_setup "
     "(default: /Volumes/<catalog>/<crypto schema>/packages/<wheel>)."),
    ("sql-crypto-catalog", "",
     "Catalog of the SQL functions and the wheel's volume, as given to kek_setup (empty: "
     "the data catalog)."),
    ("equality-domains", "",
     "Equality domains as given to kek_setup, name[:normal_form[:bits]] comma-separated: "
     "equality_values and the lookup functions blind_index_<domain> and "
     "deterministic_<domain> must then exist (empty: none)."),
    ("sql-lookup-group", "",
     "Group (may use {catalog}) granted EXECUTE on the lookup functions, as given to "
     "kek_setup: it may hold that and USE SCHEMA on the crypto schema, nothing else (empty: "
     "nobody)."),
    ("job-principal", "",
     "Principal the jobs run as, when preflight runs as someone else (default: the caller)."),
    ("profile", "",
     "Databricks CLI profile (~/.databrickscfg). Default: the SDK's own resolution "
     "(DATABRICKS_HOST/DATABRICKS_TOKEN, the job's identity on Databricks, the DEFAULT "
     "profile)."),
)


def workspace_client(profile: str = "") -> WorkspaceClient:
    """A client configured as the SDK resolves it; ``profile`` picks a ~/.databrickscfg entry."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import DatabricksError

    try:
        return WorkspaceClient(profile=profile or None)
    except (ValueError, DatabricksError) as error:
        raise ConfigError(
            f"cannot configure the Databricks SDK ({error}): set DATABRICKS_HOST and "
            "DATABRICKS_TOKEN, or pass --profile"
        ) from None


def report(results: Sequence[CheckResult], stage: str) -> str:
    """The report: one line per check, then the counts."""
    counts = Counter(result.status for result in results)
    summary = ", ".join(f"{counts[status]} {status.value}" for status in Status
                        if counts[status])
    verdict = ("problems found" if counts[Status.PROBLEM] else "no problem found")
    return "\n".join([*(result.line() for result in results),
                      f"preflight ({stage} deployment): {verdict} ({summary})"])


def preflight_options(args: argparse.Namespace) -> PreflightOptions:
    """The options of a parsed command line (ConfigError when one is invalid)."""
    return PreflightOptions(
        stage=args.stage,
        admins=tuple(split_list(args.admin_groups)),
        reader_group=args.reader_group_pattern,
        writer_group=args.writer_group_pattern,
        job_group=args.sql_job_group,
        udf_wheel=args.sql_udf_wheel,
        crypto_catalog=args.sql_crypto_catalog,
        job_principal=args.job_principal,
        equality_domains=parse_domain_specs(args.equality_domains),
        lookup_group=args.sql_lookup_group,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(
        "preflight",
        "Check a Databricks workspace before and after deployment: the service credential, "
        "the groups, the wheel, the crypto schema's objects, and that nobody but the owner "
        "and the admins holds privileges (direct or inherited) on the keys. Changes nothing; "
        "exits 1 when a check finds a problem.",
    )
    checks = parser.add_argument_group("preflight (docs/preflight.md)")
    checks.add_argument("--stage", choices=STAGES, default="after",
                        help="before: objects kek_setup creates may be missing (reported as "
                             "'to create'); after: every object must exist.")
    for name, default, text in OPTIONS:
        checks.add_argument(f"--{name}", default=default, help=text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    failed = False

    def checked(args: argparse.Namespace, settings: Settings) -> str:
        nonlocal failed
        options = preflight_options(args)
        results = run_checks(workspace_client(args.profile), settings, options)
        failed = any(result.status is Status.PROBLEM for result in results)
        return report(results, options.stage)

    code = run_main(build_parser(), checked, argv)
    # A wheel task ignores the returned value: only the process status reports failure.
    if code or failed:
        raise SystemExit(code or EXIT_PROBLEM)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
