"""Fixtures of the fault tests: a back end behind a fault plan, by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.kek.aws import session as aws_session
from envelope_encryption.kek.azure import provider as azure_provider
from tests.faults.scenario import aws_settings, azure_settings, unique_catalog
from tests.support.fault_proxy import FaultPlan, fault_proxy

BACKENDS = ("aws-kms", "aws-sm", "azure")


@pytest.fixture
def faulty_backend(moto, vault, monkeypatch) -> Callable:
    """``faulty_backend(name, plan)``: a context giving the settings of back end ``name``
    whose every key-service call (KMS, Secrets Manager, Key Vault) goes through ``plan``."""

    @contextmanager
    def make(backend: str, plan: FaultPlan) -> Iterator[Settings]:
        catalog = unique_catalog(backend.replace("-", ""))
        if backend == "azure":
            vault.fault_plan = plan
            try:
                yield azure_settings(vault, catalog, monkeypatch)
            finally:
                vault.fault_plan = None
            return
        moto.reset()
        with fault_proxy(moto.url, plan) as proxy:
            yield aws_settings(backend, proxy.url, catalog)

    return make


@pytest.fixture
def short_retries(monkeypatch):
    """Retry budgets shrunk for outage tests: 3 attempts on AWS (not 10), 2 quick retries on
    Azure, so an outage is declared in seconds; what is retried stays the production code's."""
    monkeypatch.setitem(aws_session.RETRIES, "max_attempts", 3)
    original = azure_provider.client_kwargs

    def quick(vault_url, connection_verify, retry_total, retry_backoff_factor):
        return original(vault_url, connection_verify, 2, 0.05)

    monkeypatch.setattr(azure_provider, "client_kwargs", quick)
