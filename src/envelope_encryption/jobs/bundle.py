"""Read the Databricks Asset Bundle (``databricks.yml`` and ``resources/*.yml``) for local runs.

The bundle's variables are the one source of configuration: a deployed job gets its
parameters from ``${var.*}`` through the Databricks CLI, and a local run gets the same
parameters from the same YAML through this module. It resolves one target the way the CLI
does for what local runs need:

- variable values, with the CLI's precedence: ``--var`` overrides, then the environment
  variable ``BUNDLE_VAR_<name>``, then the target's value, then the declared default;
- ``${var.<name>}`` (also ``${variables.<name>.value}``), ``${bundle.name}``,
  ``${bundle.target}`` and ``${workspace.file_path}`` anywhere in strings, recursively (both
  in :mod:`.bundle_variables`). On a workspace ``${workspace.file_path}`` is where the
  bundle's files are synced; locally the files are the bundle's own folder, so it is that;
- job-level ``parameters`` (Jobs API 2.1): ``{{job.parameters.<name>}}`` in a task is the
  parameter's default, or the value given with ``--params`` (parsed as the CLI does, in
  :mod:`.bundle_flags`);
- ``include`` globs, and ``targets.<t>.resources`` overrides (tasks merged by ``task_key``);
- YAML anchors, aliases and ``<<`` merge keys within one file, which PyYAML's safe loader
  resolves as the CLI's loader does (keys written beside ``<<`` win over merged ones).

References that only a workspace can answer (other ``${workspace.*}``, ``${resources.*}``,
lookup variables, dynamic values other than job parameters) raise :class:`ConfigError`
instead of leaking into a job's parameters. Nothing here imports Spark.
"""

from __future__ import annotations

import copy
import glob
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ..errors import ConfigError
from .bundle_flags import parse_var_overrides
from .bundle_variables import Resolver, scalar, variable_values

__all__ = ["Bundle", "Task", "find_bundle_root", "load_bundle", "parse_var_overrides"]

ROOT_ENV = "ENVELOPE_BUNDLE_ROOT"
BUNDLE_FILES = ("databricks.yml", "databricks.yaml", "bundle.yml", "bundle.yaml")
# Lists in target overrides that the CLI merges element by element on a key.
_MERGE_KEYS = {
    "tasks": "task_key",
    "environments": "environment_key",
    "job_clusters": "job_cluster_key",
}

_EMPTY: Mapping[str, str] = MappingProxyType({})
# A dynamic value reference of the Jobs API, resolved when a run starts: {{job.parameters.x}}.
_DYNAMIC = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_JOB_PARAMETER = re.compile(r"job\.parameters\.([A-Za-z0-9_.-]+)")


@dataclass(frozen=True)
class Task:
    """One task of a job, as a local runner needs it: which entry point, which arguments."""

    key: str
    package_name: str
    entry_point: str
    parameters: list[str]


@dataclass(frozen=True)
class Bundle:
    """A bundle resolved for one target.

    ``variables`` holds every declared variable's final value (strings; mappings or lists
    for complex variables); ``jobs`` the job definitions with every reference substituted.
    """

    root: Path
    name: str
    target: str
    variables: dict[str, Any]
    jobs: dict[str, dict[str, Any]]
    mode: str | None = None

    def job(self, job_key: str) -> dict[str, Any]:
        """The resolved definition of one job, or ConfigError naming the jobs there are."""
        try:
            return self.jobs[job_key]
        except KeyError:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise ConfigError(
                f"unknown job {job_key!r} in bundle {self.name!r} (jobs: {known})"
            ) from None

    def parameters(self, job_key: str, params: Mapping[str, str] = _EMPTY) -> dict[str, str]:
        """The job's parameters for one run: their defaults, with ``params`` (``--params``)
        replacing them, and the CLI's and Jobs API's refusals."""
        declared = self.job(job_key).get("parameters") or []
        values: dict[str, str] = {}
        for parameter in declared:
            if not isinstance(parameter, dict) or not parameter.get("name"):
                raise ConfigError(f"job {job_key!r} has a parameter without a name")
            if "default" not in parameter:
                raise ConfigError(f"parameter {parameter['name']!r} of job {job_key!r} "
                                  "needs a default (the Jobs API requires one)")
            values[str(parameter["name"])] = scalar(parameter["default"], parameter["name"])
        if params and not declared:
            # The CLI's own words (bundle/run/job_options.go).
            raise ConfigError(f"the job to run ({job_key}) does not define job parameters; "
                              "specifying job parameters is not allowed")
        unknown = sorted(set(params) - set(values))
        if unknown:
            raise ConfigError(f"job {job_key!r} has no parameter {', '.join(unknown)} "
                              f"(parameters: {', '.join(values)})")
        values.update(params)
        return values

    def tasks(self, job_key: str, params: Mapping[str, str] = _EMPTY,
              run_id: str = "local") -> list[Task]:
        """The job's tasks in dependency order (ties keep their declaration order), with
        ``{{job.parameters.<name>}}`` replaced by the run's parameter values and
        ``{{job.run_id}}`` by ``run_id``."""
        job = self.job(job_key)
        values = self.parameters(job_key, params)
        declared = job.get("tasks") or []
        by_key: dict[str, dict[str, Any]] = {}
        for task in declared:
            key = task.get("task_key") if isinstance(task, dict) else None
            if not key:
                raise ConfigError(f"job {job_key!r} has a task without task_key")
            if key in by_key:
                raise ConfigError(f"job {job_key!r} has two tasks named {key!r}")
            by_key[key] = task
        needs: dict[str, list[str]] = {}
        for key, task in by_key.items():
            deps = [d.get("task_key") for d in task.get("depends_on") or []]
            for dep in deps:
                if dep not in by_key:
                    raise ConfigError(
                        f"task {key!r} of job {job_key!r} depends on unknown task {dep!r}"
                    )
            needs[key] = deps
        ordered: list[str] = []
        while len(ordered) < len(by_key):
            ready = next(
                (k for k in by_key if k not in ordered and all(d in ordered for d in needs[k])),
                None,
            )
            if ready is None:
                stuck = ", ".join(k for k in by_key if k not in ordered)
                raise ConfigError(f"job {job_key!r} has a dependency cycle among: {stuck}")
            ordered.append(ready)
        return [_wheel_task(job_key, by_key[key], values, run_id) for key in ordered]


