"""The bundle (databricks.yml, resources/, notebooks/) and its loader for local runs.

The Databricks CLI cannot run here, so the YAML is checked the way the CLI would see it:
resolved for every target by ``envelope_encryption.jobs.bundle`` and loaded with the typed
models of ``databricks-bundles`` (which reject unknown fields at any depth), and every job's
parameters are parsed by the job's own argument parser.
"""

from __future__ import annotations

import copy
import importlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from databricks.bundles.jobs import Job

from envelope_encryption.config import all_option_specs, settings_from_args
from envelope_encryption.errors import ConfigError
from envelope_encryption.jobs.bundle import (
    ROOT_ENV,
    Task,
    find_bundle_root,
    load_bundle,
    parse_var_overrides,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = yaml.safe_load((ROOT / "databricks.yml").read_text())
RESOURCE_FILES = sorted((ROOT / "resources").glob("*.yml"))
RAW_JOBS = {
    key: job
    for path in RESOURCE_FILES
    for key, job in yaml.safe_load(path.read_text())["resources"]["jobs"].items()
}
TARGETS = list(BUNDLE["targets"])
JOBS = ["kek_setup", "dek_generation", "encrypt_columns", "rotate_kek", "demo", "reencrypt_columns",
        "import_legacy"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]
COMMON_SETTINGS = ["kek-backend", "catalog", "schemas", "metastore-id", "crypto-schema",
                   "keyring-table", "service-credential"]
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


def write_bundle(root: Path, main: str, **resources: str) -> Path:
    (root / "databricks.yml").write_text(main)
    (root / "resources").mkdir(exist_ok=True)
    for name, text in resources.items():
        (root / "resources" / f"{name}.yml").write_text(text)
    return root


def wheel_job(key: str, tasks: str) -> str:
    return f"resources:\n  jobs:\n    {key}:\n      name: {key}\n      tasks:\n{tasks}"


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


def test_one_job_per_resource_file_named_after_it():
    assert sorted(RAW_JOBS) == sorted(JOBS)
    for path in RESOURCE_FILES:
        data = yaml.safe_load(path.read_text())
        assert set(data) == {"resources"}, f"{path.name}: only resources belong there"
        assert list(data["resources"]) == ["jobs"]
        (key,) = data["resources"]["jobs"]
        assert path.name == f"{key}.job.yml"


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


def test_every_entry_point_is_a_project_script_that_imports(bundles):
    for key in JOBS:
        (task,) = bundles["local"].tasks(key)
        assert task.entry_point in SCRIPTS, f"{task.entry_point} is not in [project.scripts]"
        module_name, _, function = SCRIPTS[task.entry_point].partition(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, function)), SCRIPTS[task.entry_point]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("job", JOBS)
def test_job_parameters_are_accepted_by_the_job_parser(bundles, target, job):
    (task,) = bundles[target].tasks(job)
    module = importlib.import_module(SCRIPTS[task.entry_point].partition(":")[0])
    args = module.build_parser().parse_args(task.parameters)
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


# --- the loader ----------------------------------------------------------------------------


def test_local_target_parameters_in_declaration_order(bundles):
    (task,) = bundles["local"].tasks("encrypt_columns")
    assert task == Task(
        key="encrypt_columns", package_name="envelope_encryption", entry_point="encrypt_columns",
        parameters=task.parameters,
    )
    assert task.parameters[:3] == ["--kek-backend=local", "--catalog=main", "--schemas=default"]
    assert task.parameters[-6:] == [
        "--source=.envelope/landing/customers", "--source-format=csv",
        "--target-table=default.customers", "--columns=name,email,ssn,birth_date,salary",
        "--id-column=id", "--mask=false",
    ]
    assert bundles["local"].mode == "development"
    assert load_bundle(ROOT, None, environ={}).target == "local"


