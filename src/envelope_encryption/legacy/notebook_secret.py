"""The original notebooks' Secrets Manager secret: read its DEKs, store them in the keyring.

The original Secrets Manager notebooks kept one JSON secret,
``unity_catalog/<metastore_id>/<catalog>``, holding a KEK *password and salt* and, per
schema, the schema's DEK encrypted under a key derived from them:

* ``kek_password`` - text (base64 of 32 random bytes), used as the scrypt password;
* ``kek_salt`` - base64 of the scrypt salt;
* ``<schema>_dek``, ``<schema>_nonce``, ``<schema>_tag`` - base64 of the AES-GCM ciphertext,
  nonce (16 bytes, the default of the library they used) and tag (16 bytes), no AAD.

The KEK is ``scrypt(password, salt, N=2**17, r=8, p=1, 32 bytes)``. The plaintext DEK is a
32-character text (base64 of 24 random bytes) whose UTF-8 bytes Spark used directly as the
AES-256 key: ``base64(aes_encrypt(col, dek, 'GCM', 'DEFAULT'))``.

Each DEK is stored as **version 1** of ``<catalog>.<schema>`` with
``key_type = LEGACY_IMPORTED_DEK``, wrapped by the configured KEK, so cells the notebooks
wrote stay readable (as legacy cells) and can be re-encrypted into the current format; a
fresh DEK, version 2, becomes the active one (:mod:`.importer`). The old secret is only
read, never changed or deleted. A re-run skips scopes imported before (same DEK), and
refuses scopes whose version 1 is some other key.

The job that runs this is ``import_legacy`` (:mod:`envelope_encryption.jobs.import_legacy`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError, KeyUnwrapFailed
from ..identifiers import validate_identifier
from ..kek.base import KekProvider
from ..keyring.base import DekStore
from ..secret import SecretKey
from .importer import ImportReport, LegacyDek, import_versions

SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LENGTH = 2**17, 8, 1, 32
LEGACY_DEK_BYTES = 32


def _b64(document: dict[str, Any], name: str, source: str) -> bytes:
    try:
        return base64.b64decode(document[name], validate=True)
    except KeyError:
        raise ConfigError(f"legacy secret {source} has no field {name!r}") from None
    except (TypeError, ValueError):
        raise ConfigError(f"legacy secret {source}: field {name!r} is not base64") from None


def legacy_schemas(document: dict[str, Any]) -> list[str]:
    """Schemas with a complete ``<schema>_dek/_nonce/_tag`` triple, in name order."""
    return sorted(
        key[: -len("_dek")] for key in document
        if key.endswith("_dek") and f"{key[:-4]}_nonce" in document
        and f"{key[:-4]}_tag" in document
    )


def derive_legacy_kek(password: str, salt: bytes) -> SecretKey:
    """The original KEK: scrypt of the password text (latin-1, as the notebooks' library
    encoded text) with N=2**17, r=8, p=1. About 128 MB and a fraction of a second, once."""
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    kdf = Scrypt(salt=salt, length=SCRYPT_LENGTH, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return SecretKey(kdf.derive(password.encode("latin-1")), label="legacy kek")


def read_legacy_deks(
    document: dict[str, Any], source: str, schemas: Sequence[str] | None = None
) -> dict[str, SecretKey]:
    """Decrypt every (or the named) schema's DEK of a legacy secret document."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    found = legacy_schemas(document)
    wanted = list(schemas) if schemas else found
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise ConfigError(f"legacy secret {source} has no DEK for schema(s) "
                          f"{', '.join(missing)} (it has: {', '.join(found) or 'none'})")
    if "kek_password" not in document:
        raise ConfigError(f"legacy secret {source} has no field 'kek_password'")
    kek = derive_legacy_kek(str(document["kek_password"]), _b64(document, "kek_salt", source))
    deks: dict[str, SecretKey] = {}
    for schema in wanted:
        validate_identifier(schema, "schema")
        ciphertext = _b64(document, f"{schema}_dek", source)
        nonce = _b64(document, f"{schema}_nonce", source)
        tag = _b64(document, f"{schema}_tag", source)
        try:
            text = AESGCM(kek.reveal()).decrypt(nonce, ciphertext + tag, None)
        except InvalidTag:
            raise KeyUnwrapFailed(
                f"legacy DEK of schema {schema} in {source} does not decrypt with the secret's "
                "kek_password/kek_salt: the secret was changed by hand or is corrupt"
            ) from None
        if len(text) != LEGACY_DEK_BYTES:
            raise KeyUnwrapFailed(
                f"legacy DEK of schema {schema} in {source} is {len(text)} bytes, not a "
                f"{LEGACY_DEK_BYTES}-character AES-256 key"
            )
        deks[schema] = SecretKey(text, label=f"legacy dek {schema}")
    return deks


def import_deks(
    deks: dict[str, SecretKey], catalog: str, store: DekStore, kek: KekProvider,
    source: str, who: str = "unknown", *, dry_run: bool = False,
) -> ImportReport:
    """Store each schema's legacy DEK as version 1 of ``<catalog>.<schema>``, with a fresh
    active DEK above it (:func:`~.importer.import_versions`)."""
    found = {f"{validate_identifier(catalog, 'catalog')}.{schema}": [LegacyDek(1, dek)]
             for schema, dek in deks.items()}
    return import_versions(found, store, kek, source, who, dry_run=dry_run)


def read_legacy_secret(client: Any, secret_name: str) -> dict[str, Any]:
    """The legacy secret's JSON (read only: AWSCURRENT, never changed or deleted)."""
    from ..kek.aws.secrets import sm_call

    value = sm_call("secretsmanager:GetSecretValue", secret_name, client.get_secret_value,
                    SecretId=secret_name, VersionStage="AWSCURRENT")
    try:
        document = json.loads(value["SecretString"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"legacy secret {secret_name} is not a JSON document") from None
    if not isinstance(document, dict):
        raise ConfigError(f"legacy secret {secret_name} is not a JSON object")
    return document


def import_legacy_secret(
    client: Any, secret_name: str, catalog: str, store: DekStore, kek: KekProvider,
    schemas: Sequence[str] | None = None, who: str = "unknown", *, dry_run: bool = False,
) -> ImportReport:
    """Read the original notebooks' secret and import its DEKs (see the module docstring)."""
    document = read_legacy_secret(client, secret_name)
    deks = read_legacy_deks(document, secret_name, schemas)
    return import_deks(deks, catalog, store, kek, secret_name, who, dry_run=dry_run)
