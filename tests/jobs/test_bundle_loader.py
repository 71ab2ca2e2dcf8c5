"""The bundle reader behind local runs (``envelope_encryption.jobs.bundle``): it resolves a
target the way the Databricks CLI does, on the real bundle and on small ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from envelope_encryption.errors import ConfigError
from envelope_encryption.jobs.bundle import (
    ROOT_ENV,
    Task,
    find_bundle_root,
    load_bundle,
    parse_var_overrides,
)
from envelope_encryption.jobs.bundle_flags import parse_job_params

ROOT = Path(__file__).resolve().parents[2]


def resolved(target: str):
    # environ={} so the machine's BUNDLE_VAR_* never change what the tests see.
    return load_bundle(ROOT, target, environ={})


def write_bundle(root: Path, main: str, **resources: str) -> Path:
    (root / "databricks.yml").write_text(main)
    (root / "resources").mkdir(exist_ok=True)
    for name, text in resources.items():
        (root / "resources" / f"{name}.yml").write_text(text)
    return root


def wheel_job(key: str, tasks: str) -> str:
    return f"resources:\n  jobs:\n    {key}:\n      name: {key}\n      tasks:\n{tasks}"


def test_local_target_parameters_in_declaration_order():
    local = resolved("local")
    (task,) = local.tasks("encrypt_columns")
    assert task == Task(
        key="encrypt_columns", package_name="envelope_encryption", entry_point="encrypt_columns",
        parameters=task.parameters,
    )
    assert task.parameters[:3] == ["--kek-backend=local", "--catalog=main", "--schemas=default"]
    assert task.parameters[-16:] == [
        "--run-id=local",  # {{job.run_id}}: "local" unless the runner gives a run id
        "--source=.envelope/landing/customers", "--source-format=csv",
        "--checkpoint-location=", "--source-schema=", "--csv-line-separator=auto",
        "--target-table=default.customers", "--columns=name,email,ssn,birth_date,salary",
        "--id-column=id", "--mask=false", "--row-key-column=", "--deterministic-columns=",
        "--blind-index-columns=", "--subject-column=", "--equality-domains=",
        "--sql-crypto-catalog=",
    ]
    assert local.mode == "development"
    # No default target (a plain `databricks bundle deploy` must name one): the CLI's
    # "please specify target"; the local runner passes --target local itself.
    with pytest.raises(ConfigError, match="no default target: choose one of local"):
        load_bundle(ROOT, None, environ={})


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
        (lambda: load_bundle(ROOT, "local", {"katalog": "x"}, {}),
         "variable katalog has not been defined: --var sets undeclared variable"),
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
        ("x: {description: d, default: v}", "${workspace.root_path}/j",
         r"resources.jobs.j.name: \$\{workspace.root_path\} cannot be resolved outside"),
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
    with pytest.raises(ConfigError, match="unexpected flag value for variable assignment: "
                                          "novalue"):
        parse_var_overrides(["novalue"])


def test_var_is_a_string_slice_split_on_commas_as_the_cli_does():
    # cmd/bundle/variables.go declares --var a StringSlice: each occurrence is a CSV record,
    # then bundle/config/root.go splits each item on its first '='.
    assert parse_var_overrides(["a=1,b=2", "c=3"]) == {"a": "1", "b": "2", "c": "3"}
    with pytest.raises(ConfigError, match=r"unexpected flag value for variable assignment: b\b"):
        parse_var_overrides(["schemas=a,b"])
    # Quoting the whole item keeps the comma in the value.
    assert parse_var_overrides(['"schemas=a,b"']) == {"schemas": "a,b"}
    assert parse_var_overrides(['"x=say ""hi"""']) == {"x": 'say "hi"'}
    with pytest.raises(ConfigError, match='bare " in non-quoted field'):
        parse_var_overrides(['schemas="a,b"'])
    with pytest.raises(ConfigError, match='extraneous or missing " in quoted-field'):
        parse_var_overrides(['"schemas=a'])
    with pytest.raises(ConfigError, match="variable has already been assigned value: 1"):
        parse_var_overrides(["a=1", "a=2"])
    assert parse_var_overrides([""]) == {}


def test_params_is_a_string_to_string_map_as_the_cli_does():
    # bundle/run/job_options.go declares --params a StringToString (pflag): one '=' is one
    # pair whatever its commas; several '=' are a CSV record of pairs; later ones win.
    assert parse_job_params(["schemas=a,b"]) == {"schemas": "a,b"}
    assert parse_job_params(["schema=hr,version=2"]) == {"schema": "hr", "version": "2"}
    assert parse_job_params(["a=1", "a=2,b=3"]) == {"a": "2", "b": "3"}
    assert parse_job_params(['"tables=x.t"']) == {"tables": "x.t"}
    assert parse_job_params(['"t=a,b",u=c']) == {"t": "a,b", "u": "c"}
    with pytest.raises(ConfigError, match="schema must be formatted as key=value"):
        parse_job_params(["schema"])
    with pytest.raises(ConfigError, match="hr must be formatted as key=value"):
        parse_job_params(["schema=x,hr,v=1"])


