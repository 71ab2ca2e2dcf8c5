"""The bundle's YAML (databricks.yml, resources/jobs.yml) against the jobs it deploys (the
dashboard of resources/dashboards.yml is checked in test_dashboard.py).

The Databricks CLI cannot run here, so the YAML is checked the way the CLI would see it:
resolved for every target by ``envelope_encryption.jobs.bundle`` and loaded with the typed
models of ``databricks-bundles`` (which reject unknown fields at any depth), and every job's
parameters are parsed by the job's own argument parser. The jobs are those of
``envelope_encryption.jobs.registry`` that are deployed.
"""

from __future__ import annotations

import copy
import re
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
RESOURCES = {path.name: yaml.safe_load(path.read_text()) for path in RESOURCE_FILES}
JOBS_FILE = ROOT / "resources" / "jobs.yml"
# Every job definition as written: those of every target, and those of one target only.
RAW_JOBS = {
    key: job
    for data in [RESOURCES["jobs.yml"]]
    for jobs in [data["resources"]["jobs"],
                 *(t["resources"]["jobs"] for t in (data.get("targets") or {}).values())]
    for key, job in jobs.items()
}
TARGETS = list(BUNDLE["targets"])
JOBS = [job.name for job in registry.JOBS if job.deployed]
# Jobs deployed to one target only: the demo runs locally.
TARGET_ONLY_JOBS = {"demo": "local"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]
COMMON_SETTINGS = ["kek-backend", "catalog", "schemas", "metastore-id", "crypto-schema",
                   "keyring-table", "service-credential"]
