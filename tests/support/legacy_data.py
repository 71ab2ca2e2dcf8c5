"""A secret and cells made exactly the way the original Secrets Manager notebooks made them.

The notebooks: ``kek_password = b64encode(token_bytes(32))``, ``kek_salt =
b64encode(random 32 bytes)``; the DEK is ``b64encode(token_bytes(24))`` (a 32-character
text); the KEK is ``scrypt(password, b64decode(salt), key_len=32, N=2**17, r=8, p=1)``; the
DEK text is encrypted with AES-GCM under it (their library's default: a random 16-byte
nonce, a 16-byte tag, no AAD) and ciphertext, nonce and tag are stored base64 in the secret
as ``<schema>_dek``, ``<schema>_nonce``, ``<schema>_tag``. Cells are
``base64(aes_encrypt(col, '<dek text>', 'GCM', 'DEFAULT'))`` in Spark SQL.
"""

from __future__ import annotations

import secrets
from base64 import b64decode, b64encode

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt


def legacy_secret(schemas: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the secret's JSON fields, the plaintext DEK text of each schema)."""
    fields = {
        "kek_password": b64encode(secrets.token_bytes(32)).decode("utf-8"),
        "kek_salt": b64encode(secrets.token_bytes(32)).decode("utf-8"),
    }
    kek = Scrypt(salt=b64decode(fields["kek_salt"]), length=32, n=2**17, r=8, p=1).derive(
        fields["kek_password"].encode("utf-8"))
    deks = {}
    for schema in schemas:
        dek = b64encode(secrets.token_bytes(24)).decode("utf-8")
        nonce = secrets.token_bytes(16)
        sealed = AESGCM(kek).encrypt(nonce, dek.encode("utf-8"), None)
        fields[f"{schema}_dek"] = b64encode(sealed[:-16]).decode("utf-8")
        fields[f"{schema}_nonce"] = b64encode(nonce).decode("utf-8")
        fields[f"{schema}_tag"] = b64encode(sealed[-16:]).decode("utf-8")
        deks[schema] = dek
    return fields, deks


# -- the KMS and Key Vault variants: their key table --------------------------------------

# Their table's columns (Databricks: ``id BIGINT GENERATED ALWAYS AS IDENTITY``; the Azure
# table also has ``PRIMARY KEY (key_name, key_version)`` and ``delta.appendOnly``, which a
# local parquet table cannot carry; the columns and their types are theirs).
_COMMON = ("id BIGINT, created_date DATE, created_time TIMESTAMP, last_modified_time "
           "TIMESTAMP, created_by STRING, managed_by STRING, {scope} STRING, key_enabled "
           "BOOLEAN, key_version INT, key_type STRING, key BINARY")
NOTEBOOK_DDL = {"aws-kms": _COMMON.format(scope="key_alias"),
                "azure": _COMMON.format(scope="key_name")}
NOTEBOOK_COLUMNS = {kind: [part.split()[0] for part in ddl.split(", ")]
                    for kind, ddl in NOTEBOOK_DDL.items()}
