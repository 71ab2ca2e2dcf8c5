"""``envelope-encryption run <job>``: run a job of the bundle on this machine.

The job's tasks, entry points and parameters come from the same ``databricks.yml`` and
``resources/*.yml`` that ``databricks bundle deploy`` uses, resolved for a target with the
same variable precedence. Each task's entry point (a job of :mod:`.registry`) is called in
this process, in dependency order, on one local SparkSession whose warehouse and metastore
live in ``.envelope/`` of the bundle's folder.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, EnvelopeError
from . import registry
from .bundle import find_bundle_root, load_bundle, parse_var_overrides

PACKAGE = "envelope_encryption"


def run_job(
    job: str,
    target: str | None = None,
    overrides: dict[str, str] | None = None,
    root: Path | None = None,
) -> int:
    """Run every task of ``job`` for ``target``; stop at the first task that fails."""
    root = root or find_bundle_root()
    bundle = load_bundle(root, target, overrides or {})
    tasks = bundle.tasks(job)
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
        code = registry.job(task.entry_point).load()(task.parameters)
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
    parser.add_argument("--target", "-t", default=None,
                        help="Bundle target (default: the bundle's default target).")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="Set a bundle variable for this run (repeatable).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_job(args.job, args.target, parse_var_overrides(args.var))
    except EnvelopeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