def test_precedence_var_over_env_over_target_over_default():
    environ = {"BUNDLE_VAR_catalog": "from_env", "BUNDLE_VAR_schemas": "env_schema"}
    overrides = {"catalog": "from_var"}
    bundle = load_bundle(ROOT, "aws-kms", overrides, environ)
    assert bundle.variables["catalog"] == "from_var"  # --var beats the environment
    assert bundle.variables["schemas"] == "env_schema"  # the environment beats the target
    assert bundle.variables["kek_backend"] == "aws-kms"  # the target beats the default
    assert bundle.variables["crypto_schema"] == "crypto"  # the default
    (task,) = bundle.tasks("kek_setup")
    assert "--catalog=from_var" in task.parameters
    assert "--schemas=env_schema" in task.parameters


def test_precedence_on_a_small_bundle(tmp_path):
    write_bundle(tmp_path, """
bundle: {name: tiny}
include: [resources/*.yml]
variables:
  x: {description: x, default: default}
  y: {description: y, default: default}
targets:
  t:
    default: true
    variables: {x: target, y: {default: target-long-form}}
""", job=wheel_job("j", """        - task_key: a
          python_wheel_task:
            package_name: p
            entry_point: e
            named_parameters: {x: "${var.x}", where: "${bundle.name}/${bundle.target}"}
"""))
    assert load_bundle(tmp_path, environ={}).variables == {"x": "target", "y": "target-long-form"}
    env = {"BUNDLE_VAR_x": "env"}
    assert load_bundle(tmp_path, "t", environ=env).variables["x"] == "env"
    assert load_bundle(tmp_path, "t", {"x": "var"}, env).variables["x"] == "var"
    (task,) = load_bundle(tmp_path, "t", environ={}).tasks("j")
    assert task.parameters == ["--x=target", "--where=tiny/t"]


def test_variables_can_refer_to_variables_and_keep_yaml_scalars_as_text(tmp_path):
    write_bundle(tmp_path, """
bundle: {name: tiny}
variables:
  catalog: {description: c, default: main}
  path: {description: p, default: "/Volumes/${var.catalog}/raw"}
  flag: {description: f, default: true}
  size: {description: s, default: 3072}
  settings:
    description: complex
    type: complex
    default: {catalog: "${var.catalog}", sizes: [1, 2]}
resources:
  jobs:
    j:
      name: "${var.settings.catalog}"
      tasks:
        - task_key: a
          python_wheel_task:
            package_name: p
            entry_point: e
            parameters: ["${var.path}", "${var.flag}", "--size=${var.size}"]
""")
    bundle = load_bundle(tmp_path, environ={})
    assert bundle.variables["path"] == "/Volumes/main/raw"
    assert bundle.variables["settings"] == {"catalog": "main", "sizes": [1, 2]}
    assert bundle.jobs["j"]["name"] == "main"
    assert bundle.tasks("j")[0].parameters == ["/Volumes/main/raw", "true", "--size=3072"]


def test_tasks_come_in_dependency_order_with_ties_in_declaration_order(tmp_path):
    def task(key: str, deps: list[str]) -> str:
        depends = "".join(f"\n            - task_key: {d}" for d in deps)
        return (f"        - task_key: {key}\n"
                + (f"          depends_on:{depends}\n" if deps else "")
                + f"          python_wheel_task: {{package_name: p, entry_point: {key}}}\n")

    write_bundle(tmp_path, "bundle: {name: tiny}\ninclude: [resources/*.yml]\n",
                 job=wheel_job("j", task("c", ["a", "b"]) + task("b", []) + task("d", ["c"])
                               + task("a", [])))
    assert [t.key for t in load_bundle(tmp_path, environ={}).tasks("j")] == ["b", "a", "c", "d"]

    write_bundle(tmp_path, "bundle: {name: tiny}\ninclude: [resources/*.yml]\n",
                 job=wheel_job("j", task("a", ["b"]) + task("b", ["a"])))
    with pytest.raises(ConfigError, match="cycle"):
        load_bundle(tmp_path, environ={}).tasks("j")


