"""``envelope-encryption``: one command for every job, and ``run`` for the bundle's jobs.

    envelope-encryption <job> [parameters]                 run one job's entry point
    envelope-encryption run <job> --target T [--var k=v]   run a bundle job locally
    envelope-encryption <job> --help                       its parameters
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# Command name -> (module, summary). Module paths are imported only when the command runs.
COMMANDS = {
    "run": ("envelope_encryption.jobs.local_run",
            "Run a job of the bundle locally (tasks and parameters from resources/*.yml)."),
    "demo": ("envelope_encryption.jobs.demo",
             "The whole flow on synthetic PII, on embedded defaults."),
    "kek_setup": ("envelope_encryption.jobs.kek_setup",
                  "Ensure the KEK, the keyring and an active DEK per schema (idempotent)."),
    "dek_generation": ("envelope_encryption.jobs.dek_generation",
                       "New DEK version for a schema; older versions keep decrypting."),
    "encrypt_columns": ("envelope_encryption.jobs.encrypt_columns",
                        "Encrypt columns of new input into a target table."),
    "rotate_kek": ("envelope_encryption.jobs.rotate_kek",
                   "Rotate the KEK and re-wrap every DEK, verified."),
    "reencrypt_columns": ("envelope_encryption.jobs.reencrypt_columns",
                          "Move a table's cells of older DEK versions to the active one."),
    "retire_dek": ("envelope_encryption.jobs.retire_dek",
                   "Retire a DEK version; refused while cells still use it."),
    "status": ("envelope_encryption.jobs.status",
               "Show the KEK, every DEK version, and the versions a table uses."),
    "import_legacy": ("envelope_encryption.legacy.import_secret",
                      "aws-sm: import the original notebooks' secret as version-1 DEKs."),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: envelope-encryption <command> [parameters]",
        "",
        "Envelope encryption of PII columns on the Databricks lakehouse.",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "'envelope-encryption <command> --help' lists a command's parameters."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command = argv[0].replace("-", "_")
    if command not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