# Options whose value is not a deployment variable but a dynamic value of each run.
RUN_VALUES = {"run-id": "{{job.run_id}}"}
# What each job's task receives besides the deployment settings: parameter -> value.
JOB_SPECIFIC = {
    "kek_setup": {"sql-functions": "${var.sql_functions}",
                  "sql-non-member": "${var.sql_non_member}",
                  "sql-decrypt": "${var.sql_decrypt}", "sql-udf-wheel": "${var.sql_udf_wheel}",
                  "sql-job-group": "${var.sql_job_group}",
                  "sql-writer-group": "${var.sql_writer_group}",
                  "sql-crypto-catalog": "${var.sql_crypto_catalog}",
                  "equality-domains": "${var.equality_domains}",
                  "wheel-source": "${workspace.file_path}/dist"},
    "dek_generation": {"schema": "{{job.parameters.schema}}",
                       "domain": "{{job.parameters.domain}}"},
    "encrypt_columns": {"source": "{{job.parameters.source}}",
                        "source-format": "{{job.parameters.source_format}}",
                        "checkpoint-location": "{{job.parameters.checkpoint_location}}",
                        "source-schema": "{{job.parameters.source_schema}}",
                        "csv-line-separator": "{{job.parameters.csv_line_separator}}",
                        "target-table": "{{job.parameters.target_table}}",
                        "columns": "{{job.parameters.columns}}",
                        "id-column": "{{job.parameters.id_column}}",
                        "mask": "{{job.parameters.mask}}",
                        "row-key-column": "{{job.parameters.row_key_column}}",
                        "deterministic-columns": "{{job.parameters.deterministic_columns}}",
                        "blind-index-columns": "{{job.parameters.blind_index_columns}}",
                        "subject-column": "{{job.parameters.subject_column}}",
                        "equality-domains": "${var.equality_domains}",
                        "sql-crypto-catalog": "${var.sql_crypto_catalog}"},
    "rotate_kek": {"rewrap-only": "{{job.parameters.rewrap_only}}"},
    "demo": {},
    # The masks give the cells unchanged to this group: the jobs that read cells need it.
    "reencrypt_columns": {"table": "{{job.parameters.table}}",
                          "columns": "{{job.parameters.columns}}",
                          "row-key-column": "{{job.parameters.row_key_column}}",
                          "deterministic-columns": "{{job.parameters.deterministic_columns}}",
                          "blind-index-columns": "{{job.parameters.blind_index_columns}}",
                          "equality-domains": "${var.equality_domains}",
                          "subject-column": "{{job.parameters.subject_column}}",
                          "sql-job-group": "${var.sql_job_group}"},
    "retire_dek": {"schema": "{{job.parameters.schema}}", "domain": "{{job.parameters.domain}}",
                   "sql-job-group": "${var.sql_job_group}",
                   "version": "{{job.parameters.version}}",
                   "tables": "{{job.parameters.tables}}", "force": "{{job.parameters.force}}"},
    "dek_state": {"schema": "{{job.parameters.schema}}", "domain": "{{job.parameters.domain}}",
                  "sql-job-group": "${var.sql_job_group}",
                  "version": "{{job.parameters.version}}", "to": "{{job.parameters.to}}",
                  "tables": "{{job.parameters.tables}}", "force": "{{job.parameters.force}}",
                  "confirm": "{{job.parameters.confirm}}"},
    "purge_residue": {"retain-hours": "{{job.parameters.retain_hours}}",
                      "confirm-short-retention": "{{job.parameters.confirm_short_retention}}",
                      "tables": "{{job.parameters.tables}}"},
    "erase_subject": {"schema": "{{job.parameters.schema}}",
                      "subject": "{{job.parameters.subject}}",
                      "subject-hash": "{{job.parameters.subject_hash}}"},
    "status": {"tables": "{{job.parameters.tables}}", "format": "{{job.parameters.format}}",
               "write-inventory": "{{job.parameters.write_inventory}}",
               "sql-job-group": "${var.sql_job_group}"},
    "import_legacy": {"import-schemas": "{{job.parameters.import_schemas}}",
                      "dry-run": "{{job.parameters.dry_run}}",
                      "legacy-key": "{{job.parameters.legacy_key}}"},
    "preflight": {"admin-groups": "${var.admin_groups}", "sql-udf-wheel": "${var.sql_udf_wheel}",
                  "sql-job-group": "${var.sql_job_group}",
                  "sql-crypto-catalog": "${var.sql_crypto_catalog}",
                  "equality-domains": "${var.equality_domains}",
                  "stage": "{{job.parameters.stage}}"},
}
# Job-level parameters (Jobs API 2.1) and their defaults: the per-run inputs.
JOB_PARAMETERS = {
    "kek_setup": {},
    "dek_generation": {"schema": "${var.new_dek_schema}", "domain": ""},
    "encrypt_columns": {"source": "${var.source_path}", "source_format": "${var.source_format}",
                        "checkpoint_location": "${var.checkpoint_location}",
                        "source_schema": "${var.source_schema}",
                        "csv_line_separator": "${var.csv_line_separator}",
                        "target_table": "${var.target_table}",
                        "columns": "${var.encrypt_columns}", "id_column": "${var.id_column}",
                        "mask": "${var.mask_columns}", "row_key_column": "${var.row_key_column}",
                        "deterministic_columns": "${var.deterministic_columns}",
                        "blind_index_columns": "${var.blind_index_columns}",
                        "subject_column": ""},
    "rotate_kek": {"rewrap_only": "false"},
    "demo": {},
    "reencrypt_columns": {"table": "${var.target_table}", "columns": "${var.encrypt_columns}",
                          "row_key_column": "${var.row_key_column}",
                          "deterministic_columns": "${var.deterministic_columns}",
                          "blind_index_columns": "${var.blind_index_columns}",
                          "subject_column": ""},
    "retire_dek": {"schema": "${var.new_dek_schema}", "domain": "", "version": "",
                   "tables": "${var.target_table}", "force": "false"},
    "dek_state": {"schema": "${var.new_dek_schema}", "domain": "", "version": "", "to": "",
                  "tables": "",
                  "force": "false", "confirm": ""},
    "purge_residue": {"retain_hours": "", "confirm_short_retention": "", "tables": ""},
    "erase_subject": {"schema": "${var.new_dek_schema}", "subject": "", "subject_hash": ""},
    "status": {"tables": "${var.target_table}", "format": "text", "write_inventory": "true"},
    "import_legacy": {"import_schemas": "${var.schemas}", "dry_run": "false",
                      "legacy_key": ""},
    "preflight": {"stage": "after"},
}
# Parameters a run must give (no usable default).
REQUIRED_PARAMS = {"retire_dek": {"version": "1"}, "dek_state": {"version": "1", "to": "retired"},
                   "purge_residue": {"retain_hours": "168"}, "erase_subject": {"subject": "42"}}
VAR_REF = re.compile(r"\$\{var\.([A-Za-z0-9_]+)\}")
JOB_PARAM_REF = re.compile(r"\{\{job\.parameters\.([A-Za-z0-9_]+)\}\}")


def expected_jobs(target: str) -> list[str]:
    return sorted(j for j in JOBS if TARGET_ONLY_JOBS.get(j, target) == target)


