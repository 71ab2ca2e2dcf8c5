"""The local KEK file: exclusive creation, no symlinks, permissions checked on every open,
and real concurrent processes creating and rotating it."""

from __future__ import annotations

import multiprocessing
import os
import stat

import pytest

from envelope_encryption.errors import ConfigError
from envelope_encryption.kek.local import LocalKekProvider


def _versions(path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def test_a_symlink_is_refused_and_never_written_through(tmp_path):
    target = tmp_path / "elsewhere.key"
    target.write_text("")
    target.chmod(0o600)
    link = tmp_path / "kek.key"
    link.symlink_to(target)
    kek = LocalKekProvider(link)
    with pytest.raises(ConfigError, match="symbolic link"):
        kek.ensure()
    with pytest.raises(ConfigError, match="symbolic link"):
        kek.rotate()
    assert target.read_text() == ""  # no key material went through the link
    dangling = tmp_path / "dangling.key"
    dangling.symlink_to(tmp_path / "missing.key")
    with pytest.raises(ConfigError, match="symbolic link"):
        LocalKekProvider(dangling).ensure()
    assert not (tmp_path / "missing.key").exists()


def test_permissions_are_checked_before_reading_and_before_appending(tmp_path):
    path = tmp_path / "kek.key"
    kek = LocalKekProvider(path)
    kek.ensure()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_text()
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        kek.rotate()
    assert path.read_text() == before  # nothing appended to a file others can read
    with pytest.raises(ConfigError, match="chmod 600"):
        kek.describe()


def test_creation_leaves_no_temporary_file_and_refuses_duplicate_versions(tmp_path):
    path = tmp_path / "kek.key"
    LocalKekProvider(path).ensure()
    assert os.listdir(tmp_path) == ["kek.key"]
    line = path.read_text()
    path.write_text(line + line)
    with pytest.raises(ConfigError, match="version 1 twice"):
        LocalKekProvider(path).describe()


def _ensure(path: str, barrier) -> str:
    barrier.wait()
    return LocalKekProvider(path).ensure().kek_version


def _rotate(path: str, barrier) -> str:
    barrier.wait()
    return LocalKekProvider(path).rotate().kek_version


def _run_at_once(function, path, processes: int) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    workers = [context.Process(target=function, args=(str(path), barrier))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0


def test_concurrent_processes_create_one_version_1_and_rotate_without_duplicates(tmp_path):
    path = tmp_path / "kek.key"
    _run_at_once(_ensure, path, 6)
    assert _versions(path) == ["1"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    _run_at_once(_rotate, path, 6)
    assert _versions(path) == [str(v) for v in range(1, 8)]
    assert sorted(os.listdir(tmp_path)) == ["kek.key"]
