"""The interface every KEK back end implements, and the checks they all share.

A provider owns one KEK (which may have versions) and turns plaintext DEKs into wrapped
bytes and back. The :class:`WrapContext` (the DEK's scope and version) is bound into every
wrap, as associated data or an encryption context, where the back end supports it, so a
wrapped DEK copied to another scope or version does not unwrap.

:class:`KekProvider` owns what is the same for every back end: ``wrap``/``unwrap`` check the
DEK's length, keep the key inside :class:`~envelope_encryption.secret.SecretKey` until the
moment the service call needs its bytes, and turn any exception a back end did not
translate into :class:`~envelope_encryption.errors.KeyServiceError`. A back end implements
only :meth:`KekProvider._wrap_key` and :meth:`KekProvider._unwrap_key`, which talk to its
service and translate that service's errors.

Providers take their clients and credentials in their constructor and are context managers:
``close()`` (idempotent) releases their clients. ``build_kek_provider`` builds one from
:class:`~envelope_encryption.config.Settings`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

from ..errors import ConfigError, EnvelopeError, KeyServiceError, KeyUnwrapFailed
from ..secret import SecretKey

DEK_BYTES = 32  # AES-256
DEK_PURPOSE = "dek"
# The keyring's integrity key (docs/keyring-integrity.md): wrapped like a DEK, but under a
# context no DEK ever has, so neither can stand in for the other.
INTEGRITY_PURPOSE = "keyring-integrity"


@dataclass(frozen=True)
class WrapContext:
    """What a wrapped key is bound to: its scope (``catalog.schema``, or for the integrity
    key the keyring's name), version and purpose (a DEK, or the keyring's integrity key)."""

    scope: str
    version: int
    purpose: str = DEK_PURPOSE

    def as_aad(self) -> bytes:
        if self.purpose == DEK_PURPOSE:
            return f"envelope-encryption/dek/{self.scope}/v{self.version}".encode()
        return f"envelope-encryption/{self.purpose}/{self.scope}/v{self.version}".encode()

    def describe(self) -> str:
        if self.purpose == DEK_PURPOSE:
            return f"{self.scope} v{self.version}"
        return f"{self.purpose} key of {self.scope} v{self.version}"


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


def dek_key(material: bytes, context: WrapContext) -> SecretKey:
    """``material`` as the DEK of ``context``, refused unless it is a 256-bit key."""
    if len(material) != DEK_BYTES:
        raise KeyUnwrapFailed(
            f"wrapped DEK {context.describe()} does not hold a 256-bit key"
        )
    return SecretKey(material, label=f"dek {context.describe()}")


class KekProvider(ABC):
    """One KEK back end. Subclasses talk to the service and translate its errors."""

    backend: str = "abstract"

    # -- what a back end implements ------------------------------------------------------

    @abstractmethod
    def ensure(self) -> KekInfo:
        """Create the KEK if it does not exist (idempotent) and describe it."""

    @abstractmethod
    def describe(self) -> KekInfo:
        """Describe the KEK without creating anything; KeyNotFound when it does not exist."""

    @abstractmethod
    def _wrap_key(self, dek: bytes, context: WrapContext) -> WrappedDek:
        """Wrap 32 checked DEK bytes with the current KEK version (service call only)."""

    @abstractmethod
    def _unwrap_key(self, wrapped: WrappedDek, context: WrapContext) -> bytes:
        """The DEK bytes of ``wrapped``, using the exact KEK version it names."""

    # -- what every back end shares ------------------------------------------------------

    def wrap(self, dek: SecretKey, context: WrapContext) -> WrappedDek:
        """Wrap a plaintext DEK with the current KEK version."""
        if not isinstance(dek, SecretKey):
            raise TypeError("wrap takes the DEK as a SecretKey")
        if len(dek) != DEK_BYTES:
            raise ConfigError(
                f"refusing to wrap DEK {context.describe()}: it is {len(dek)} bytes, not a "
                "256-bit key"
            )
        with self._translated("wrap", context):
            return self._wrap_key(dek.reveal(), context)

    def unwrap(self, wrapped: WrappedDek, context: WrapContext) -> SecretKey:
        """Unwrap with the exact KEK version named in ``wrapped``."""
        with self._translated("unwrap", context):
            material = self._unwrap_key(wrapped, context)
        return dek_key(material, context)

    def generate_dek(self, context: WrapContext) -> tuple[SecretKey, WrappedDek]:
        """A fresh random 256-bit DEK and its wrapped form.

        The default draws the DEK from the OS CSPRNG and wraps it; a back end with a
        server-side generator (KMS GenerateDataKey) may override this.
        """
        dek = SecretKey(os.urandom(DEK_BYTES), label=f"dek {context.describe()}")
        return dek, self.wrap(dek, context)

    def pin(self, kek_ids: frozenset[str],  # noqa: B027 - a no-op by default, not abstract
            on_new_kek: Callable[[str, Callable[[WrappedDek, WrapContext], WrappedDek]], None]
            | None = None) -> None:
        """Accept only these KEK ids from now on (the keyring's authenticated record of them).

        The default does nothing: back ends whose KEK identity is fixed by configuration (a
        file, a secret name, a vault and key name) check it themselves. KMS, whose alias can
        be moved by anyone with ``kms:UpdateAlias``, refuses any other key ARN, and before
        its own rotation moves the alias it calls ``on_new_kek(new_id, rewrap_to_new)`` so
        the keyring records the new key first.
        """

    def rotate(self) -> KekInfo:
        """Make a new current KEK version. Later wraps use it; old versions still unwrap."""
        raise NotImplementedError(f"the {self.backend} back end does not rotate its KEK")

    def rewrap(self, wrapped: WrappedDek, context: WrapContext) -> WrappedDek:
        """Re-wrap a DEK under the current KEK version.

        The default unwraps and wraps in memory; back ends with a server-side re-encrypt
        (KMS ReEncrypt) override it so the plaintext never reaches this process.
        """
        return self.wrap(self.unwrap(wrapped, context), context)

    @contextmanager
    def _translated(self, action: str, context: WrapContext) -> Iterator[None]:
        """Let the project's errors through; any other exception becomes KeyServiceError.

        Only the exception's type is named: an SDK's message or arguments could carry
        request bodies, and a traceback's locals the key, so the cause is not chained.
        """
        try:
            yield
        except EnvelopeError:
            raise
        except Exception as error:
            raise KeyServiceError(
                f"the {self.backend} back end failed to {action} DEK {context.describe()} "
                f"({type(error).__name__}, not translated by the back end)"
            ) from None

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:  # noqa: B027 - a no-op by default, not abstract: most hold nothing
        """Release clients and connections. Idempotent; the default holds none."""

    def __enter__(self) -> KekProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend!r})"