def _dynamic_values(text: str, values: Mapping[str, str], where: str, run_id: str) -> str:
    """``{{job.parameters.<name>}}`` in a task parameter, replaced by the run's value, and
    ``{{job.run_id}}`` by the local run's id."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "job.run_id":
            return run_id
        reference = _JOB_PARAMETER.fullmatch(match.group(1))
        if reference is None:
            raise ConfigError(f"{where}: {match.group(0)} is a dynamic value that only a "
                              "Databricks job run can resolve; local runs resolve "
                              "{{job.parameters.<name>}} and {{job.run_id}} only")
        name = reference.group(1)
        if name not in values:
            raise ConfigError(f"{where}: {match.group(0)} names no parameter of the job "
                              f"(parameters: {', '.join(values) or 'none'})")
        return values[name]

    return _DYNAMIC.sub(replace, text)


def _wheel_task(job_key: str, task: dict[str, Any], values: Mapping[str, str],
                run_id: str) -> Task:
    key = task["task_key"]
    wheel = task.get("python_wheel_task")
    if not isinstance(wheel, dict):
        kinds = ", ".join(k for k in task if k.endswith("_task")) or "none"
        raise ConfigError(
            f"task {key!r} of job {job_key!r} is not a python_wheel_task ({kinds}); "
            "local runs support wheel tasks only"
        )
    named = wheel.get("named_parameters") or {}
    positional = wheel.get("parameters") or []
    if named and positional:
        raise ConfigError(
            f"task {key!r} of job {job_key!r} sets both named_parameters and parameters; "
            "Databricks accepts only one of them"
        )
    where = f"task {key!r} of job {job_key!r}"
    if named:
        parameters = [f"--{name}={_dynamic_values(scalar(value, name), values, where, run_id)}"
                      for name, value in named.items()]
    else:
        parameters = [_dynamic_values(scalar(value, key), values, where, run_id)
                      for value in positional]
    for field_name in ("package_name", "entry_point"):
        if not wheel.get(field_name):
            raise ConfigError(f"task {key!r} of job {job_key!r} has no {field_name}")
    return Task(
        key=key,
        package_name=str(wheel["package_name"]),
        entry_point=str(wheel["entry_point"]),
        parameters=parameters,
    )


def find_bundle_root(start: Path | None = None) -> Path:
    """The folder holding ``databricks.yml``: ``$ENVELOPE_BUNDLE_ROOT``, else ``start`` (the
    working directory by default) or the nearest parent that has one."""
    configured = os.environ.get(ROOT_ENV)
    if configured:
        root = Path(configured).expanduser().resolve()
        if _bundle_file(root) is None:
            raise ConfigError(f"{ROOT_ENV}={configured} does not contain a databricks.yml")
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _bundle_file(folder) is not None:
            return folder
    raise ConfigError(
        f"no databricks.yml in {here} or its parents: run from the repository, "
        f"or set {ROOT_ENV} to the bundle's folder"
    )


def load_bundle(
    root: Path,
    target: str | None = None,
    overrides: Mapping[str, str] = _EMPTY,
    environ: Mapping[str, str] | None = None,
) -> Bundle:
    """Load the bundle at ``root`` and resolve it for ``target`` (None: the default target)."""
    root = Path(root).resolve()
    config = _load_config(root)
    name = (config.get("bundle") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{_bundle_file(root)} has no bundle.name")

    target_name, target_config = _select_target(config.get("targets") or {}, target)
    resources = config.get("resources") or {}
    if target_config.get("resources"):
        resources = _override(resources, target_config["resources"])

    # On a workspace the bundle's files are synced to ${workspace.file_path}; locally they
    # are the bundle's folder itself.
    context = {"bundle.name": name, "bundle.target": target_name,
               "workspace.file_path": str(root)}
    variables = variable_values(
        config.get("variables") or {},
        target_config.get("variables") or {},
        target_name,
        overrides,
        os.environ if environ is None else environ,
    )
    resolved_vars = Resolver(variables, context).all()
    substitute = Resolver(resolved_vars, context, raw=False)
    jobs_config = resources.get("jobs") or {}
    if not isinstance(jobs_config, dict):
        raise ConfigError("resources.jobs must be a mapping of job keys to jobs")
    jobs = {
        key: substitute.value(job, f"resources.jobs.{key}") for key, job in jobs_config.items()
    }
    return Bundle(
        root=root,
        name=name,
        target=target_name,
        variables=resolved_vars,
        jobs=jobs,
        mode=target_config.get("mode"),
    )


# --- loading -----------------------------------------------------------------------------


def _bundle_file(folder: Path) -> Path | None:
    for candidate in BUNDLE_FILES:
        path = folder / candidate
        if path.is_file():
            return path
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data


def _load_config(root: Path) -> dict[str, Any]:
    main = _bundle_file(root)
    if main is None:
        raise ConfigError(f"no databricks.yml in {root}")
    config = _read_yaml(main)
    seen = {main.resolve()}
    for pattern in config.get("include") or []:
        matches = sorted(glob.glob(str(root / pattern)))
        for match in matches:
            path = Path(match).resolve()
            if path in seen:
                continue
            seen.add(path)
            included = _read_yaml(path)
            if "include" in included:
                raise ConfigError(f"{path}: included files cannot include further files")
            _merge_into(config, included, str(path.relative_to(root)), ())
    return config


def _merge_into(dst: dict[str, Any], src: dict[str, Any], origin: str, at: tuple[str, ...]) -> None:
    """Merge an included file; the same leaf (e.g. a job key) defined twice is an error."""
    for key, value in src.items():
        here = (*at, str(key))
        if key not in dst:
            dst[key] = value
        elif (
            isinstance(dst[key], dict)
            and isinstance(value, dict)
            and not (len(here) == 3 and here[0] == "resources")
        ):
            # Sections merge across files; a resource itself (resources.jobs.<key>) and
            # any single value may be defined only once.
            _merge_into(dst[key], value, origin, here)
        else:
            raise ConfigError(f"{'.'.join(here)} is defined twice (again in {origin})")


def _select_target(targets: dict[str, Any], target: str | None) -> tuple[str, dict[str, Any]]:
    if not isinstance(targets, dict) or not targets:
        if target not in (None, "default"):
            raise ConfigError(f"unknown target {target!r}: the bundle declares no targets")
        return "default", {}
    if target is None:
        defaults = [k for k, v in targets.items() if isinstance(v, dict) and v.get("default")]
        if len(defaults) > 1:
            raise ConfigError(f"more than one default target: {', '.join(defaults)}")
        if not defaults and len(targets) > 1:
            raise ConfigError(
                f"no default target: choose one of {', '.join(targets)} with --target"
            )
        target = defaults[0] if defaults else next(iter(targets))
    if target not in targets:
        raise ConfigError(f"unknown target {target!r}: choose one of {', '.join(targets)}")
    return target, targets[target] or {}


def _override(base: Any, override: Any) -> Any:
    """A target's override of resources: mappings merge, keyed lists merge by key."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if key in merged and key in _MERGE_KEYS and isinstance(value, list):
                merged[key] = _merge_keyed(merged[key], value, _MERGE_KEYS[key])
            elif key in merged:
                merged[key] = _override(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def _merge_keyed(base: list[Any], override: list[Any], key: str) -> list[Any]:
    merged = [copy.deepcopy(item) for item in base]
    index = {item.get(key): i for i, item in enumerate(merged) if isinstance(item, dict)}
    for item in override:
        if isinstance(item, dict) and item.get(key) in index:
            position = index[item[key]]
            merged[position] = _override(merged[position], item)
        else:
            merged.append(copy.deepcopy(item))
    return merged
