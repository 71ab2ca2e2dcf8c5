"""The keyring's integrity key under an RSA vault key, which anyone can wrap for.

RSA-OAEP wrapping needs only the public key, so an integrity key wrapped that way could
have been made by anyone who can write the keyring. Instead the integrity key is sealed
(AES-256-GCM, the wrap context as associated data) under a key derived from a **Key Vault
signature**: ``HKDF-SHA256(RS256-sign(kid, SHA-256(label || context)))``. RS256 (PKCS#1
v1.5) is deterministic, so the same key version always gives the same sealing key, and
only a holder of the private key, that is a caller the vault lets ``sign``, can compute it.
The public key cannot. It costs one ``sign`` call per process (the integrity key is then
cached like a DEK).

Blob: ``0x01 | 0x03 | IV(12) || ciphertext(32) || tag(16)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from ...errors import KeyUnwrapFailed
from ...secret import SecretKey
from ..aes_key_wrap import WRAPPED_BYTES, seal, unseal
from ..base import WrapContext

ALG_SIGN_DERIVED = 0x03
_SIGN_LABEL = b"envelope-encryption/azure-key-vault/keyring-integrity/v1\x00"
_HKDF_INFO = b"envelope-encryption/azure-key-vault/keyring-integrity-seal/v1"

# sign(kid, alg, digest) -> signature: one Key Vault ``sign`` call.
Signer = Callable[[str, str, bytes], bytes]


def _sealing_key(sign: Signer, kid: str, context: WrapContext) -> SecretKey:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    digest = hashlib.sha256(_SIGN_LABEL + context.as_aad()).digest()
    signature = sign(kid, "RS256", digest)
    material = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=_HKDF_INFO).derive(signature)
    return SecretKey(material, label="azure integrity sealing key")


def seal_integrity_key(sign: Signer, kid: str, key: bytes, context: WrapContext,
                       header: bytes) -> bytes:
    """``header`` + the integrity key sealed under the signature-derived key of ``kid``."""
    return header + seal(_sealing_key(sign, kid, context), key, context.as_aad())


def open_integrity_key(sign: Signer, kid: str, blob: bytes, context: WrapContext) -> bytes:
    """The integrity key of ``blob`` (header stripped), or KeyUnwrapFailed."""
    if len(blob) != WRAPPED_BYTES:
        raise KeyUnwrapFailed(f"the wrapped {context.describe()} is truncated")
    plain = unseal(_sealing_key(sign, kid, context), blob, context.as_aad())
    if plain is None:
        raise KeyUnwrapFailed(
            f"the wrapped {context.describe()} does not open with the signature of {kid}: "
            "it was not made by a holder of this vault key, or was changed"
        )
    return plain
