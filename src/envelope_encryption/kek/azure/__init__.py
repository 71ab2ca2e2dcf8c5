"""The ``azure`` back end: the KEK is an Azure Key Vault (or Managed HSM) key.

:mod:`.provider` is the provider; :mod:`.credentials` builds credentials and client settings,
:mod:`.errors` translates SDK errors, :mod:`.key_operations` sends HSM key operations,
:mod:`.notebook_helpers` keeps the original notebooks' functions. Nothing here imports the
Azure SDK until it is used.
"""