def expand(bundle, job: str, text: str) -> str:
    """What the CLI and a run make of a parameter written in the YAML, for one target."""

    def deployed(value: str) -> str:
        value = VAR_REF.sub(lambda m: bundle.variables[m.group(1)], value)
        return value.replace("${workspace.file_path}", str(bundle.root))

    defaults = {name: deployed(value) for name, value in JOB_PARAMETERS[job].items()}
    return JOB_PARAM_REF.sub(lambda m: defaults[m.group(1)], deployed(text))


def resolved(target: str):
    # environ={} so the machine's BUNDLE_VAR_* never change what the tests see.
    return load_bundle(ROOT, target, environ={})


@pytest.fixture(scope="module")
def bundles():
    return {target: resolved(target) for target in TARGETS}


# --- the bundle's shape --------------------------------------------------------------------


def test_bundle_header_include_and_wheel_artifact():
    assert BUNDLE["bundle"]["name"] == "envelope_encryption"
    # The oldest CLI with dataset_catalog/dataset_schema of dashboards (v0.281.0); see the
    # comment there.
    assert BUNDLE["bundle"]["databricks_cli_version"] == ">= 0.281.0"
    assert BUNDLE["include"] == ["resources/*.yml"]
    artifact = BUNDLE["artifacts"]["default"]
    # --clear: only this build's wheel stays in dist/, so one wheel is deployed.
    assert artifact == {"type": "whl", "build": "uv build --wheel --clear", "path": "."}
    # dist/ is git-ignored: the wheel reaches ${workspace.file_path}/dist only by include.
    assert BUNDLE["sync"] == {"include": ["dist/*.whl"]}
    assert "dist/" in (ROOT / ".gitignore").read_text().split()
    # No typed model covers the root file, so guard its keys against typos by hand (the
    # CLI's documented top-level and target keys).
    assert set(BUNDLE) <= {"bundle", "include", "artifacts", "variables", "targets",
                           "resources", "workspace", "presets", "permissions", "run_as",
                           "sync", "experimental", "python", "scripts"}
    assert set(BUNDLE["bundle"]) <= {"name", "databricks_cli_version", "cluster_id",
                                     "compute_id", "git", "deployment", "uuid", "engine"}
    for target in BUNDLE["targets"].values():
        assert set(target) <= {"default", "mode", "presets", "workspace", "variables",
                               "resources", "run_as", "permissions", "artifacts", "bundle",
                               "git", "sync", "cluster_id", "compute_id"}
        assert set(target.get("presets", {})) <= {
            "name_prefix", "pipelines_development", "trigger_pause_status",
            "jobs_max_concurrent_runs", "tags", "source_linked_deployment",
            "artifacts_dynamic_version",
        }


def test_production_advice_uses_a_principal_owned_root_path():
    header = (ROOT / "databricks.yml").read_text().split("\nbundle:\n", 1)[0]
    advice = re.search(r"^#\s+root_path: (\S+)$", header, flags=re.M).group(1)
    assert advice.startswith("/Workspace/Users/<service-principal-application-id>/")
    # /Workspace/Shared is writable by every user: it is named only as what not to use.
    assert "root_path: /Workspace/Shared" not in header
    assert "never /Workspace/Shared" in header


def test_one_jobs_file_with_one_job_per_deployed_registered_job():
    # All jobs in one file: the blocks they share are YAML anchors, which do not cross files.
    # The other resource file holds the dashboard only.
    assert list(RESOURCES) == ["dashboards.yml", "jobs.yml"]
    assert list(RESOURCES["dashboards.yml"]) == ["resources"]
    assert list(RESOURCES["dashboards.yml"]["resources"]) == ["dashboards"]
    data = RESOURCES["jobs.yml"]
    assert set(data) == {"deployment_settings", "wheel_environment", "resources", "targets"}
    assert list(data["resources"]) == ["jobs"]
    # Target-only jobs are declared under their target in the same file (an included file
    # may carry targets.<t>.resources; the CLI merges it like the root file's).
    for key, target in TARGET_ONLY_JOBS.items():
        assert list(data["targets"][target]) == ["resources"]
        assert key in data["targets"][target]["resources"]["jobs"]
        assert key not in data["resources"]["jobs"]
    assert set(data["targets"]) <= set(TARGETS)
    assert sorted(RAW_JOBS) == sorted(JOBS)
    registered = {job.name for job in registry.JOBS}
    for key, job in RAW_JOBS.items():
        (task,) = job["tasks"]
        entry_point = task["python_wheel_task"]["entry_point"]
        assert entry_point in registered, f"{key} calls {entry_point}, which is not a job"
        assert key == task["task_key"] == entry_point
        assert job["tags"] == {"project": "envelope_encryption", "job": key}


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_gets_its_jobs(bundles, target):
    assert sorted(bundles[target].jobs) == expected_jobs(target)
    if target != "local":
        assert "demo" not in bundles[target].jobs


