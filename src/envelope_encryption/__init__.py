"""Envelope encryption of sensitive columns on the Databricks lakehouse.

Layers (each a sub-package; nothing imports from a layer above it):

1. ``cell``    - the encrypted-cell format and AES-256-GCM, pure functions.
2. ``kek``     - key-encryption-key providers: local file, AWS KMS, AWS Secrets Manager,
                 Azure Key Vault, behind one interface.
3. ``keyring`` - versioned, wrapped data-encryption keys per scope, and their in-memory cache.
4. ``spark``   - DataFrame encrypt/decrypt (Arrow-batched) and the Unity Catalog SQL layer.
5. ``jobs``    - entry points of the bundle's jobs, and the CLI.

``errors``, ``secret`` and ``identifiers`` are shared by every layer.
"""

__version__ = "0.1.0"