def test_target_resource_overrides_merge_tasks_by_key(tmp_path):
    write_bundle(tmp_path, """
bundle: {name: tiny}
include: [resources/*.yml]
targets:
  t:
    resources:
      jobs:
        j:
          tasks:
            - task_key: a
              python_wheel_task: {named_parameters: {x: "2"}}
""", job=wheel_job("j", """        - task_key: a
          python_wheel_task: {package_name: p, entry_point: e, named_parameters: {x: "1"}}
"""))
    (task,) = load_bundle(tmp_path, environ={}).tasks("j")
    assert (task.entry_point, task.parameters) == ("e", ["--x=2"])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: load_bundle(ROOT, "prod", environ={}), "unknown target 'prod': choose one of"),
        (lambda: resolved("local").tasks("nightly"), "unknown job 'nightly'"),
        (lambda: load_bundle(ROOT, "local", {"katalog": "x"}, {}), "undeclared variable"),
    ],
)
def test_clear_errors_on_the_real_bundle(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


@pytest.mark.parametrize(
    ("variables", "job_name", "message"),
    [
        ("x: {description: no value}", "j", "no value assigned to required variable 'x'"),
        ("x: {description: d, lookup: {cluster: c}}", "j",
         "workspace lookup, which a local run cannot resolve"),
        ("x: {description: d, default: '${var.y}'}\n  y: {description: d, default: '${var.x}'}",
         "j", "cycle: x -> y -> x"),
        ("x: {description: d, default: v}", "${workspace.file_path}/j",
         r"resources.jobs.j.name: \$\{workspace.file_path\} cannot be resolved outside"),
        ("x: {description: d, default: v}", "${var.nope}", "unknown variable 'nope'"),
    ],
)
def test_clear_errors_on_small_bundles(tmp_path, variables, job_name, message):
    write_bundle(tmp_path, f"""
bundle: {{name: tiny}}
variables:
  {variables}
resources:
  jobs:
    j:
      name: "{job_name}"
      tasks: []
""")
    with pytest.raises(ConfigError, match=message):
        load_bundle(tmp_path, environ={})


def test_a_variable_without_value_can_be_given_by_var_or_environment(tmp_path):
    write_bundle(tmp_path, "bundle: {name: tiny}\nvariables:\n  x: {description: needed}\n")
    assert load_bundle(tmp_path, overrides={"x": "1"}, environ={}).variables == {"x": "1"}
    assert load_bundle(tmp_path, environ={"BUNDLE_VAR_x": "2"}).variables == {"x": "2"}
    assert load_bundle(tmp_path, environ={}, overrides={"x": ""}).variables == {"x": ""}


def test_non_wheel_tasks_and_duplicate_jobs_are_refused(tmp_path):
    write_bundle(tmp_path, "bundle: {name: tiny}\ninclude: [resources/*.yml]\n",
                 job=wheel_job("j", "        - task_key: nb\n"
                               "          notebook_task: {notebook_path: ../n.py}\n"))
    with pytest.raises(ConfigError, match="not a python_wheel_task"):
        load_bundle(tmp_path, environ={}).tasks("j")
    (tmp_path / "resources" / "again.yml").write_text(
        wheel_job("j", "        - task_key: a\n"
                  "          python_wheel_task: {package_name: p, entry_point: e}\n"))
    with pytest.raises(ConfigError, match=r"resources.jobs.j is defined twice"):
        load_bundle(tmp_path, environ={})


def test_parse_var_overrides():
    assert parse_var_overrides(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ConfigError, match="name=value"):
        parse_var_overrides(["novalue"])


def test_find_bundle_root(tmp_path, monkeypatch):
    monkeypatch.delenv(ROOT_ENV, raising=False)
    assert find_bundle_root(ROOT / "src" / "envelope_encryption" / "jobs") == ROOT
    assert find_bundle_root(ROOT) == ROOT
    with pytest.raises(ConfigError, match=r"no databricks\.yml"):
        find_bundle_root(tmp_path)
    monkeypatch.setenv(ROOT_ENV, str(ROOT))
    assert find_bundle_root(tmp_path) == ROOT
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=ROOT_ENV):
        find_bundle_root()


# --- notebooks -----------------------------------------------------------------------------

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