def test_shared_blocks_are_anchors_merged_the_way_the_cli_accepts():
    text = JOBS_FILE.read_text()
    # Top-level keys other than resources and targets only hold an anchor: the CLI ignores
    # such a block (any other unknown key is a warning).
    for key, value in re.findall(r"^([A-Za-z_][\w-]*):[ \t]*(.*)$", text, flags=re.M):
        if key not in ("resources", "targets"):
            assert value == f"&{key}", f"top-level {key} must be an anchor block, &{key}"
    # The CLI merges only an alias (or a list of them), never a mapping written after '<<:'.
    merges = re.findall(r"^[ \t]*<<:[ \t]*(.*)$", text, flags=re.M)
    assert merges and all(m == "*deployment_settings" for m in merges)
    assert len(merges) == len(JOBS)
    assert len(re.findall(r"^ +environments: \*wheel_environment$", text, flags=re.M)) \
        == len(JOBS)


def test_targets_choose_their_backend_and_none_is_the_default():
    assert set(TARGETS) == {"local", "aws-kms", "aws-sm", "azure"}
    # No default target: a plain `databricks bundle deploy` must name one, so the local
    # development target (KEK file, throwaway folder) never reaches a workspace unasked.
    defaults = [name for name, target in BUNDLE["targets"].items() if target.get("default")]
    assert defaults == []
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
        if spec.name in RUN_VALUES:
            continue
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
        expected.update(RUN_VALUES)
        expected.update(JOB_SPECIFIC[key])
        assert named == expected, key


def test_per_run_inputs_are_job_parameters_referenced_by_the_task():
    for key, job in RAW_JOBS.items():
        declared = {p["name"]: p["default"] for p in job.get("parameters") or []}
        assert declared == JOB_PARAMETERS[key], key
        (task,) = job["tasks"]
        referenced = set()
        for value in task["python_wheel_task"]["named_parameters"].values():
            referenced |= set(JOB_PARAM_REF.findall(str(value)))
            # A dynamic value reference stands alone: the whole parameter is the job's.
            if "{{" in str(value) and value not in RUN_VALUES.values():
                assert JOB_PARAM_REF.fullmatch(value), (key, value)
        assert referenced == set(declared), key
        # Job parameter names: letters, digits and '_' (dashes stay in the entry point's
        # own parameter names).
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in declared), key


@pytest.mark.parametrize("target", TARGETS)
def test_every_job_gets_every_setting_in_every_target(bundles, target):
    bundle = bundles[target]
    settings = [*COMMON_SETTINGS, *all_option_specs()]
    for key in expected_jobs(target):
        (task,) = bundle.tasks(key)
        given = dict(p.removeprefix("--").split("=", 1) for p in task.parameters)
        expected = {name: bundle.variables[name.replace("-", "_")] for name in settings
                    if name not in RUN_VALUES}
        expected["run-id"] = "local"  # what Bundle.tasks resolves {{job.run_id}} to by default
        expected.update({name: expand(bundle, key, value)
                         for name, value in JOB_SPECIFIC[key].items()})
        assert given == expected, (target, key)


def test_params_override_the_job_parameters_of_one_run(bundles):
    bundle = bundles["aws-kms"]
    (task,) = bundle.tasks("dek_generation", {"schema": "hr"})
    assert "--schema=hr" in task.parameters
    (task,) = bundle.tasks("status", {"tables": "hr.a,hr.b"})
    assert "--tables=hr.a,hr.b" in task.parameters
    (task,) = bundle.tasks("kek_setup")
    assert f"--wheel-source={ROOT}/dist" in task.parameters


