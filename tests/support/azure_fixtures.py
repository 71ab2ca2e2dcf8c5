"""Fixtures of the Azure tests: local Key Vaults (a standard vault and a Managed HSM).

Registered for every test by ``tests/conftest.py``; :func:`make_provider` builds a provider
on a local vault for tests that need more than one.
"""

from __future__ import annotations

import itertools

import pytest

from envelope_encryption.kek.azure.provider import AzureKeyVaultKekProvider
from tests.support.keyvault_server import KeyVaultServer, keyvault_server

_names = itertools.count(1)


@pytest.fixture(scope="session")
def _vault_server():
    with keyvault_server() as server:
        yield server


@pytest.fixture(scope="session")
def _hsm_server():
    with keyvault_server(managed_hsm=True) as server:
        yield server


@pytest.fixture
def vault(_vault_server: KeyVaultServer) -> KeyVaultServer:
    """The local standard vault, empty, with zeroed counters."""
    _vault_server.reset()
    return _vault_server


@pytest.fixture
def hsm(_hsm_server: KeyVaultServer) -> KeyVaultServer:
    """The local Managed HSM (accepts oct-HSM keys), empty."""
    _hsm_server.reset()
    return _hsm_server


def make_provider(server: KeyVaultServer, key_name: str | None = None,
                  **kwargs) -> AzureKeyVaultKekProvider:
    """A provider on a local vault; RSA-2048 and short back-off keep the tests fast."""
    kwargs.setdefault("key_size", 2048)
    kwargs.setdefault("retry_backoff_factor", 0.01)
    return AzureKeyVaultKekProvider(
        server.vault_url,
        key_name or f"kek-{next(_names)}",
        server.credential(),
        connection_verify=str(server.ca_file),
        **kwargs,
    )