def test_notebooks_are_databricks_source_notebooks_calling_the_wheel():
    names = [path.name for path in NOTEBOOKS]
    assert names == ["01_setup.py", "02_user_verification.py", "03_new_dek.py"]
    for path in NOTEBOOKS:
        text = path.read_text()
        assert text.startswith("# Databricks notebook source\n"), path.name
        assert "\n# COMMAND ----------\n" in text
        compile(text, str(path), "exec")
        assert "dbutils.widgets.text(" in text
    assert "kek_setup.run(settings, spark)" in NOTEBOOKS[0].read_text()
    assert "is_account_group_member(:group)" in NOTEBOOKS[1].read_text()
    assert "dek_generation.run(settings, spark," in NOTEBOOKS[2].read_text()


class Widgets:
    """Stands in for ``dbutils.widgets``, which exists only on Databricks: text widgets with
    values preset by the test (what a user would type), defaults otherwise."""

    def __init__(self, values: dict[str, str]):
        self.values = dict(values)

    def text(self, name: str, default: str, label: str | None = None) -> None:
        self.values.setdefault(name, default)

    def get(self, name: str) -> str:
        return self.values[name]


def run_notebook(path: Path, spark, widgets: Widgets) -> tuple[dict, list]:
    shown: list = []
    namespace = {"spark": spark, "dbutils": type("dbutils", (), {"widgets": widgets}),
                 "display": lambda df: shown.append(df.collect()), "__name__": "__notebook__"}
    for cell in path.read_text().split("\n# COMMAND ----------\n"):
        if "dbutils.library" in cell:
            continue  # installing the wheel into the notebook is Databricks-only
        exec(compile(cell, str(path), "exec"), namespace)
    return namespace, shown


@pytest.mark.slow
def test_notebooks_run_the_jobs_on_local_spark(spark, tmp_path, capsys):
    # A catalog of its own, so other tests' keyrings are untouched.
    widgets = Widgets({"catalog": "nbcat", "schemas": "nbs",
                       "local_kek_file": str(tmp_path / "kek.key")})
    setup, _ = run_notebook(ROOT / "notebooks" / "01_setup.py", spark, widgets)
    assert setup["settings"].catalog == "nbcat"
    assert setup["report"].created_deks == ["nbcat.nbs v1"]
    again, _ = run_notebook(ROOT / "notebooks" / "01_setup.py", spark, widgets)
    assert again["report"].created_deks == [] and again["report"].existing_deks == ["nbcat.nbs v1"]

    new_dek, _ = run_notebook(ROOT / "notebooks" / "03_new_dek.py", spark, widgets)
    assert (new_dek["record"].scope, new_dek["record"].version) == ("nbcat.nbs", 2)

    spark.sql("CREATE SCHEMA IF NOT EXISTS nbcat__nbs")
    spark.sql("CREATE TABLE nbcat__nbs.customers (id INT, name STRING)")
    spark.sql("INSERT INTO nbcat__nbs.customers VALUES (1, 'ee1:not-really')")
    # Unity Catalog's group check does not exist locally; a SQL function of the same name
    # (no Python worker to start) makes this user a member of the notebook's group.
    spark.sql("CREATE TEMPORARY FUNCTION is_account_group_member(g STRING) RETURNS BOOLEAN "
              "RETURN g = 'nbcat.nbs.crypto.user'")
    try:
        capsys.readouterr()
        _, shown = run_notebook(
            ROOT / "notebooks" / "02_user_verification.py", spark,
            Widgets({"catalog": "nbcat", "schema": "nbs", "table": "customers"}),
        )
    finally:
        spark.sql("DROP TEMPORARY FUNCTION IF EXISTS is_account_group_member")
    (who,), rows = shown
    assert who["crypto_user_group"] == "nbcat.nbs.crypto.user" and who["is_member"] is True
    assert [tuple(r) for r in rows] == [(1, "ee1:not-really")]
    # Local Spark has no grants: the notebook says the keyring is readable, as it should.
    assert "can read the keyring table (2 rows)" in capsys.readouterr().out
