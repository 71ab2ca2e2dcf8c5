"""Names of Key Vault keys: the default KEK name, and the parts of a key id (kid)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from azure.keyvault.keys import KeyVaultKey

KEY_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")


def default_key_name(metastore_id: str, catalog: str) -> str:
    """``unity-catalog-<metastore_id>-<catalog>-kek`` with underscores as dashes."""
    return f"unity-catalog-{metastore_id}-{catalog}-kek".replace("_", "-")


def kid_origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def key_type_of(key: KeyVaultKey) -> str:
    return str(getattr(key.key_type, "value", key.key_type))


def short_kid(kid: str) -> str:
    """``<name>/<version>`` of a kid, for messages."""
    parts = urlsplit(kid).path.strip("/").split("/")
    return "/".join(parts[1:]) if len(parts) >= 2 else kid
