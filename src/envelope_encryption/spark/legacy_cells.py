"""How many legacy (header-less) cells each imported legacy DEK version opens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..keyring.keyring import Keyring
from ..legacy.keys import legacy_deks

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def legacy_cells_per_version(df: DataFrame, columns: Sequence[str], keyring: Keyring,
                             scope: str) -> dict[int, int]:
    """Legacy cells of ``columns`` per legacy DEK version that opens them (one pass; a value
    no legacy key opens is not counted). Empty when the scope has no legacy DEK."""
    from pyspark.sql import functions as F

    versions_and_keys = legacy_deks(keyring, scope)
    if not versions_and_keys or not columns:
        return {}
    versions = [v for v, _ in versions_and_keys]
    keys = [k.reveal() for _, k in versions_and_keys]

    def opened_by(value):  # no annotations: a plain Python UDF, one value at a time
        from envelope_encryption.cell.format import CELL_PREFIX
        from envelope_encryption.cell.legacy import legacy_key_index

        if value is None or value.startswith(CELL_PREFIX):
            return None
        index = legacy_key_index(value, keys)
        return None if index is None else versions[index]

    version_of = F.udf(opened_by, "int")
    found = df.select(F.explode(F.array(*[version_of(F.col(f"`{c}`")) for c in columns]))
                      .alias("version")).where("version IS NOT NULL")
    return {row["version"]: row["count"] for row in found.groupBy("version").count().collect()}
