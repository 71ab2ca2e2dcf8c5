"""Fixtures of the azure provider tests (the vaults are in tests/support/azure_fixtures.py)."""

from __future__ import annotations

import pytest

from tests.support.azure_fixtures import make_provider
from tests.support.keyvault_server import KeyVaultServer


@pytest.fixture
def provider(vault: KeyVaultServer):
    made = make_provider(vault)
    yield made
    made.close()
