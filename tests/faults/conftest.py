"""Fixtures of the fault tests: a back end behind a fault plan, by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from envelope_encryption.config import Settings
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
