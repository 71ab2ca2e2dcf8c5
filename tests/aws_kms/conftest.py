"""Fixtures of the aws-kms tests: settings and providers pointed at the moto server.

Every provider here is built by ``from_settings`` exactly as a job builds it; only
``--aws-endpoint-url`` differs from production. moto's state is reset before each test.
"""

from __future__ import annotations

import boto3
import pytest

from envelope_encryption.config import Settings
from envelope_encryption.kek.aws_kms import KmsKekProvider, from_settings

REGION = "eu-west-1"


@pytest.fixture
def kms_url(moto) -> str:
    moto.reset()
    return moto.url


@pytest.fixture
def make_settings(kms_url):
    def make(catalog: str = "main", metastore_id: str = "ms-1", schemas=("default",),
             **options: str) -> Settings:
        opts = {"aws-endpoint-url": kms_url, "aws-region": REGION}
        opts.update({k.replace("_", "-"): v for k, v in options.items()})
        return Settings(backend="aws-kms", catalog=catalog, schemas=tuple(schemas),
                        metastore_id=metastore_id, options=opts)

    return make


@pytest.fixture
def make_provider(make_settings):
    def make(**kwargs) -> KmsKekProvider:
        return from_settings(make_settings(**kwargs))

    return make


@pytest.fixture
def kms(kms_url):
    """A plain boto3 KMS client for the test's own checks and set-up (not the code under test)."""
    return boto3.client("kms", endpoint_url=kms_url, region_name=REGION)
