"""``envelope-encryption``: one command for every job, and ``run`` for the bundle's jobs.

    envelope-encryption <job> [parameters]                 run one job's entry point
    envelope-encryption run <job> --target T [--var k=v]   run a bundle job locally
    envelope-encryption <job> --help                       its parameters

The jobs and their summaries come from :mod:`.registry`.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence

from . import local_run
from .registry import JOBS, job, summary

# Commands that are not jobs: name -> module with main(argv) and a docstring.
BUILTINS = {"run": local_run}


def commands() -> dict[str, str]:
    """Every command and its summary, built-ins first."""
    listed = {name: summary(module.__doc__, name) for name, module in BUILTINS.items()}
    listed.update((j.name, j.summary) for j in JOBS)
    return listed


def usage() -> str:
    listed = commands()
    width = max(len(name) for name in listed)
    lines = [
        "usage: envelope-encryption <command> [parameters]",
        "",
        "Envelope encryption of PII columns on the Databricks lakehouse.",
        "",
        "commands:",
    ]
    for name, text in listed.items():
        lines += textwrap.wrap(text, 99, initial_indent=f"  {name.ljust(width)}  ",
                               subsequent_indent=" " * (width + 4))
    lines += ["", "'envelope-encryption <command> --help' lists a command's parameters."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command = argv[0].replace("-", "_")
    if command in BUILTINS:
        return BUILTINS[command].main(argv[1:])
    if command not in {j.name for j in JOBS}:
        print(f"error: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return job(command).load()(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
