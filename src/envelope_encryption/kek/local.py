"""The ``local`` back end: a KEK in a file. For development and tests only.

The file holds versioned 256-bit keys, one per line as ``<version> <hex>``; the last line is
the current version. It is created with mode 0600 and refused when group or others can read
it. DEKs are wrapped with AES-256-GCM (:mod:`.aes_key_wrap`), the DEK's scope and version bound
as associated data. Wrapped bytes are ``IV(12) || ciphertext(32) || tag(16)``.
"""

from __future__ import annotations

import logging
import os
import stat
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

    def _check_permissions(self) -> None:
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"refusing KEK file {self.path}: its mode is {mode:o}, readable by others; "
                f"run 'chmod 600 {self.path}'"
            )

    def _read(self) -> list[tuple[str, SecretKey]]:
        if not self.path.exists():
            raise KeyNotFound(f"no local KEK file at {self.path}: run the kek_setup job first")
        self._check_permissions()
        versions = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                version, hexkey = line.split()
                material = bytes.fromhex(hexkey)
            except ValueError:
                raise ConfigError(f"KEK file {self.path} is corrupt at line {number}") from None
            if len(material) != DEK_BYTES:
                raise ConfigError(f"KEK file {self.path} line {number}: not a 256-bit key")
            versions.append((version, SecretKey(material, label=f"local kek v{version}")))
        if not versions:
            raise ConfigError(f"KEK file {self.path} holds no key")
        return versions

    def _append_version(self, version: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = f"{version} {os.urandom(DEK_BYTES).hex()}\n"
        # O_CREAT with 0600: the file is never readable by others, not even for a moment.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
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
        if not self.path.exists():
            self._append_version("1")
            created = True
        info = self.describe()
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
        current, _ = self._read()[-1]
        self._append_version(str(int(current) + 1))
        return self.describe()


def from_settings(settings: Settings, credential: Any | None = None) -> LocalKekProvider:
    """The provider of ``--local-kek-file`` (a file needs no credential: ``credential`` is
    accepted, like every back end's, and unused)."""
    return LocalKekProvider(settings.option("local-kek-file"))
