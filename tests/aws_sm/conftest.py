"""Fixtures of the aws-sm tests: a Secrets Manager client on the moto server, fresh state."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from envelope_encryption.config import Settings
from envelope_encryption.kek.aws_secrets_manager import SecretsManagerKekProvider, clear_kek_cache
from envelope_encryption.keyring.secrets_manager_store import SecretsManagerDekStore

REGION = "us-east-1"
KEK_SECRET = "unity_catalog/ms1/main/kek"
DEK_SECRET = "unity_catalog/ms1/main/deks"


@pytest.fixture
def sm(moto):
    """A Secrets Manager client talking to moto over HTTP on 127.0.0.1, on empty state."""
    moto.reset()
    clear_kek_cache()
    client = boto3.client(
        "secretsmanager", region_name=REGION, endpoint_url=moto.url,
        config=Config(retries={"max_attempts": 2, "mode": "standard"}),
    )
    yield client
    clear_kek_cache()


@pytest.fixture
def settings(moto) -> Settings:
    return Settings(
        backend="aws-sm", catalog="main", schemas=("sales", "hr"), metastore_id="ms1",
        options={"aws-region": REGION, "aws-endpoint-url": moto.url},
    )


@pytest.fixture
def kek(sm) -> SecretsManagerKekProvider:
    return SecretsManagerKekProvider(sm, KEK_SECRET)


@pytest.fixture
def store(sm) -> SecretsManagerDekStore:
    return SecretsManagerDekStore(sm, DEK_SECRET)
