"""The interface every KEK back end implements.

A provider owns one KEK (which may have versions) and turns plaintext DEKs into wrapped
bytes and back. The :class:`WrapContext` (the DEK's scope and version) is bound into every
wrap, as associated data or an encryption context, where the back end supports it, so a
wrapped DEK copied to another scope or version does not unwrap.

Providers take their clients and credentials in their constructor; ``from_settings`` in
each module builds them from :class:`~envelope_encryption.config.Settings`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..secret import SecretKey

DEK_BYTES = 32  # AES-256


@dataclass(frozen=True)
class WrapContext:
    """What a wrapped DEK is bound to: its scope (``catalog.schema``) and version."""

    scope: str
    version: int

    def as_aad(self) -> bytes:
        return f"envelope-encryption/dek/{self.scope}/v{self.version}".encode()


@dataclass(frozen=True)
class WrappedDek:
    """A DEK as stored: opaque wrapped bytes and the exact KEK (and version) that wrapped it."""

    blob: bytes
    kek_id: str
    kek_version: str = ""

    def __repr__(self) -> str:
        return (
            f"WrappedDek(kek_id={self.kek_id!r}, kek_version={self.kek_version!r}, "
            f"{len(self.blob)} bytes)"
        )


@dataclass(frozen=True)
class KekInfo:
    """What a provider says about its KEK (for logs, the status job and keyring records)."""

    backend: str
    kek_id: str
    kek_version: str = ""
    created: bool = False  # True when ensure() created it in this call
    details: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.details)
        version = f" version {self.kek_version}" if self.kek_version else ""
        return f"{self.backend} KEK {self.kek_id}{version}" + (f" ({extra})" if extra else "")


class KekProvider(ABC):
    """One KEK back end. Subclasses translate their SDK's errors into ``errors.KeyService*``."""

    backend: str = "abstract"

    @abstractmethod
    def ensure(self) -> KekInfo:
        """Create the KEK if it does not exist (idempotent) and describe it."""

    @abstractmethod
    def describe(self) -> KekInfo:
        """Describe the KEK without creating anything; KeyNotFound when it does not exist."""

    @abstractmethod
    def wrap(self, dek: SecretKey, context: WrapContext) -> WrappedDek:
        """Wrap a plaintext DEK with the current KEK version."""

    @abstractmethod
    def unwrap(self, wrapped: WrappedDek, context: WrapContext) -> SecretKey:
        """Unwrap with the exact KEK version named in ``wrapped``."""

    def generate_dek(self, context: WrapContext) -> tuple[SecretKey, WrappedDek]:
        """A fresh random 256-bit DEK and its wrapped form.

        The default draws the DEK from the OS CSPRNG and wraps it; a back end with a
        server-side generator (KMS GenerateDataKey) may override this.
        """
        dek = SecretKey(os.urandom(DEK_BYTES), label=f"dek {context.scope} v{context.version}")
        return dek, self.wrap(dek, context)

    def rotate(self) -> KekInfo:
        """Make a new current KEK version. Later wraps use it; old versions still unwrap."""
        raise NotImplementedError(f"the {self.backend} back end does not rotate its KEK")

    def rewrap(self, wrapped: WrappedDek, context: WrapContext) -> WrappedDek:
        """Re-wrap a DEK under the current KEK version.

        The default unwraps and wraps in memory; back ends with a server-side re-encrypt
        (KMS ReEncrypt) override it so the plaintext never reaches this process.
        """
        return self.wrap(self.unwrap(wrapped, context), context)
