"""The jobs, declared once: each is a module of this package, a CLI command, an entry point.

A job named ``x`` is the module ``envelope_encryption.jobs.x`` with ``main(argv) -> int``.
Everything else reads :data:`JOBS`: the ``envelope-encryption`` CLI (its command list and
each command's summary, the first sentence of the module's docstring), the local runner
(which entry point a bundle task calls), and the tests that keep ``[project.scripts]`` in
``pyproject.toml`` (the wheel needs it written out) and ``resources/jobs.yml`` in line
with it. Adding a job: write ``jobs/<name>.py``, add it here, add its
``[project.scripts]`` line and, if deployed, its job in ``resources/jobs.yml``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from ..errors import ConfigError

# The console script of the CLI itself, next to one per job.
CLI_SCRIPT = "envelope-encryption"
CLI_ENTRY_POINT = f"{__package__}.cli:main"

# "Job ``name``: " (or "``command``: ") leading a docstring's first sentence.
_LABEL = re.compile(r"^(?:Job )?``[^`]+``:\s*")
_SENTENCE_END = re.compile(r"\.(?:\s|$)")


@dataclass(frozen=True)
class Job:
    """One job: entry point ``name`` of the wheel, runs ``envelope_encryption.jobs.<name>``."""

    name: str
    # Whether resources/jobs.yml has a job for it (for every target or, like demo and
    # import_legacy, for some); False: run by hand with the CLI only.
    deployed: bool = True

    @property
    def module_name(self) -> str:
        return f"{__package__}.{self.name}"

    @property
    def entry_point(self) -> str:
        """The ``[project.scripts]`` target: ``module:function``."""
        return f"{self.module_name}:main"

    def module(self) -> ModuleType:
        return importlib.import_module(self.module_name)

    def load(self) -> Callable[[Sequence[str] | None], int]:
        """The job's ``main(argv) -> exit code``."""
        return self.module().main

    @property
    def summary(self) -> str:
        return summary(self.module().__doc__, self.name)


JOBS: tuple[Job, ...] = (
    Job("kek_setup"),
    Job("dek_generation"),
    Job("encrypt_columns"),
    Job("rotate_kek"),
    Job("reencrypt_columns"),
    Job("retire_dek"),
    Job("dek_state"),
    Job("purge_residue"),
    Job("erase_subject"),
    Job("status"),
    Job("import_legacy"),
    Job("demo"),
    Job("preflight"),
    Job("table_registry", deployed=False),
)


def job(name: str) -> Job:
    """The job called ``name`` (dashes accepted for underscores), or ConfigError."""
    wanted = name.replace("-", "_")
    for candidate in JOBS:
        if candidate.name == wanted:
            return candidate
    known = ", ".join(j.name for j in JOBS)
    raise ConfigError(f"no job {name!r} in envelope_encryption (jobs: {known})")


def console_scripts() -> dict[str, str]:
    """What ``[project.scripts]`` must hold: the CLI and one entry point per job."""
    return {CLI_SCRIPT: CLI_ENTRY_POINT, **{j.name: j.entry_point for j in JOBS}}


def summary(docstring: str | None, name: str) -> str:
    """The first sentence of a docstring, without its ``Job ``name``:`` label or markup."""
    if not docstring or not docstring.strip():
        raise ConfigError(f"{name} has no docstring to take its summary from")
    paragraph = " ".join(docstring.strip().split("\n\n", 1)[0].split())
    text = _LABEL.sub("", paragraph).replace("``", "")
    end = _SENTENCE_END.search(text)
    sentence = text[: end.start() + 1] if end else text
    return sentence[:1].upper() + sentence[1:]
