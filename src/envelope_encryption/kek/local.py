"""The ``local`` back end: a KEK in a file. For development and tests only.

The file holds versioned 256-bit keys, one per line as ``<version> <hex>``; the last line is
the current version. It is created exclusively (``O_EXCL``) with mode 0600 before any key is
written, never opened through a symlink, and refused when group or others can read it or
another user owns it; rotation appends under an exclusive ``flock``.
DEKs are wrapped with AES-256-GCM (:mod:`.aes_key_wrap`), the DEK's scope and version bound
as associated data. Wrapped bytes are ``IV(12) || ciphertext(32) || tag(16)``.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import uuid
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import ConfigError, KeyNotFound, KeyUnwrapFailed
from ..secret import SecretKey
from .aes_key_wrap import WRAPPED_BYTES, seal, unseal
from .base import DEK_BYTES, KekInfo, KekProvider, WrapContext, WrappedDek

log = logging.getLogger(__name__)

DEV_ONLY_WARNING = (
    "the local KEK back end keeps the KEK in a file on this machine: development and tests "
    "only, never for real data"
)


class LocalKekProvider(KekProvider):
    backend = "local"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # -- file handling -------------------------------------------------------------------
    #
    # Every open uses O_NOFOLLOW (a symlink planted at the path is refused, not followed) and
    # checks the opened file itself (fstat), so nothing can swap the file between the check
    # and the read. Readers hold a shared flock, rotation an exclusive one; creation writes
    # the first version into a private temporary file (O_CREAT | O_EXCL | O_NOFOLLOW, 0600)
    # and links it into place, which fails when the file exists: of two concurrent
    # creations exactly one wins, and nobody ever sees an empty or half-written file.

    def _check_open_file(self, fd: int) -> None:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"refusing KEK file {self.path}: not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"refusing KEK file {self.path}: its mode is {mode:o}, readable by others; "
                f"run 'chmod 600 {self.path}'"
            )
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise ConfigError(f"refusing KEK file {self.path}: it belongs to another user")

    def _open(self, flags: int) -> int:
        """An fd of the KEK file, never through a symlink, its type and mode checked."""
        try:
            fd = os.open(self.path, flags | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise KeyNotFound(
                f"no local KEK file at {self.path}: run the kek_setup job first"
            ) from None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise ConfigError(
                    f"refusing KEK file {self.path}: it is a symbolic link"
                ) from None
            raise
        try:
            self._check_open_file(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _parse(self, text: str) -> list[tuple[str, SecretKey]]:
        versions: list[tuple[str, SecretKey]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                version, hexkey = line.split()
                material = bytes.fromhex(hexkey)
            except ValueError:
                raise ConfigError(f"KEK file {self.path} is corrupt at line {number}") from None
            if len(material) != DEK_BYTES:
                raise ConfigError(f"KEK file {self.path} line {number}: not a 256-bit key")
            if any(seen == version for seen, _ in versions):
                raise ConfigError(f"KEK file {self.path} holds version {version} twice")
            versions.append((version, SecretKey(material, label=f"local kek v{version}")))
        if not versions:
            raise ConfigError(f"KEK file {self.path} holds no key")
        return versions

    @staticmethod
    def _read_fd(fd: int) -> str:
        chunks = []
        offset = 0
        while chunk := os.pread(fd, 65536, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks).decode("ascii", errors="replace")

    def _read(self) -> list[tuple[str, SecretKey]]:
        fd = self._open(os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            return self._parse(self._read_fd(fd))
        finally:
            os.close(fd)  # closing releases the lock

    @staticmethod
    def _line(version: str) -> bytes:
        return f"{version} {os.urandom(DEK_BYTES).hex()}\n".encode()

    def _create(self) -> bool:
        """Create the file with version 1; False when it already exists (someone else won)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        # O_EXCL | O_NOFOLLOW, 0600: a fresh private file, created before any key is written.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, self._line("1"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, self.path)  # atomic; fails when the path exists (even a symlink)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(temporary)

    def _append_next_version(self) -> None:
        """Append version (last + 1) under an exclusive lock: concurrent rotations serialise."""
        fd = self._open(os.O_RDWR | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current, _ = self._parse(self._read_fd(fd))[-1]
            os.write(fd, self._line(str(int(current) + 1)))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _key(self, version: str) -> SecretKey:
        for candidate, key in self._read():
            if candidate == version:
                return key
        raise KeyNotFound(f"local KEK {self.path} has no version {version!r}")

    # -- interface -----------------------------------------------------------------------

    def ensure(self) -> KekInfo:
        log.warning(DEV_ONLY_WARNING)
        created = False
        if not os.path.lexists(self.path):
            created = self._create()
        info = self.describe()  # re-read: after a lost race, the winner's version 1
        return KekInfo(info.backend, info.kek_id, info.kek_version, created, info.details)

    def describe(self) -> KekInfo:
        version, _ = self._read()[-1]
        return KekInfo(
            self.backend, str(self.path.resolve()), version, details=(("dev_only", "true"),)
        )

    def _wrap_key(self, dek: bytes, context: WrapContext) -> WrappedDek:
        version, kek = self._read()[-1]
        return WrappedDek(seal(kek, dek, context.as_aad()), str(self.path.resolve()), version)

    def _unwrap_key(self, wrapped: WrappedDek, context: WrapContext) -> bytes:
        kek = self._key(wrapped.kek_version)
        if len(wrapped.blob) != WRAPPED_BYTES:
            raise KeyUnwrapFailed(f"wrapped DEK for {context.describe()} is truncated")
        plain = unseal(kek, wrapped.blob, context.as_aad())
        if plain is None:
            raise KeyUnwrapFailed(
                f"wrapped DEK for {context.describe()} does not unwrap with local KEK version "
                f"{wrapped.kek_version}: wrong KEK, wrong scope/version, or tampered"
            )
        return plain

    def rotate(self) -> KekInfo:
        self._append_next_version()
        return self.describe()


def from_settings(settings: Settings, credential: Any | None = None) -> LocalKekProvider:
    """The provider of ``--local-kek-file`` (a file needs no credential: ``credential`` is
    accepted, like every back end's, and unused)."""
    return LocalKekProvider(settings.option("local-kek-file"))
