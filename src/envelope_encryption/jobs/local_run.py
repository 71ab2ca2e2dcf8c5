"""``envelope-encryption run <job>``: run a job of the bundle on this machine.

The job's tasks, entry points and parameters come from the same ``databricks.yml`` and
``resources/*.yml`` that ``databricks bundle deploy`` uses, resolved for a target with the
same variable precedence, and ``--var`` and ``--params`` are parsed as the Databricks CLI
parses them (:mod:`.bundle_flags`). Each task's entry point (a job of :mod:`.registry`) is
called in this process, in dependency order, on one local SparkSession whose warehouse and
metastore live in ``.envelope/`` of the bundle's folder.

The target defaults to ``local``: the bundle itself has no default target (a plain
``databricks bundle deploy`` must name one), but a local run can only mean that one.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, EnvelopeError
from . import registry
from .bundle import find_bundle_root, load_bundle
from .bundle_flags import parse_job_params, parse_var_overrides

PACKAGE = "envelope_encryption"
LOCAL_TARGET = "local"


def run_job(
    job: str,
    target: str = LOCAL_TARGET,
    overrides: dict[str, str] | None = None,
    root: Path | None = None,
    params: dict[str, str] | None = None,
) -> int:
    """Run every task of ``job`` for ``target``; stop at the first task that fails.

    ``overrides`` are ``--var`` values, ``params`` the job parameters of ``--params``.
    """
    root = root or find_bundle_root()
    bundle = load_bundle(root, target, overrides or {})
    # Like a Databricks run id, one per run; it marks the run's events in the audit table.
    tasks = bundle.tasks(job, params or {}, run_id=f"local-{uuid.uuid4().hex[:12]}")
    # Relative paths in variables (landing folders, the local KEK file) are relative to the
    # bundle, as they are on a workspace.
    os.chdir(bundle.root)
    os.environ.setdefault("ENVELOPE_WORKDIR", str(bundle.root / ".envelope"))
    for number, task in enumerate(tasks, start=1):
        if task.package_name != PACKAGE:
            raise ConfigError(f"task {task.key} runs package {task.package_name!r}, not {PACKAGE}")
        print(f"== [{number}/{len(tasks)}] {job}.{task.key}: {task.entry_point} "
              f"(target {bundle.target})", flush=True)
        # The registry is what [project.scripts] lists (a test keeps them equal), so this
        # calls what the wheel's entry point calls, without needing the package installed.
        try:
            code = registry.job(task.entry_point).load()(task.parameters)
        except SystemExit as stopped:
            # What a wheel task sees: the entry point ended the process with this status.
            code = stopped.code if isinstance(stopped.code, int) else 1
        if code:
            print(f"== task {task.key} failed (exit {code})", file=sys.stderr)
            return code
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="envelope-encryption run",
        description="Run a job of the bundle locally, with the parameters the bundle gives it.",
    )
    parser.add_argument("job", help="Job key in resources/*.yml, e.g. demo, kek_setup.")
    parser.add_argument("--target", "-t", default=LOCAL_TARGET,
                        help="Bundle target (default: %(default)s).")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="Set bundle variables, as the CLI's --var: comma-separated "
                             "name=value items (repeatable); a value with a comma needs "
                             "BUNDLE_VAR_<name> or --var '\"name=a,b\"'.")
    parser.add_argument("--params", action="append", default=[], metavar="K=V[,K=V]",
                        help="Job parameters for this run, as 'databricks bundle run "
                             "--params' (repeatable).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_job(args.job, args.target, parse_var_overrides(args.var),
                       params=parse_job_params(args.params))
    except EnvelopeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
