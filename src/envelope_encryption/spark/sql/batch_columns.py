"""The columns of a batch as the privileged batch functions get them: pandas Series in Unity
Catalog (``PARAMETER STYLE PANDAS``), pyarrow arrays from the local Arrow stand-ins."""

from __future__ import annotations

from typing import Any


def column_values(column: Any) -> list[Any]:
    """A column of a batch as a list: a pyarrow array (local) or a pandas Series (UC)."""
    if hasattr(column, "to_pylist"):
        return column.to_pylist()
    return [None if v is None or v != v else v for v in column.tolist()]  # NaN is NULL


def column_like(column: Any, values: list[str | None]) -> Any:
    """``values`` as a column of the kind ``column`` is (the answer of a batch function)."""
    if hasattr(column, "to_pylist"):
        import pyarrow as pa

        return pa.array(values, type=pa.string())
    import pandas as pd

    return pd.Series(values, dtype=object)
