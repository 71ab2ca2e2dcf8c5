"""kek_setup puts the deployed wheel into the packages volume before it creates the SQL
functions that install it, and refuses to create them when the wheel is not there.

Unity Catalog is not here: a stand-in session records the SQL it is given, and a folder of
the test plays the volume (on Databricks, /Volumes/... is a path the same way)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from envelope_encryption import __version__
from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError
from envelope_encryption.jobs import kek_setup
from envelope_encryption.keyring.audit import AuditLog
from envelope_encryption.spark.sql_functions import SqlOptions, default_udf_wheel

WHEEL = f"envelope_encryption-{__version__}-py3-none-any.whl"
SETTINGS = Settings(backend="aws-kms", catalog="main", schemas=("hr",),
                    service_credential="kms-cred", options={"aws-region": "eu-west-1"})


class RecordingSession:
    """Stands in for the job's SparkSession: keeps the statements, runs none."""

    def __init__(self, log: list[str]):
        self.log = log

    def sql(self, statement: str) -> None:
        self.log.append(statement)


@pytest.fixture()
def volume(tmp_path) -> Path:
    folder = tmp_path / "Volumes" / "main" / "crypto" / "packages"
    folder.mkdir(parents=True)
    return folder


def deployed(tmp_path: Path, *names: str) -> Path:
    dist = tmp_path / "files" / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    for name in names:
        (dist / name).write_bytes(b"PK wheel bytes")
    return dist


def test_the_wheel_is_copied_into_the_volume_after_it_is_created(tmp_path, volume):
    log: list[str] = []
    sql = SqlOptions(udf_wheel=str(volume / WHEEL))
    wheel = kek_setup.install_udf_wheel(RecordingSession(log), SETTINGS, sql,
                                        str(deployed(tmp_path, WHEEL)))
    assert wheel == str(volume / WHEEL)
    assert (volume / WHEEL).read_bytes() == b"PK wheel bytes"
    # Only the schema and the volume: the functions come later, in deploy_sql_layer.
    assert [s.split(" IF NOT EXISTS ")[0] for s in log] == ["CREATE SCHEMA", "CREATE VOLUME"]
    assert "`main`.`crypto`.`packages`" in log[1]


def test_a_missing_wheel_is_refused_with_its_path_and_the_fix(volume):
    sql = SqlOptions(udf_wheel=str(volume / WHEEL))
    with pytest.raises(ConfigError) as refused:
        kek_setup.install_udf_wheel(RecordingSession([]), SETTINGS, sql, "")
    message = str(refused.value)
    assert f"installs {volume / WHEEL}, which is missing" in message
    assert "--wheel-source" in message and "databricks fs cp" in message


def test_the_default_wheel_path_is_the_sql_layers(volume):
    # Without --sql-udf-wheel the wheel goes where the rendered unwrap function names it.
    with pytest.raises(ConfigError, match="which is missing"):
        kek_setup.install_udf_wheel(RecordingSession([]), SETTINGS, SqlOptions(), "")
    assert default_udf_wheel(SETTINGS) == f"/Volumes/main/crypto/packages/{WHEEL}"


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ((), r"no envelope_encryption-\*\.whl in .*deploy the bundle first"),
        ((WHEEL, "envelope_encryption-0.0.9-py3-none-any.whl"), "more than one wheel"),
        (("envelope_encryption-9.9.9-py3-none-any.whl",),
         "the deployed wheel is envelope_encryption-9.9.9-py3-none-any.whl but the unwrap "
         "function installs"),
    ],
)
def test_the_deployed_folder_must_hold_this_versions_one_wheel(tmp_path, volume, names,
                                                              message):
    sql = SqlOptions(udf_wheel=str(volume / WHEEL))
    with pytest.raises(ConfigError, match=message):
        kek_setup.install_udf_wheel(RecordingSession([]), SETTINGS, sql,
                                    str(deployed(tmp_path, *names)))
    assert not (volume / WHEEL).exists()


def test_a_pinned_package_needs_no_file(tmp_path):
    log: list[str] = []
    sql = SqlOptions(udf_wheel="envelope_encryption==0.1.0")
    assert kek_setup.install_udf_wheel(RecordingSession(log), SETTINGS, sql, "") is None
    assert log == []


class FakeContext(SimpleNamespace):
    """A job context that records nothing but what kek_setup's SQL step needs."""

    def __enter__(self) -> FakeContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.closed = True


def fake_context(session: RecordingSession, databricks: bool) -> FakeContext:
    kek = SimpleNamespace(describe=lambda: "aws-kms KEK k", created=False, kek_id="k",
                          kek_version="")
    return FakeContext(
        spark=session, lakehouse=SimpleNamespace(databricks=databricks),
        kek=SimpleNamespace(ensure=lambda: kek),
        store=SimpleNamespace(ensure=lambda: None, description="keyring"),
        # No schemas: only the integrity steps of the keyring are reached.
        keyring=SimpleNamespace(check_kek=lambda: None, ensure_integrity=lambda: None,
                                audit=AuditLog("test")),  # the job log only
        closed=False,
    )


@pytest.mark.parametrize("databricks", [True, False])
def test_kek_setup_installs_the_wheel_before_the_functions(tmp_path, volume, monkeypatch,
                                                           databricks):
    import envelope_encryption.spark.sql.deploy as deploy

    log: list[str] = []
    settings = Settings(backend="aws-kms", catalog="main", schemas=(),
                        service_credential="kms-cred")
    monkeypatch.setattr(kek_setup, "build_context",
                        lambda s, spark=None: fake_context(RecordingSession(log), databricks))
    monkeypatch.setattr(kek_setup, "check_catalog", lambda *a, **k: None)  # nothing to find

    def deploy_sql_layer(spark, settings, options, *, databricks):
        log.append(f"functions (wheel there: {(volume / WHEEL).is_file()})")
        return "deployed"

    monkeypatch.setattr(deploy, "deploy_sql_layer", deploy_sql_layer)
    sql = SqlOptions(udf_wheel=str(volume / WHEEL))
    kek_setup.run(settings, sql=sql, wheel_source=str(deployed(tmp_path, WHEEL)))
    if databricks:
        assert [entry.split(" ")[0] for entry in log] == ["CREATE", "CREATE", "functions"]
        assert log[-1] == "functions (wheel there: True)"
    else:
        # Locally the functions are temporary ones that need no wheel: nothing is copied.
        assert log == ["functions (wheel there: False)"]


def test_kek_setup_creates_no_function_without_the_wheel(volume, monkeypatch):
    import envelope_encryption.spark.sql.deploy as deploy

    monkeypatch.setattr(kek_setup, "build_context",
                        lambda s, spark=None: fake_context(RecordingSession([]), True))
    monkeypatch.setattr(kek_setup, "check_catalog", lambda *a, **k: None)  # nothing to find
    called = []
    monkeypatch.setattr(deploy, "deploy_sql_layer", lambda *a, **k: called.append(a))
    settings = Settings(backend="aws-kms", schemas=(), service_credential="kms-cred")
    with pytest.raises(ConfigError, match="which is missing"):
        kek_setup.run(settings, sql=SqlOptions(udf_wheel=str(volume / WHEEL)))
    assert called == []
