"""Shared fixtures: one local SparkSession per test run, a moto server, the local vaults.

No fixture clears process-wide state: the package keeps none outside the SQL runtime's
worker object, and tests build fresh keyrings, providers and caches instead.
"""

from __future__ import annotations

import os
import sys

import pytest

# Fixtures of the cloud back ends, shared by tests/kek, tests/keyring, tests/jobs and tests/sql.
pytest_plugins = ["tests.support.aws_fixtures", "tests.support.azure_fixtures"]

# Python workers must run this interpreter, or they start another python3 without our
# packages. Set before any SparkSession starts.
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
# Tests talk to nothing but 127.0.0.1: no real cloud credentials may be picked up.
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID",
              "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST", "AZURE_USERNAME", "AZURE_PASSWORD"):
    os.environ.pop(_name, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from tests.support.spark import make_test_session

    session = make_test_session(tmp_path_factory.mktemp("spark"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def moto():
    from tests.support.moto_server import moto_endpoint

    with moto_endpoint() as endpoint:
        yield endpoint
