"""The AWS back ends: ``aws-kms`` (:mod:`.kms`) and ``aws-sm`` (:mod:`.secrets_manager`).

:mod:`.session` builds every AWS client (one credential and retry policy), :mod:`.errors`
translates SDK errors, :mod:`.secrets` holds what the aws-sm provider and its DEK store
(:mod:`envelope_encryption.keyring.secrets_manager_store`) share.
"""