def test_job_parameters_take_their_defaults_or_the_runs_params(tmp_path):
    write_bundle(tmp_path, """
bundle: {name: tiny}
include: [resources/*.yml]
variables:
  schema: {description: s, default: default}
""", job="""
resources:
  jobs:
    j:
      name: j
      parameters:
        - {name: schema, default: "${var.schema}"}
        - {name: flag, default: "false"}
      tasks:
        - task_key: a
          python_wheel_task:
            package_name: p
            entry_point: e
            named_parameters:
              schema: "{{job.parameters.schema}}"
              both: "{{ job.parameters.schema }}-{{job.parameters.flag}}"
              where: "${workspace.file_path}/dist"
    plain:
      name: plain
      tasks:
        - task_key: a
          python_wheel_task: {package_name: p, entry_point: e, parameters: ["{{job.id}}"]}
""")
    bundle = load_bundle(tmp_path, environ={})
    assert bundle.parameters("j") == {"schema": "default", "flag": "false"}
    assert bundle.tasks("j")[0].parameters == [
        "--schema=default", "--both=default-false", f"--where={tmp_path.resolve()}/dist"]
    assert bundle.tasks("j", {"schema": "hr"})[0].parameters[:2] == [
        "--schema=hr", "--both=hr-false"]
    with pytest.raises(ConfigError, match=r"job 'j' has no parameter nope \(parameters: "
                                          r"schema, flag\)"):
        bundle.tasks("j", {"nope": "1"})
    # The CLI's refusal when a job has no job parameters.
    with pytest.raises(ConfigError, match="does not define job parameters; specifying job "
                                          "parameters is not allowed"):
        bundle.tasks("plain", {"x": "1"})
    with pytest.raises(ConfigError, match=r"\{\{job.id\}\} is a dynamic value that only a "
                                          "Databricks job run can resolve"):
        bundle.tasks("plain")


def test_an_included_file_may_add_jobs_to_one_target(tmp_path):
    write_bundle(tmp_path, """
bundle: {name: tiny}
include: [resources/*.yml]
targets:
  a: {default: true}
  b: {}
""", jobs="""
shared: &task
  - task_key: t
    python_wheel_task: {package_name: p, entry_point: e}
resources:
  jobs:
    everywhere: {name: e, tasks: *task}
targets:
  b:
    resources:
      jobs:
        only_b: {name: o, tasks: *task}
""")
    assert sorted(load_bundle(tmp_path, "a", environ={}).jobs) == ["everywhere"]
    assert sorted(load_bundle(tmp_path, "b", environ={}).jobs) == ["everywhere", "only_b"]


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


def test_anchors_and_merge_keys_resolve_as_in_the_cli(tmp_path):
    # The shape of resources/jobs.yml: anchor-only blocks at the top, merged with '<<' and
    # aliased; a key written beside '<<' wins over the merged one, in the merged one's place.
    write_bundle(tmp_path, """
bundle: {name: tiny}
include: [resources/*.yml]
variables:
  catalog: {description: c, default: main}
targets:
  t: {default: true, variables: {catalog: from_target}}
""", jobs="""
shared: &shared
  catalog: ${var.catalog}
  schemas: a,b
env: &env
  - environment_key: default
    spec: {environment_version: "2", dependencies: [../dist/*.whl]}
resources:
  jobs:
    one:
      name: one
      tasks:
        - task_key: one
          python_wheel_task:
            package_name: p
            entry_point: one
            named_parameters:
              <<: *shared
      environments: *env
    two:
      name: two
      tasks:
        - task_key: two
          python_wheel_task:
            package_name: p
            entry_point: two
            named_parameters:
              <<: *shared
              schemas: c
              table: t
      environments: *env
""")
    bundle = load_bundle(tmp_path, environ={})
    assert bundle.tasks("one")[0].parameters == ["--catalog=from_target", "--schemas=a,b"]
    assert bundle.tasks("two")[0].parameters == [
        "--catalog=from_target", "--schemas=c", "--table=t"]
    assert bundle.jobs["one"]["environments"] == bundle.jobs["two"]["environments"]
    # Each job is a copy: changing one resolved job leaves the other as it was.
    bundle.jobs["one"]["environments"][0]["spec"]["dependencies"].append("x.whl")
    assert bundle.jobs["two"]["environments"][0]["spec"]["dependencies"] == ["../dist/*.whl"]
