"""What the SQL deployment creates: every function and table of :func:`.render.render_deployment`,
listed once, each marked privileged or not.

Built from the names the renderer uses (the constants of :mod:`.target` and
:mod:`.subject_mask`, :meth:`.SqlTarget.decrypt_name` and the others, and
:func:`.equality_sql.lookup_functions`), in the order the deployment creates them.
``preflight`` checks this list against a workspace; ``tests/spark/sql/test_deployed_objects.py``
checks it against the rendered statements (every ``CREATE`` and every owner-only ``REVOKE``),
so the two cannot drift apart.

**Privileged** objects are the ones the deployment keeps for its owner (it revokes everything
from ``account users`` on them): the batch Python functions, which hold the service
credential and unwrap keys (``unwrap_key``, ``dek_records``, ``decrypt_cells``,
``equality_values``, ``subject_hash``, ``decrypt_subject_cells``); ``open_cell`` and
``open_subject_cell``, which take the caller's membership as an argument, so a direct caller
passes the reader check; ``seal_cell``, which encrypts with a key it is given; and the
subject table ``dek_subjects``, whose salts (with a DEK) make the subject keys and whose rows
an erasure removes. Nobody but their owner and the admins may hold any privilege on them.
The others are the column masks and ``encrypt_<schema>`` (EXECUTE for the writer groups,
when configured), and the lookup functions of the equality domains (EXECUTE for the lookup
group, when configured, and nobody else: they are **guarded**, as the privileged objects are).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...keyring.subjects import SUBJECT_TABLE
from .equality_sql import lookup_functions
from .subject_mask import (
    DECRYPT_SUBJECT_CELLS_FUNCTION,
    OPEN_SUBJECT_CELL_FUNCTION,
    SUBJECT_HASH_FUNCTION,
    decrypt_subject_name,
)
from .target import (
    DECRYPT_CELLS_FUNCTION,
    DEK_RECORDS_FUNCTION,
    EQUALITY_VALUES_FUNCTION,
    OPEN_CELL_FUNCTION,
    SEAL_CELL_FUNCTION,
    UNWRAP_FUNCTION,
    SqlOptions,
    SqlTarget,
)

FUNCTION = "FUNCTION"
TABLE = "TABLE"


@dataclass(frozen=True)
class DeployedObject:
    """One function or table the SQL deployment creates."""

    kind: str  # Unity Catalog securable type: FUNCTION or TABLE
    full_name: str  # catalog.schema.name, unquoted
    role: str  # what it is, as a report names it ("unwrap function", "lookup function")
    privileged: bool  # only its owner (and the admins) may hold any privilege on it
    # Principals the deployment grants EXECUTE on it (writers, the lookup group).
    executors: tuple[str, ...] = ()
    # Who may hold a privilege on it is the deployment's to say: its owner, the admins and,
    # EXECUTE only, its executors (privileged objects, and the lookup functions, whose
    # EXECUTE lets a caller test guesses against the blind indexes).
    guarded: bool = False

    @property
    def name(self) -> str:
        """The object's own name, without catalog and schema."""
        return self.full_name.rsplit(".", 1)[-1]


def deployed_objects(target: SqlTarget, options: SqlOptions) -> list[DeployedObject]:
    """Every function and table :func:`.render.render_deployment` creates, in its order.

    Function names are those of the crypto schema in the functions' catalog
    (``--sql-crypto-catalog``); the subject table is in the data catalog's crypto schema,
    beside the keyring. Pure: nothing is rendered or read.
    """
    s = target.settings
    functions = f"{target.functions_catalog}.{s.crypto_schema}"

    def function(name: str, role: str, privileged: bool, executors: tuple[str, ...] = (),
                 guarded: bool = False) -> DeployedObject:
        return DeployedObject(FUNCTION, f"{functions}.{name}", role, privileged, executors,
                              guarded or privileged)

    objects = [function(UNWRAP_FUNCTION, "unwrap function", True)]
    if s.backend == "aws-sm":  # the keyring is a secret, read through this function
        objects.append(function(DEK_RECORDS_FUNCTION, "keyring function", True))
    objects += [function(DECRYPT_CELLS_FUNCTION, "batch decrypt function", True),
                function(OPEN_CELL_FUNCTION, "cell function", True),
                function(SEAL_CELL_FUNCTION, "seal function", True)]
    for schema in s.schemas:
        writers = ((options.group(options.writer_group, s.catalog, schema),)
                   if options.writer_group else ())
        objects += [function(target.decrypt_name(schema), "column mask", False),
                    function(target.encrypt_name(schema), "encrypt function", False, writers)]
    if options.equality_domains:
        lookup_group = options.lookup_group_name(s.catalog)
        objects.append(function(EQUALITY_VALUES_FUNCTION, "equality function", True))
        objects += [function(name, "lookup function", False,
                             (lookup_group,) if lookup_group else (), guarded=True)
                    for _, _, name in lookup_functions(target, options)]
    objects += [
        DeployedObject(TABLE, f"{s.catalog}.{s.crypto_schema}.{SUBJECT_TABLE}",
                       "subject table", True, guarded=True),
        function(SUBJECT_HASH_FUNCTION, "subject hash function", True),
        function(DECRYPT_SUBJECT_CELLS_FUNCTION, "subject decrypt function", True),
        function(OPEN_SUBJECT_CELL_FUNCTION, "subject cell function", True),
    ]
    objects += [function(decrypt_subject_name(schema), "subject column mask", False)
                for schema in s.schemas]
    return objects


__all__ = ["FUNCTION", "TABLE", "DeployedObject", "deployed_objects"]
