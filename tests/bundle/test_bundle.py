"""The bundle's YAML (databricks.yml, resources/jobs.yml) against the jobs it deploys.

The Databricks CLI cannot run here, so the YAML is checked the way the CLI would see it:
resolved for every target by ``envelope_encryption.jobs.bundle`` and loaded with the typed
models of ``databricks-bundles`` (which reject unknown fields at any depth), and every job's
parameters are parsed by the job's own argument parser. The jobs are those of
``envelope_encryption.jobs.registry`` that are deployed.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from databricks.bundles.jobs import Job

from envelope_encryption.config import all_option_specs, settings_from_args
from envelope_encryption.jobs import registry
from envelope_encryption.jobs.bundle import load_bundle

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = yaml.safe_load((ROOT / "databricks.yml").read_text())
RESOURCE_FILES = sorted((ROOT / "resources").glob("*.yml"))
RAW_JOBS = {
    key: job
    for path in RESOURCE_FILES
    for key, job in yaml.safe_load(path.read_text())["resources"]["jobs"].items()
}
TARGETS = list(BUNDLE["targets"])
JOBS = [job.name for job in registry.JOBS if job.deployed]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]
COMMON_SETTINGS = ["kek-backend", "catalog", "schemas", "metastore-id", "crypto-schema",
                   "keyring-table", "service-credential"]
# What each job receives besides the deployment settings: parameter -> variable.
JOB_SPECIFIC = {
    "kek_setup": {"sql-functions": "sql_functions", "sql-non-member": "sql_non_member",
                  "sql-decrypt": "sql_decrypt", "sql-udf-wheel": "sql_udf_wheel"},
    "dek_generation": {"schema": "new_dek_schema"},
    "encrypt_columns": {"source": "source_path", "source-format": "source_format",
                        "target-table": "target_table", "columns": "encrypt_columns",
                        "id-column": "id_column", "mask": "mask_columns"},
    "rotate_kek": {},
    "demo": {},
    "reencrypt_columns": {"table": "target_table", "columns": "encrypt_columns"},
    "import_legacy": {"import-schemas": "schemas"},
}
VAR_REF = re.compile(r"\$\{var\.([A-Za-z0-9_]+)\}")


def resolved(target: str):
    # environ={} so the machine's BUNDLE_VAR_* never change what the tests see.
    return load_bundle(ROOT, target, environ={})


@pytest.fixture(scope="module")
def bundles():
    return {target: resolved(target) for target in TARGETS}


# --- the bundle's shape --------------------------------------------------------------------


def test_bundle_header_include_and_wheel_artifact():
    assert BUNDLE["bundle"]["name"] == "envelope_encryption"
    assert BUNDLE["include"] == ["resources/*.yml"]
    artifact = BUNDLE["artifacts"]["default"]
    assert artifact == {"type": "whl", "build": "uv build --wheel", "path": "."}
    # No typed model covers the root file, so guard its keys against typos by hand (the
    # CLI's documented top-level and target keys).
    assert set(BUNDLE) <= {"bundle", "include", "artifacts", "variables", "targets",
                           "resources", "workspace", "presets", "permissions", "run_as",
                           "sync", "experimental", "python", "scripts"}
    for target in BUNDLE["targets"].values():
        assert set(target) <= {"default", "mode", "presets", "workspace", "variables",
                               "resources", "run_as", "permissions", "artifacts", "bundle",
                               "git", "sync", "cluster_id", "compute_id"}
        assert set(target.get("presets", {})) <= {
            "name_prefix", "pipelines_development", "trigger_pause_status",
            "jobs_max_concurrent_runs", "tags", "source_linked_deployment",
            "artifacts_dynamic_version",
        }


def test_one_jobs_file_with_one_job_per_deployed_registered_job():
    # All jobs in one file: the blocks they share are YAML anchors, which do not cross files.
    assert [path.name for path in RESOURCE_FILES] == ["jobs.yml"]
    data = yaml.safe_load(RESOURCE_FILES[0].read_text())
    assert set(data) == {"deployment_settings", "wheel_environment", "resources"}
    assert list(data["resources"]) == ["jobs"]
    assert sorted(RAW_JOBS) == sorted(JOBS)
    registered = {job.name for job in registry.JOBS}
    for key, job in RAW_JOBS.items():
        (task,) = job["tasks"]
        entry_point = task["python_wheel_task"]["entry_point"]
        assert entry_point in registered, f"{key} calls {entry_point}, which is not a job"
        assert key == task["task_key"] == entry_point
        assert job["tags"] == {"project": "envelope_encryption", "job": key}


def test_shared_blocks_are_anchors_merged_the_way_the_cli_accepts():
    text = RESOURCE_FILES[0].read_text()
    # Top-level keys other than resources only hold an anchor: the CLI ignores such a block
    # (any other unknown key is a warning).
    for key, value in re.findall(r"^([A-Za-z_][\w-]*):[ \t]*(.*)$", text, flags=re.M):
        if key != "resources":
            assert value == f"&{key}", f"top-level {key} must be an anchor block, &{key}"
    # The CLI merges only an alias (or a list of them), never a mapping written after '<<:'.
    merges = re.findall(r"^[ \t]*<<:[ \t]*(.*)$", text, flags=re.M)
    assert merges and all(m == "*deployment_settings" for m in merges)
    assert len(merges) == len(JOBS)
    assert len(re.findall(r"^      environments: \*wheel_environment$", text, flags=re.M)) \
        == len(JOBS)


def test_targets_choose_their_backend_and_local_is_the_default():
    assert set(TARGETS) == {"local", "aws-kms", "aws-sm", "azure"}
    defaults = [name for name, target in BUNDLE["targets"].items() if target.get("default")]
    assert defaults == ["local"]
    for name, target in BUNDLE["targets"].items():
        assert target["variables"]["kek_backend"] == name
        assert target["presets"]["artifacts_dynamic_version"] is True
        if name != "local":
            assert target["workspace"]["host"].startswith("https://")
            for setting in ("catalog", "schemas", "metastore_id", "service_credential"):
                assert setting in target["variables"], f"{name} lacks a {setting} placeholder"
    assert BUNDLE["targets"]["aws-kms"]["variables"]["aws_region"]
    assert BUNDLE["targets"]["aws-sm"]["variables"]["aws_region"]
    assert BUNDLE["targets"]["azure"]["variables"]["azure_vault_url"].startswith("https://")


def test_targets_are_development_or_a_proper_production():
    for name, target in BUNDLE["targets"].items():
        mode = target.get("mode")
        assert mode in ("development", "production"), name
        if mode == "production":
            # Production needs an explicit shared root and a service principal owning the jobs.
            assert target["workspace"]["root_path"], name
            assert target["run_as"]["service_principal_name"], name


def test_every_variable_is_declared_once_with_a_description():
    for path in RESOURCE_FILES:
        assert "variables" not in yaml.safe_load(path.read_text()), path.name
    for name, spec in BUNDLE["variables"].items():
        assert isinstance(spec, dict) and spec.get("description", "").strip(), name
        assert "default" in spec, f"{name} needs a default so every target has a value"
    # Declared once: YAML would silently keep the last of two equal keys.
    text = (ROOT / "databricks.yml").read_text()
    variables_block = text.split("\nvariables:\n", 1)[1].split("\ntargets:\n", 1)[0]
    names = re.findall(r"^  ([a-z0-9_]+):\s*$", variables_block, flags=re.M)
    assert len(names) == len(set(names)) == len(BUNDLE["variables"])


def test_every_variable_used_is_declared_and_every_declared_one_is_used():
    used = set()
    for path in [ROOT / "databricks.yml", *RESOURCE_FILES]:
        used |= set(VAR_REF.findall(path.read_text()))
    declared = set(BUNDLE["variables"])
    assert used <= declared, f"undeclared: {sorted(used - declared)}"
    assert declared <= used, f"declared but never used: {sorted(declared - used)}"


def test_every_used_variable_has_a_value_in_every_target(bundles):
    used = set()
    for path in RESOURCE_FILES:
        used |= set(VAR_REF.findall(path.read_text()))
    for target, bundle in bundles.items():
        for name in used:
            assert isinstance(bundle.variables[name], str), (target, name)
        for job in bundle.jobs.values():
            assert "${" not in yaml.safe_dump(job), f"unresolved reference in {target}"


def test_backend_options_have_variables_and_reach_every_job():
    specs = all_option_specs()
    for spec in specs.values():
        variable = spec.name.replace("-", "_")
        assert variable in BUNDLE["variables"], f"no bundle variable for --{spec.name}"
        if spec.default:
            # The description names the built-in default the empty value stands for.
            assert spec.default in BUNDLE["variables"][variable]["description"], spec.name
    for key, job in RAW_JOBS.items():
        (task,) = job["tasks"]
        named = task["python_wheel_task"]["named_parameters"]
        expected = {name: f"${{var.{name.replace('-', '_')}}}"
                    for name in [*COMMON_SETTINGS, *specs]}
        expected.update({name: f"${{var.{var}}}" for name, var in JOB_SPECIFIC[key].items()})
        assert named == expected, key


@pytest.mark.parametrize("target", TARGETS)
def test_every_job_gets_every_setting_in_every_target(bundles, target):
    bundle = bundles[target]
    settings = [*COMMON_SETTINGS, *all_option_specs()]
    for key in JOBS:
        (task,) = bundle.tasks(key)
        given = dict(p.removeprefix("--").split("=", 1) for p in task.parameters)
        expected = {name: bundle.variables[name.replace("-", "_")] for name in settings}
        expected.update({name: bundle.variables[var] for name, var in JOB_SPECIFIC[key].items()})
        assert given == expected, (target, key)


def test_jobs_run_the_wheel_on_serverless_one_run_at_a_time():
    for key, job in RAW_JOBS.items():
        assert job["max_concurrent_runs"] == 1
        assert job["tags"]["project"] == "envelope_encryption"
        environments = {env["environment_key"]: env["spec"] for env in job["environments"]}
        for task in job["tasks"]:
            assert task["python_wheel_task"]["package_name"] == PYPROJECT["project"]["name"]
            spec = environments[task["environment_key"]]
            assert spec["environment_version"] == "2"
            assert spec["dependencies"] == ["../dist/*.whl"], key
    # Paths in resources/ are relative to that folder: ../dist is the build's output folder.
    assert (ROOT / "resources" / ".." / "dist").resolve() == ROOT / "dist"


def test_encrypt_job_is_scheduled_and_the_others_run_on_demand(bundles):
    for target, bundle in bundles.items():
        schedule = bundle.jobs["encrypt_columns"]["schedule"]
        # UNPAUSED as written; development mode pauses it, production keeps it running.
        assert schedule["pause_status"] == "UNPAUSED"
        assert schedule["timezone_id"] == "UTC"
        fields = schedule["quartz_cron_expression"].split()
        assert len(fields) in (6, 7) and "?" in fields[3:6], target
        assert schedule["quartz_cron_expression"] == bundle.variables["encrypt_schedule"]
        for key in set(JOBS) - {"encrypt_columns"}:
            assert "schedule" not in bundle.jobs[key] and "trigger" not in bundle.jobs[key]


# --- typed models, entry points, parsers, wheel --------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_job_loads_with_the_typed_models(bundles, target):
    for key, job in bundles[target].jobs.items():
        model = Job.from_dict(job)
        assert model.as_dict()["tasks"][0]["python_wheel_task"]["entry_point"] == key


def test_the_typed_models_reject_an_unknown_field(bundles):
    job = copy.deepcopy(bundles["local"].jobs["kek_setup"])
    job["tasks"][0]["python_wheel_task"]["named_parametres"] = {"catalog": "main"}
    with pytest.raises(ValueError, match="Unexpected field"):
        Job.from_dict(job)
    job = copy.deepcopy(bundles["local"].jobs["kek_setup"])
    job["environments"][0]["spec"]["dependency"] = ["../dist/*.whl"]
    with pytest.raises(ValueError, match="Unexpected field"):
        Job.from_dict(job)


def test_every_entry_point_is_a_registered_job_and_a_project_script(bundles):
    for key in JOBS:
        (task,) = bundles["local"].tasks(key)
        job = registry.job(task.entry_point)
        assert SCRIPTS[task.entry_point] == job.entry_point
        assert callable(job.load())


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("job", JOBS)
def test_job_parameters_are_accepted_by_the_job_parser(bundles, target, job):
    (task,) = bundles[target].tasks(job)
    args = registry.job(task.entry_point).module().build_parser().parse_args(task.parameters)
    assert args.kek_backend == target
    if target == "local":
        # The local target carries real values, not placeholders: they must make Settings.
        settings = settings_from_args(args)
        assert settings.backend == "local" and settings.schemas == ("default",)


def test_the_wheel_builds_with_the_package_and_entry_points(tmp_path):
    # The artifact's own command, kept offline: the build backend comes from this venv.
    result = subprocess.run(
        [sys.executable, "-m", "uv", "build", "--wheel", "--no-build-isolation", "--offline",
         "--python", sys.executable, "--out-dir", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.startswith("envelope_encryption-")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        console = archive.read(entry_points).decode()
    for module in ("__init__", "config", "errors", "secret", "jobs/bundle", "kek/base",
                   "keyring/keyring"):
        assert f"envelope_encryption/{module}.py" in names
    assert not any(n.startswith(("tests/", "notebooks/")) for n in names)
    for name, target in SCRIPTS.items():
        assert f"{name} = {target}" in console
