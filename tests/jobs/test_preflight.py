"""``preflight`` against a local workspace server, driven by the real Databricks SDK.

No mock of the SDK: ``WorkspaceClient`` sends its real requests to
:mod:`tests.support.workspace_server` on 127.0.0.1, which answers in the shapes the SDK
parses. Each test starts from a well-set-up workspace and breaks one thing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient

from envelope_encryption.cell.equality import parse_domain_specs
from envelope_encryption.config import Settings
from envelope_encryption.jobs.preflight import build_parser, main, preflight_options
from envelope_encryption.jobs.preflight_checks import PreflightOptions, run_checks
from envelope_encryption.jobs.preflight_grants import Status
from envelope_encryption.spark.sql_functions import default_udf_wheel
from tests.support.workspace_server import TOKEN, WORKSPACE_ID, WorkspaceState, workspace_server

SRC = Path(__file__).resolve().parents[2] / "src"
JOB_SP = "6f1e2d3c-aaaa-4bbb-8ccc-123456789abc"  # the jobs' service principal (application id)
ADMINS = "crypto-admins"
SETTINGS = Settings(backend="aws-kms", catalog="main", schemas=("hr", "sales"),
                    metastore_id="ms-1", crypto_schema="crypto", keyring_table="dek_keyring",
                    service_credential="kms-cred")
FUNCTIONS = ("unwrap_key", "decrypt_cells", "open_cell", "seal_cell", "decrypt_hr", "encrypt_hr",
             "decrypt_sales", "encrypt_sales")
# The subject masks' functions, always deployed (subject_hash and decrypt_subject_cells hold
# the service credential, like unwrap_key).
SUBJECT_FUNCTIONS = ("subject_hash", "decrypt_subject_cells", "open_subject_cell",
                     "decrypt_subject_hr", "decrypt_subject_sales")
# With --equality-domains=ssn:digits: the owner-only function and the lookup functions.
EQUALITY_FUNCTIONS = ("equality_values", "blind_index_ssn", "deterministic_ssn")
LOOKUP_GROUP = "main.crypto.lookup"
ARGS = ["--kek-backend=aws-kms", "--catalog=main", "--schemas=hr,sales",
        "--metastore-id=ms-1", "--service-credential=kms-cred", f"--admin-groups={ADMINS}"]


def well_set_up(settings: Settings = SETTINGS, equality: bool = False,
                lookup_group: bool = False) -> WorkspaceState:
    """A workspace after a correct deployment, run by the jobs' service principal
    (``equality``: with the domain ssn; ``lookup_group``: its lookup functions granted)."""
    state = WorkspaceState(user_name=JOB_SP, user_groups=["crypto-jobs", "main.crypto.jobs"])
    state.groups["main.crypto.jobs"] = "Group"
    for schema in settings.schemas:
        state.groups[f"main.{schema}.crypto.user"] = "Group"
    state.groups[ADMINS] = "Group"
    state.credentials["kms-cred"] = {"purpose": "SERVICE", "owner": "platform-admins"}
    state.grant("CREDENTIAL", "kms-cred", JOB_SP, "ACCESS")
    state.add_object("SCHEMA", "main.crypto", JOB_SP)
    if settings.backend != "aws-sm":
        state.add_object("TABLE", "main.crypto.dek_keyring", JOB_SP)
    state.add_object("VOLUME", "main.crypto.packages", JOB_SP)
    extra = ("dek_records",) if settings.backend == "aws-sm" else ()
    extra += EQUALITY_FUNCTIONS if equality else ()
    for name in (*FUNCTIONS, *SUBJECT_FUNCTIONS, *extra):
        state.add_object("FUNCTION", f"main.crypto.{name}", JOB_SP)
    state.add_object("TABLE", "main.crypto.dek_subjects", JOB_SP)
    if lookup_group:  # what kek_setup --sql-lookup-group grants
        state.groups[LOOKUP_GROUP] = "Group"
        state.grant("SCHEMA", "main.crypto", LOOKUP_GROUP, "USE_SCHEMA")
        for name in ("blind_index_ssn", "deterministic_ssn"):
            state.grant("FUNCTION", f"main.crypto.{name}", LOOKUP_GROUP, "EXECUTE")
    state.files[default_udf_wheel(settings)] = 48_213
    # What most workspaces grant everyone on a shared catalog: harmless for the keys.
    state.grant("CATALOG", "main", "account users", "USE_CATALOG", "BROWSE")
    state.grant("SCHEMA", "main.crypto", ADMINS, "ALL_PRIVILEGES")
    return state


@pytest.fixture(autouse=True)
def _no_real_workspace(monkeypatch, tmp_path):
    """Only the local server: no host, token or profile of this machine is picked up."""
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))


def check(state: WorkspaceState, settings: Settings = SETTINGS, **options):
    options.setdefault("admins", (ADMINS,))
    with workspace_server(state) as server:
        client = WorkspaceClient(host=server.url, token=TOKEN)
        results = run_checks(client, settings, PreflightOptions(**options))
    assert not server.unexpected, server.unexpected
    return results, server


def problems(results) -> list[str]:
    return [r.line() for r in results if r.status is Status.PROBLEM]


def line(results, check: str, subject: str):
    [found] = [r for r in results if r.check == check and r.subject == subject]
    return found


def run_main(state: WorkspaceState, monkeypatch, *args: str) -> int:
    with workspace_server(state) as server:
        monkeypatch.setenv("DATABRICKS_HOST", server.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
        try:
            return main([*ARGS, *args])
        except SystemExit as exit:
            return exit.code


# -- a good workspace ---------------------------------------------------------------------


def test_a_well_set_up_workspace_passes_every_check():
    results, server = check(well_set_up())
    assert problems(results) == []
    assert {r.status for r in results} == {Status.OK}
    checks = [(r.check, r.subject) for r in results]
    assert ("service credential", "kms-cred") in checks
    assert ("group", "main.hr.crypto.user") in checks and ("group", ADMINS) in checks
    assert ("wheel", default_udf_wheel(SETTINGS)) in checks
    for name in FUNCTIONS:
        assert ("function", f"main.crypto.{name}") in checks
    for what in ("service credential", "crypto schema", "keyring table", "unwrap function",
                 "packages volume"):
        assert any(c == f"privileges on {what}" for c, _ in checks), what
    # Read only, and the SDK's own request shapes: paged effective permissions, SCIM paging,
    # the workspace id from host metadata on every call.
    assert {method for method, _, _ in server.requests} == {"GET", "HEAD"}
    effective = [q for _, p, q in server.requests if "/effective-permissions/" in p]
    assert effective and all(q["max_results"] == "0" for q in effective)
    assert any("page_token" in q for q in effective)
    assert "/api/2.1/unity-catalog/effective-permissions/function/main.crypto.unwrap_key" in \
        server.paths("GET")
    assert WORKSPACE_ID in server.workspace_ids


def test_main_prints_one_line_per_check_and_returns_zero(monkeypatch, capsys):
    assert run_main(well_set_up(), monkeypatch) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("preflight (after deployment): no problem found")
    assert all(text.startswith("ok ") for text in out[:-1])
    assert any("privileges on unwrap function main.crypto.unwrap_key" in t for t in out)


# -- each problem, named, with a non-zero exit ----------------------------------------------


def test_a_missing_service_credential(monkeypatch, capsys):
    state = well_set_up()
    del state.credentials["kms-cred"]
    state.grants = [g for g in state.grants if g.securable_type != "CREDENTIAL"]
    results, _ = check(state)
    found = line(results, "service credential", "kms-cred")
    assert found.status is Status.PROBLEM and "does not exist" in found.detail
    assert f"GRANT ACCESS ON SERVICE CREDENTIAL `kms-cred` TO `{JOB_SP}`" in found.fix
    assert run_main(state, monkeypatch) == 1
    assert "problem    service credential kms-cred: does not exist" in capsys.readouterr().out


def test_no_service_credential_configured():
    results, _ = check(well_set_up(), Settings(**{**SETTINGS.__dict__, "service_credential": ""}))
    found = line(results, "service credential", "-")
    assert found.status is Status.PROBLEM and "--service-credential" in found.fix


def test_the_job_principal_needs_access_on_the_credential():
    state = well_set_up()
    state.revoke_all(JOB_SP)
    results, _ = check(state)
    found = line(results, "service credential", "kms-cred")
    assert found.status is Status.PROBLEM and f"{JOB_SP} has no ACCESS" in found.detail
    # ACCESS through a group the principal belongs to is enough.
    state.grant("CREDENTIAL", "kms-cred", "crypto-jobs", "ACCESS")
    state.groups["crypto-jobs"] = "Group"
    results, _ = check(state, admins=(ADMINS, "crypto-jobs"))
    assert line(results, "service credential", "kms-cred").status is Status.OK
    assert problems(results) == []


def test_a_storage_credential_is_not_a_service_credential():
    state = well_set_up()
    state.credentials["kms-cred"]["purpose"] = "STORAGE"
    results, _ = check(state)
    assert "SERVICE credential" in line(results, "service credential", "kms-cred").detail
    assert len(problems(results)) == 1


def test_everyone_holding_access_on_the_credential_is_a_problem():
    state = well_set_up()
    state.grant("CREDENTIAL", "kms-cred", "account users", "ACCESS")
    results, _ = check(state)
    found = line(results, "privileges on service credential", "kms-cred")
    assert found.status is Status.PROBLEM
    assert "account users: ACCESS (granted on it)" in found.detail
    assert "REVOKE ACCESS ON SERVICE CREDENTIAL `kms-cred` FROM `account users`" in found.fix


def test_a_missing_group(monkeypatch, capsys):
    state = well_set_up()
    del state.groups["main.sales.crypto.user"]
    results, _ = check(state)
    assert problems(results) == [line(results, "group", "main.sales.crypto.user").line()]
    assert "create the account group main.sales.crypto.user" in problems(results)[0]
    assert run_main(state, monkeypatch) == 1
    assert "problem    group main.sales.crypto.user: (readers of sales) does not exist" in \
        capsys.readouterr().out


def test_a_missing_admin_group_and_a_workspace_local_reader_group():
    state = well_set_up()
    del state.groups[ADMINS]
    state.groups["main.hr.crypto.user"] = "WorkspaceGroup"
    results, _ = check(state)
    assert line(results, "group", ADMINS).status is Status.PROBLEM
    assert "workspace-local" in line(results, "group", "main.hr.crypto.user").detail
    assert len(problems(results)) == 2


def test_admins_given_as_users_are_not_looked_up_as_groups():
    results, server = check(well_set_up(), admins=(ADMINS, "alice@example.com"))
    assert line(results, "group", "alice@example.com").status is Status.SKIPPED
    assert not any("alice" in q.get("filter", "") for _, _, q in server.requests)


def test_a_custom_reader_group_pattern():
    state = well_set_up()
    state.groups["pii-readers-hr"] = state.groups["pii-readers-sales"] = "Group"
    results, _ = check(state, reader_group="pii-readers-{schema}")
    assert line(results, "group", "pii-readers-hr").status is Status.OK
    assert problems(results) == []


def test_a_missing_wheel(monkeypatch, capsys):
    state = well_set_up()
    state.files.clear()
    results, _ = check(state)
    found = line(results, "wheel", default_udf_wheel(SETTINGS))
    assert found.status is Status.PROBLEM and "not in the volume" in found.detail
    assert len(problems(results)) == 1
    assert run_main(state, monkeypatch) == 1
    assert f"problem    wheel {default_udf_wheel(SETTINGS)}: not in the volume" in \
        capsys.readouterr().out


def test_an_empty_wheel_and_a_wheel_from_an_index():
    state = well_set_up()
    state.files[default_udf_wheel(SETTINGS)] = 0
    results, _ = check(state)
    assert line(results, "wheel", default_udf_wheel(SETTINGS)).detail == "is empty"
    results, _ = check(state, udf_wheel="envelope_encryption==0.1.0")
    assert line(results, "wheel", "envelope_encryption==0.1.0").status is Status.SKIPPED


def test_a_missing_function(monkeypatch, capsys):
    state = well_set_up()
    del state.objects["FUNCTION:main.crypto.decrypt_sales"]
    results, _ = check(state)
    found = line(results, "function", "main.crypto.decrypt_sales")
    assert found.status is Status.PROBLEM and "kek_setup --sql-functions=true" in found.fix
    assert len(problems(results)) == 1
    assert run_main(state, monkeypatch) == 1
    assert "problem    function main.crypto.decrypt_sales: does not exist" in \
        capsys.readouterr().out


def test_a_missing_keyring_table_and_unwrap_function():
    state = well_set_up()
    del state.objects["TABLE:main.crypto.dek_keyring"]
    del state.objects["FUNCTION:main.crypto.unwrap_key"]
    results, _ = check(state)
    assert line(results, "keyring table", "main.crypto.dek_keyring").status is Status.PROBLEM
    assert line(results, "function", "main.crypto.unwrap_key").status is Status.PROBLEM
    for what in ("keyring table", "unwrap function"):
        assert line(results, f"privileges on {what}", next(
            r.subject for r in results if r.check == f"privileges on {what}"
        )).status is Status.SKIPPED
    assert len(problems(results)) == 2


def test_a_catalog_level_all_privileges_for_account_users(monkeypatch, capsys):
    state = well_set_up()
    state.grant("CATALOG", "main", "account users", "ALL_PRIVILEGES")
    results, _ = check(state)
    flagged = {r.check for r in results if r.status is Status.PROBLEM}
    assert flagged == {"privileges on crypto schema", "privileges on keyring table",
                       "privileges on unwrap function", "privileges on batch decrypt function",
                       "privileges on cell function", "privileges on seal function",
                       "privileges on subject table", "privileges on subject hash function",
                       "privileges on subject decrypt function",
                       "privileges on subject cell function", "privileges on packages volume"}
    unwrap = line(results, "privileges on unwrap function", "main.crypto.unwrap_key")
    assert "account users: ALL_PRIVILEGES (inherited from catalog main)" in unwrap.detail
    assert "REVOKE ALL PRIVILEGES ON CATALOG `main` FROM `account users`" in unwrap.fix
    assert "USE_CATALOG" not in unwrap.detail  # harmless privileges are not listed
    assert run_main(state, monkeypatch) == 1
    out = capsys.readouterr().out
    assert "problem    privileges on unwrap function main.crypto.unwrap_key: also held by " \
           "account users: ALL_PRIVILEGES (inherited from catalog main)" in out


def test_a_direct_execute_on_the_unwrap_function_for_a_reader_group(monkeypatch, capsys):
    state = well_set_up()
    state.grant("FUNCTION", "main.crypto.unwrap_key", "main.hr.crypto.user", "EXECUTE")
    results, _ = check(state)
    [problem] = [r for r in results if r.status is Status.PROBLEM]
    assert problem.check == "privileges on unwrap function"
    assert "main.hr.crypto.user: EXECUTE (granted on it)" in problem.detail
    assert ("REVOKE EXECUTE ON FUNCTION `main`.`crypto`.`unwrap_key` FROM "
            "`main.hr.crypto.user`") in problem.fix
    assert run_main(state, monkeypatch) == 1
    assert "main.hr.crypto.user: EXECUTE (granted on it)" in capsys.readouterr().out


@pytest.mark.parametrize(("kind", "name", "privilege", "flagged"), [
    ("SCHEMA", "main.crypto", "SELECT", "privileges on keyring table"),
    ("CATALOG", "main", "READ_VOLUME", "privileges on packages volume"),
    ("CATALOG", "main", "USE_SCHEMA", "privileges on crypto schema"),
    ("CATALOG", "main", "EXECUTE", "privileges on unwrap function"),
])
def test_inherited_privileges_that_reach_the_keys(kind, name, privilege, flagged):
    state = well_set_up()
    state.grant(kind, name, "analysts", privilege)
    results, _ = check(state)
    assert flagged in {r.check for r in results if r.status is Status.PROBLEM}
    found = next(r for r in results if r.check == flagged)
    assert f"analysts: {privilege} (inherited from {kind.lower()} {name})" in found.detail


def test_owner_and_admins_may_hold_anything():
    state = well_set_up()
    state.grant("CATALOG", "main", ADMINS, "ALL_PRIVILEGES")
    state.grant("FUNCTION", "main.crypto.unwrap_key", JOB_SP, "EXECUTE")
    results, _ = check(state)
    assert problems(results) == []


def test_writer_groups_may_use_the_crypto_schema_when_configured():
    state = well_set_up()
    for schema in SETTINGS.schemas:
        state.grant("SCHEMA", "main.crypto", f"main.{schema}.crypto.writer", "USE_SCHEMA")
        state.groups[f"main.{schema}.crypto.writer"] = "Group"
    results, _ = check(state)
    assert [r.check for r in results if r.status is Status.PROBLEM] == \
        ["privileges on crypto schema"]
    results, _ = check(state, writer_group="{catalog}.{schema}.crypto.writer")
    assert problems(results) == []
    assert line(results, "group", "main.sales.crypto.writer").status is Status.OK
    # USE SCHEMA only: anything more is still a problem.
    state.grant("SCHEMA", "main.crypto", "main.hr.crypto.writer", "SELECT")
    results, _ = check(state, writer_group="{catalog}.{schema}.crypto.writer")
    assert "main.hr.crypto.writer: SELECT" in problems(results)[0]


def test_grants_that_cannot_be_read_are_a_problem():
    state = well_set_up()
    state.forbidden.add("/api/2.1/unity-catalog/effective-permissions/function/")
    results, _ = check(state)
    found = line(results, "privileges on unwrap function", "main.crypto.unwrap_key")
    assert found.status is Status.PROBLEM and "cannot be read" in found.detail
    assert "metastore admin" in found.fix


# -- before deployment ---------------------------------------------------------------------


def before_deployment() -> WorkspaceState:
    """Credential and groups made by the platform team; nothing deployed yet."""
    state = well_set_up()
    state.objects.clear()
    state.files.clear()
    state.grants = [g for g in state.grants if g.securable_type in ("CREDENTIAL", "CATALOG")]
    return state


def test_before_deployment_missing_objects_are_to_be_created(monkeypatch, capsys):
    results, server = check(before_deployment(), stage="before")
    assert problems(results) == []
    to_create = {(r.check, r.subject) for r in results if r.status is Status.TO_CREATE}
    assert ("schema", "main.crypto") in to_create
    assert ("wheel", default_udf_wheel(SETTINGS)) in to_create
    assert ("function", "main.crypto.unwrap_key") in to_create
    assert ("keyring table", "main.crypto.dek_keyring") in to_create
    # What the crypto schema will inherit is checked on the catalog.
    assert line(results, "privileges on catalog (the crypto schema inherits)", "main").status \
        is Status.OK
    assert not any("/functions/" in p for p in server.paths())  # not asked: schema missing
    assert run_main(before_deployment(), monkeypatch, "--stage=before") == 0
    out = capsys.readouterr().out
    assert "to create  schema main.crypto: created by kek_setup" in out
    assert "preflight (before deployment): no problem found" in out


def test_after_deployment_the_same_workspace_fails(monkeypatch):
    results, _ = check(before_deployment())
    assert line(results, "schema", "main.crypto").status is Status.PROBLEM
    assert line(results, "wheel", default_udf_wheel(SETTINGS)).status is Status.PROBLEM
    assert line(results, "function", "main.crypto.unwrap_key").status is Status.SKIPPED
    assert run_main(before_deployment(), monkeypatch) == 1


def test_before_deployment_a_catalog_grant_the_schema_would_inherit_fails():
    state = before_deployment()
    state.grant("CATALOG", "main", "account users", "ALL_PRIVILEGES")
    results, _ = check(state, stage="before")
    [problem] = [r for r in results if r.status is Status.PROBLEM]
    assert problem.check == "privileges on catalog (the crypto schema inherits)"
    assert "account users: ALL_PRIVILEGES (granted on it)" in problem.detail


# -- back ends -----------------------------------------------------------------------------


def test_aws_sm_has_no_keyring_table_but_a_keyring_function():
    settings = Settings(**{**SETTINGS.__dict__, "backend": "aws-sm"})
    results, server = check(well_set_up(settings), settings)
    assert problems(results) == []
    tables = [p for p in server.paths() if "/tables/" in p]
    assert tables == ["/api/2.1/unity-catalog/tables/main.crypto.dek_subjects"]  # no keyring
    assert line(results, "function", "main.crypto.dek_records").status is Status.OK
    assert line(results, "privileges on keyring function",
                "main.crypto.dek_records").status is Status.OK


def test_the_local_back_end_is_a_problem_on_a_workspace():
    settings = Settings(**{**SETTINGS.__dict__, "backend": "local"})
    results, _ = check(well_set_up(), settings)
    assert line(results, "back end", "local").status is Status.PROBLEM
    assert line(results, "service credential", "-").status is Status.SKIPPED


# -- the entry point -----------------------------------------------------------------------


def wheel_task(server_url: str, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess:
    """Call the entry point as a python_wheel_task does: ``main()`` with the parameters in
    ``sys.argv``, its return value ignored."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}
    env.update(DATABRICKS_HOST=server_url, DATABRICKS_TOKEN=token,
               DATABRICKS_CONFIG_FILE=os.devnull, PYTHONPATH=str(SRC))
    code = "from envelope_encryption.jobs.preflight import main; main()"
    return subprocess.run([sys.executable, "-c", code, *ARGS, *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_wheel_task_entry_point_exits_non_zero_on_a_problem():
    state = well_set_up()
    with workspace_server(state) as server:
        good = wheel_task(server.url)
        state.grant("CATALOG", "main", "account users", "ALL_PRIVILEGES")
        bad = wheel_task(server.url)
        unauthenticated = wheel_task(server.url, token="dapi-wrong")
    assert good.returncode == 0, good.stderr
    assert bad.returncode == 1
    assert "problem    privileges on unwrap function" in bad.stdout
    assert unauthenticated.returncode == 2
    assert "error: cannot read the calling principal" in unauthenticated.stderr


def test_help(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    for option in ("--stage", "--admin-groups", "--reader-group-pattern", "--profile",
                   "--service-credential", "--equality-domains", "--sql-lookup-group"):
        assert option in out
    assert build_parser().parse_args([]).stage == "after"


def test_invalid_options_are_clear_errors(monkeypatch, capsys):
    assert run_main(well_set_up(), monkeypatch, "--admin-groups=bad`name") == 2
    assert "invalid admin principal" in capsys.readouterr().err


def test_no_workspace_configured_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit:
        main(ARGS)
    assert exit.value.code == 2
    assert "cannot configure the Databricks SDK" in capsys.readouterr().err


def test_checking_for_another_job_principal():
    state = well_set_up()
    state.user_name, state.user_groups = "alice@example.com", []
    results, _ = check(state, job_principal=JOB_SP)
    assert line(results, "job principal", JOB_SP).status is Status.OK
    assert line(results, "service credential", "kms-cred").status is Status.OK
    assert problems(results) == []
    results, _ = check(state)  # alice herself has no ACCESS on the credential
    assert "alice@example.com has no ACCESS" in line(results, "service credential",
                                                     "kms-cred").detail


def test_every_page_of_effective_permissions_is_read():
    state = well_set_up()
    for admin in ("key-admin-1", "key-admin-2"):
        state.groups[admin] = "Group"
        state.grant("FUNCTION", "main.crypto.unwrap_key", admin, "EXECUTE")
    state.grant("CATALOG", "main", "account users", "EXECUTE")  # 4th principal: page 2
    results, server = check(state, admins=(ADMINS, "key-admin-1", "key-admin-2"))
    unwrap = line(results, "privileges on unwrap function", "main.crypto.unwrap_key")
    assert "account users: EXECUTE (inherited from catalog main)" in unwrap.detail
    pages = [q.get("page_token") for _, p, q in server.requests
             if p.endswith("/effective-permissions/function/main.crypto.unwrap_key")]
    assert pages == [None, "2", "4"]  # the last page is empty and has no token


def test_the_job_principal_must_read_cells_through_the_masks():
    """In the job group, and in no reader group: otherwise the lifecycle jobs refuse."""
    state = well_set_up()
    state.user_groups.remove("main.crypto.jobs")
    results, _ = check(state)
    (line,) = [r for r in results if r.check == "job group"]
    assert line.status is Status.PROBLEM and "add " + JOB_SP in line.fix

    state = well_set_up()
    state.user_groups.append("main.hr.crypto.user")
    results, _ = check(state)
    (line,) = [r for r in results if r.check == "job group"]
    assert line.status is Status.PROBLEM and "main.hr.crypto.user" in line.detail

    state = well_set_up()
    del state.groups["main.crypto.jobs"]
    results, _ = check(state)
    assert any(r.check == "group" and r.subject == "main.crypto.jobs"
               and r.status is Status.PROBLEM for r in results)

    results, _ = check(well_set_up(), job_group="")
    (line,) = [r for r in results if r.check == "job group"]
    assert line.status is Status.SKIPPED


# -- the subject masks' objects -------------------------------------------------------------


def test_the_subject_objects_are_checked_in_a_good_workspace():
    results, server = check(well_set_up())
    for name in SUBJECT_FUNCTIONS:
        assert line(results, "function", f"main.crypto.{name}").status is Status.OK
    assert line(results, "subject table", "main.crypto.dek_subjects").status is Status.OK
    for what, name in (("subject hash function", "subject_hash"),
                       ("subject decrypt function", "decrypt_subject_cells"),
                       ("subject cell function", "open_subject_cell"),
                       ("subject table", "dek_subjects")):
        assert line(results, f"privileges on {what}", f"main.crypto.{name}").status is Status.OK
    assert "/api/2.1/unity-catalog/effective-permissions/function/main.crypto.subject_hash" in \
        server.paths("GET")


@pytest.mark.parametrize(("kind", "name"), [
    *(("FUNCTION", name) for name in SUBJECT_FUNCTIONS), ("TABLE", "dek_subjects")])
def test_a_missing_subject_object_is_a_problem_after_and_to_create_before(kind, name):
    state = well_set_up()
    del state.objects[f"{kind}:main.crypto.{name}"]
    what = "function" if kind == "FUNCTION" else "subject table"
    results, _ = check(state)
    found = line(results, what, f"main.crypto.{name}")
    assert found.status is Status.PROBLEM and found.detail == "does not exist"
    assert "kek_setup --sql-functions=true" in found.fix
    assert problems(results) == [found.line()]
    results, _ = check(state, stage="before")
    assert line(results, what, f"main.crypto.{name}").status is Status.TO_CREATE
    assert problems(results) == []


@pytest.mark.parametrize(("name", "what"), [("subject_hash", "subject hash function"),
                                            ("decrypt_subject_cells", "subject decrypt function")])
def test_someone_else_executing_a_subject_function_is_a_problem(name, what, monkeypatch, capsys):
    state = well_set_up()
    state.grant("FUNCTION", f"main.crypto.{name}", "main.hr.crypto.user", "EXECUTE")
    results, _ = check(state)
    [problem] = [r for r in results if r.status is Status.PROBLEM]
    assert (problem.check, problem.subject) == (f"privileges on {what}", f"main.crypto.{name}")
    assert "main.hr.crypto.user: EXECUTE (granted on it)" in problem.detail
    assert (f"REVOKE EXECUTE ON FUNCTION `main`.`crypto`.`{name}` FROM "
            "`main.hr.crypto.user`") in problem.fix
    assert run_main(state, monkeypatch) == 1
    assert f"problem    privileges on {what} main.crypto.{name}: also held by" in \
        capsys.readouterr().out


def test_someone_else_reading_the_subject_salts_is_a_problem():
    state = well_set_up()
    state.grant("TABLE", "main.crypto.dek_subjects", "analysts", "SELECT", "MODIFY")
    results, _ = check(state)
    [problem] = [r for r in results if r.status is Status.PROBLEM]
    assert problem.check == "privileges on subject table"
    assert "REVOKE MODIFY ON TABLE `main`.`crypto`.`dek_subjects` FROM `analysts`" in problem.fix


# -- equality domains ------------------------------------------------------------------------

EQUALITY = {"equality_domains": parse_domain_specs("ssn:digits")}
WITH_LOOKUP_GROUP = {**EQUALITY, "lookup_group": "{catalog}.crypto.lookup"}


def test_with_equality_domains_a_good_workspace_passes(monkeypatch, capsys):
    results, _ = check(well_set_up(equality=True, lookup_group=True), **WITH_LOOKUP_GROUP)
    assert problems(results) == []
    for name in EQUALITY_FUNCTIONS:
        assert line(results, "function", f"main.crypto.{name}").status is Status.OK
    assert line(results, "group", LOOKUP_GROUP).detail == "(lookup group) exists"
    # The lookup group's EXECUTE on the lookup functions and USE SCHEMA are what it is given.
    blind = line(results, "privileges on lookup function", "main.crypto.blind_index_ssn")
    assert blind.status is Status.OK
    assert blind.detail.endswith(f"; as the deployment grants, {LOOKUP_GROUP}: EXECUTE")
    assert line(results, "privileges on crypto schema", "main.crypto").detail.endswith(
        f"as the deployment grants, {LOOKUP_GROUP}: USE_SCHEMA")
    assert line(results, "privileges on equality function",
                "main.crypto.equality_values").status is Status.OK
    assert run_main(well_set_up(equality=True, lookup_group=True), monkeypatch,
                    "--equality-domains=ssn:digits",
                    "--sql-lookup-group={catalog}.crypto.lookup") == 0
    out = capsys.readouterr().out
    assert "ok         function main.crypto.deterministic_ssn: exists, owner" in out
    # Without the options, preflight neither asks for the functions nor accepts the grants.
    results, _ = check(well_set_up(equality=True, lookup_group=True))
    assert not any(r.subject.endswith("blind_index_ssn") for r in results)
    assert "main.crypto.lookup: USE_SCHEMA" in line(results, "privileges on crypto schema",
                                                    "main.crypto").detail


@pytest.mark.parametrize("name", EQUALITY_FUNCTIONS)
def test_a_missing_equality_function_is_a_problem(name):
    state = well_set_up(equality=True)
    del state.objects[f"FUNCTION:main.crypto.{name}"]
    results, _ = check(state, **EQUALITY)
    found = line(results, "function", f"main.crypto.{name}")
    assert found.status is Status.PROBLEM
    assert "kek_setup --sql-functions=true with the same --equality-domains" in found.fix
    assert problems(results) == [found.line()]
    results, _ = check(state, stage="before", **EQUALITY)
    assert line(results, "function", f"main.crypto.{name}").status is Status.TO_CREATE


def test_the_lookup_group_may_execute_the_lookup_functions_but_not_equality_values():
    state = well_set_up(equality=True, lookup_group=True)
    state.grant("FUNCTION", "main.crypto.equality_values", LOOKUP_GROUP, "EXECUTE")
    results, _ = check(state, **WITH_LOOKUP_GROUP)
    [problem] = [r for r in results if r.status is Status.PROBLEM]
    assert (problem.check, problem.subject) == ("privileges on equality function",
                                                "main.crypto.equality_values")
    assert f"{LOOKUP_GROUP}: EXECUTE (granted on it)" in problem.detail
    assert ("REVOKE EXECUTE ON FUNCTION `main`.`crypto`.`equality_values` FROM "
            f"`{LOOKUP_GROUP}`") in problem.fix


def test_only_the_lookup_group_may_execute_the_lookup_functions():
    state = well_set_up(equality=True, lookup_group=True)
    state.grant("FUNCTION", "main.crypto.blind_index_ssn", "account users", "EXECUTE")
    state.grant("FUNCTION", "main.crypto.deterministic_ssn", LOOKUP_GROUP, "MANAGE")
    results, _ = check(state, **WITH_LOOKUP_GROUP)
    assert {(r.check, r.subject) for r in results if r.status is Status.PROBLEM} == {
        ("privileges on lookup function", "main.crypto.blind_index_ssn"),
        ("privileges on lookup function", "main.crypto.deterministic_ssn")}
    blind = line(results, "privileges on lookup function", "main.crypto.blind_index_ssn")
    assert "account users: EXECUTE" in blind.detail and LOOKUP_GROUP not in blind.detail
    # Without a lookup group configured, nobody but the owner and the admins may execute them.
    results, _ = check(well_set_up(equality=True, lookup_group=True), **EQUALITY)
    assert f"{LOOKUP_GROUP}: EXECUTE (granted on it)" in line(
        results, "privileges on lookup function", "main.crypto.blind_index_ssn").detail


def test_the_equality_options_on_the_command_line(monkeypatch, capsys):
    args = build_parser().parse_args(["--equality-domains=ssn:digits:64,email",
                                      "--sql-lookup-group={catalog}.crypto.lookup"])
    options = preflight_options(args)
    assert {n: (d.normal_form, d.bits) for n, d in options.equality_domains.items()} == {
        "ssn": ("digits", 64), "email": ("exact", 32)}
    assert options.lookup_group == "{catalog}.crypto.lookup"
    assert run_main(well_set_up(), monkeypatch, "--sql-lookup-group=x") == 2
    assert "--sql-lookup-group needs --equality-domains" in capsys.readouterr().err
    assert run_main(well_set_up(), monkeypatch, "--equality-domains=ssn:digits:x") == 2
    assert "bits must be a number" in capsys.readouterr().err
