"""The ``local`` KEK back end: what is its own (the key file). The contract every back end
keeps (wrapping, binding, rotation) is in tests/kek/test_contract.py."""

from __future__ import annotations

import stat

import pytest

from envelope_encryption.errors import ConfigError, KeyNotFound
from envelope_encryption.kek.local import LocalKekProvider


def test_local_kek_file_is_private_and_checked(tmp_path):
    path = tmp_path / "dir" / "kek.key"
    kek = LocalKekProvider(path)
    with pytest.raises(KeyNotFound, match="run the kek_setup job"):
        kek.describe()
    info = kek.ensure()
    assert info.created and info.kek_version == "1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not kek.ensure().created  # idempotent
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        kek.describe()
