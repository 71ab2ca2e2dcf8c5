"""What the KMS provider pins: the encryption contexts it binds, and the key ARNs it accepts.

**Pinned keys.** An alias can be moved by anyone with ``kms:UpdateAlias``. Once a keyring
has pinned its key ARNs (the ones ``kek_setup`` and this project's own rotations recorded in
the keyring's authenticated integrity metadata, see docs/keyring-integrity.md), the provider
refuses to generate, wrap, re-wrap or keep a DEK under any other key, and refuses, before any
call, to unwrap a record naming another key.
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import KeyServiceError
from ..base import INTEGRITY_PURPOSE, WrapContext

__all__ = ["DEFAULT_ALIAS", "KmsKeyPinning", "default_alias", "encryption_context"]

DEFAULT_ALIAS = "alias/unity_catalog/{metastore_id}/{catalog}/cmk"


def default_alias(metastore_id: str, catalog: str) -> str:
    """The KEK alias of a catalog, as the original notebooks named it."""
    return DEFAULT_ALIAS.format(metastore_id=metastore_id, catalog=catalog)


def encryption_context(metastore_id: str, catalog: str, context: WrapContext) -> dict[str, str]:
    """The KMS encryption context of one DEK.

    ``metastore/catalog`` is the original notebooks' context key (key policies may condition
    on ``kms:EncryptionContext:metastore/catalog``); ``dek_scope`` and ``dek_version`` bind
    the wrapped DEK to its place in the keyring. Encryption contexts are logged by
    CloudTrail in clear: they hold names, never secrets.
    """
    if context.purpose == INTEGRITY_PURPOSE:
        # The keyring's integrity key: a context no DEK has (no dek_scope), so a wrapped DEK
        # never unwraps as the integrity key and the other way round.
        return {
            "metastore/catalog": f"{metastore_id}/{catalog}",
            "purpose": INTEGRITY_PURPOSE,
            "keyring": context.scope,
            "integrity_version": str(context.version),
        }
    return {
        "metastore/catalog": f"{metastore_id}/{catalog}",
        "dek_scope": context.scope,
        "dek_version": str(context.version),
    }



class KmsKeyPinning:
    """The key ARNs a KMS provider accepts once a keyring pinned them (mixin)."""

    alias: str
    pinned: frozenset[str]
    _on_new_kek: Callable[..., None] | None

    def pin(self, kek_ids: frozenset[str],
            on_new_kek: Callable[..., None] | None = None) -> None:
        """Accept only these key ARNs (recorded by kek_setup and this project's rotations)."""
        self.pinned = frozenset(kek_ids)
        self._on_new_kek = on_new_kek

    def _require_pinned(self, arn: str, what: str) -> None:
        """Refuse ``arn`` when the keyring pinned other keys: the alias was repointed."""
        if self.pinned and arn not in self.pinned:
            raise KeyServiceError(
                f"refusing to {what}: KMS key {arn} is not a key of this keyring (recorded: "
                f"{', '.join(sorted(self.pinned))}). {self._repointed_hint()}"
            )

    def _repointed_hint(self) -> str:
        if self.alias:
            return (f"Someone pointed {self.alias} at another key: point it back (aws kms "
                    "update-alias) and find out who moved it; only rotate_kek may change the key")
        return "Fix --kms-key-id"

