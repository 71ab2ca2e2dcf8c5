"""The project's own errors.

Every error that leaves a layer is one of these, with a message that says what to do. Cloud
SDK errors are translated at the KEK-provider border. No message ever contains key material
or a decrypted value.
"""

from __future__ import annotations


class EnvelopeError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(EnvelopeError, ValueError):
    """A parameter, variable or identifier is missing or invalid.

    Also a ValueError, so argparse reports a bad ``type=`` conversion as a usage error.
    """


class FormatError(EnvelopeError):
    """A value is not a well-formed encrypted cell (or a truncated one)."""


class DecryptionError(EnvelopeError):
    """Authentication failed: wrong key, wrong place (AAD), or a tampered value."""


class UnknownKeyVersion(EnvelopeError):
    """A cell names a DEK version the keyring does not have (or has retired)."""


class DestroyedKey(UnknownKeyVersion):
    """A cell or a request names a DEK version that was destroyed (crypto-shredded): its
    values can never be read again."""


class KeyringError(EnvelopeError):
    """The DEK store is inconsistent, or a change to it was refused."""


class ConcurrentModification(KeyringError):
    """Another writer changed the DEK store (or rotated the KEK) between our read and our write."""


class KeyServiceError(EnvelopeError):
    """A KEK back end (KMS, Secrets Manager, Key Vault, local file) refused or failed."""


class KeyNotFound(KeyServiceError):
    """The KEK (or one of its versions) does not exist."""


class KeyAccessDenied(KeyServiceError):
    """The caller lacks a permission; the message names the action or role needed."""


class KeyDisabled(KeyServiceError):
    """The KEK (or the version that wrapped a DEK) is disabled or pending deletion."""


class KeyUnwrapFailed(KeyServiceError):
    """The key service rejected a wrapped DEK: wrong context, wrong key, or tampered bytes."""


class KeyServiceThrottled(KeyServiceError):
    """The key service kept throttling after the client's retries."""
