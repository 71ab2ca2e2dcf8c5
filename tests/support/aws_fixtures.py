"""Fixtures of the AWS tests: settings, providers, stores and clients on the moto server.

Registered for every test by ``tests/conftest.py``. Providers are built by the package's
factories exactly as a job builds them; only ``--aws-endpoint-url`` differs from
production. moto's state is reset at the start of each test that uses these fixtures, and
every provider is a new object: nothing is cached from one test to the next.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from envelope_encryption.config import Settings
from envelope_encryption.kek.aws.kms import KmsKekProvider, from_settings
from envelope_encryption.kek.aws.secrets_manager import SecretsManagerKekProvider
from envelope_encryption.keyring.secrets_manager_store import SecretsManagerDekStore

# -- aws-kms ---------------------------------------------------------------------------------

REGION = "eu-west-1"


@pytest.fixture
def kms_url(moto) -> str:
    moto.reset()
    return moto.url


@pytest.fixture
def make_kms_settings(kms_url):
    def make(catalog: str = "main", metastore_id: str = "ms-1", schemas=("default",),
             **options: str) -> Settings:
        opts = {"aws-endpoint-url": kms_url, "aws-region": REGION}
        opts.update({k.replace("_", "-"): v for k, v in options.items()})
        return Settings(backend="aws-kms", catalog=catalog, schemas=tuple(schemas),
                        metastore_id=metastore_id, options=opts)

    return make


@pytest.fixture
def make_kms_provider(make_kms_settings):
    def make(**kwargs) -> KmsKekProvider:
        return from_settings(make_kms_settings(**kwargs))

    return make


@pytest.fixture
def kms(kms_url):
    """A plain boto3 KMS client for the test's own checks and set-up (not the code under test)."""
    return boto3.client("kms", endpoint_url=kms_url, region_name=REGION)


# -- aws-sm ----------------------------------------------------------------------------------

SM_REGION = "us-east-1"
KEK_SECRET = "unity_catalog/ms1/main/kek"
DEK_SECRET = "unity_catalog/ms1/main/deks"


@pytest.fixture
def sm(moto):
    """A Secrets Manager client talking to moto over HTTP on 127.0.0.1, on empty state."""
    moto.reset()
    return boto3.client(
        "secretsmanager", region_name=SM_REGION, endpoint_url=moto.url,
        config=Config(retries={"max_attempts": 2, "mode": "standard"}),
    )


@pytest.fixture
def sm_settings(moto) -> Settings:
    return Settings(
        backend="aws-sm", catalog="main", schemas=("sales", "hr"), metastore_id="ms1",
        options={"aws-region": SM_REGION, "aws-endpoint-url": moto.url},
    )


@pytest.fixture
def sm_kek(sm) -> SecretsManagerKekProvider:
    return SecretsManagerKekProvider(sm, KEK_SECRET)


@pytest.fixture
def sm_store(sm) -> SecretsManagerDekStore:
    return SecretsManagerDekStore(sm, DEK_SECRET)