def test_jobs_run_the_wheel_on_serverless_one_run_at_a_time():
    # The serverless environment version the CLI's own templates use
    # (libs/template/templates/default/library/versions.tmpl).
    for key, job in RAW_JOBS.items():
        assert job["max_concurrent_runs"] == 1
        assert job["tags"]["project"] == "envelope_encryption"
        environments = {env["environment_key"]: env["spec"] for env in job["environments"]}
        for task in job["tasks"]:
            assert task["python_wheel_task"]["package_name"] == PYPROJECT["project"]["name"]
            spec = environments[task["environment_key"]]
            assert spec["environment_version"] == "4"
            assert spec["dependencies"] == ["../dist/*.whl"], key
    # Paths in resources/ are relative to that folder: ../dist is the build's output folder.
    assert (ROOT / "resources" / ".." / "dist").resolve() == ROOT / "dist"


def cli_pause_status(schedule: dict, mode: str | None, presets: dict) -> str:
    """The pause status a deployed schedule ends up with, as the Databricks CLI decides it.

    bundle/config/mutator/resourcemutator/apply_target_mode.go: development mode sets the
    preset trigger_pause_status to PAUSED unless the target sets it. apply_presets.go: the
    preset is written into a schedule only when its pause_status is empty. What stays
    empty is the Jobs API's default, UNPAUSED.
    """
    preset = presets.get("trigger_pause_status", "")
    if mode == "development" and not preset:
        preset = "PAUSED"
    status = schedule.get("pause_status") or ""
    if preset and not status:
        status = preset
    return status or "UNPAUSED"


def production(target: str) -> dict:
    """A cloud target changed for production as the header of databricks.yml says."""
    config = copy.deepcopy(BUNDLE["targets"][target])
    config["mode"] = "production"
    return config


def test_encrypt_job_is_scheduled_and_the_others_run_on_demand(bundles):
    for target, bundle in bundles.items():
        schedule = bundle.jobs["encrypt_columns"]["schedule"]
        # No pause_status: the CLI can then pause it in development mode.
        assert "pause_status" not in schedule
        assert schedule["timezone_id"] == "UTC"
        fields = schedule["quartz_cron_expression"].split()
        assert len(fields) in (6, 7) and "?" in fields[3:6], target
        assert schedule["quartz_cron_expression"] == bundle.variables["encrypt_schedule"]
        for key in set(bundle.jobs) - {"encrypt_columns"}:
            assert "schedule" not in bundle.jobs[key] and "trigger" not in bundle.jobs[key]


@pytest.mark.parametrize("target", TARGETS)
def test_schedules_pause_in_development_and_run_in_production(bundles, target):
    schedule = bundles[target].jobs["encrypt_columns"]["schedule"]
    config = BUNDLE["targets"][target]
    assert config["mode"] == "development"
    assert cli_pause_status(schedule, config["mode"], config.get("presets", {})) == "PAUSED"
    if target != "local":
        prod = production(target)
        assert cli_pause_status(schedule, prod["mode"], prod.get("presets", {})) == "UNPAUSED"


def test_the_cli_rule_keeps_a_written_pause_status():
    # What went wrong before: UNPAUSED written in the YAML survives development mode.
    assert cli_pause_status({"pause_status": "UNPAUSED"}, "development", {}) == "UNPAUSED"
    assert cli_pause_status({}, "development", {}) == "PAUSED"
    assert cli_pause_status({}, "development", {"trigger_pause_status": "UNPAUSED"}) \
        == "UNPAUSED"
    assert cli_pause_status({}, "production", {}) == "UNPAUSED"


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
        target = TARGET_ONLY_JOBS.get(key, "local")
        (task,) = bundles[target].tasks(key, REQUIRED_PARAMS.get(key, {}))
        job = registry.job(task.entry_point)
        assert SCRIPTS[task.entry_point] == job.entry_point
        assert callable(job.load())


@pytest.mark.parametrize(("target", "job"),
                         [(t, j) for t in TARGETS for j in expected_jobs(t)])
def test_job_parameters_are_accepted_by_the_job_parser(bundles, target, job):
    (task,) = bundles[target].tasks(job, REQUIRED_PARAMS.get(job, {}))
    args = registry.job(task.entry_point).module().build_parser().parse_args(task.parameters)
    assert args.kek_backend == target
    if target == "local":
        # The local target carries real values, not placeholders: they must make Settings.
        settings = settings_from_args(args)
        assert settings.backend == "local" and settings.schemas == ("default",)


def test_the_wheel_builds_with_the_package_and_entry_points(built_wheel):
    wheel = built_wheel
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
