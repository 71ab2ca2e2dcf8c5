"""Arrow string arrays to and from :class:`~envelope_encryption.cell.texts.Texts`.

An Arrow string array is a validity bitmap, ``n + 1`` offsets and one data buffer: the same
layout as :class:`Texts`. Reading one copies the data buffer once and the offsets into a
list; writing one builds the array from the buffers. No Python string is made per value
either way (``to_pylist`` and ``pa.array`` make one each, which cost more than the cipher).
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

from ..cell.texts import Texts
from ..errors import FormatError

if TYPE_CHECKING:
    import pyarrow as pa

# The largest data buffer of an Arrow ``string`` array (its offsets are 32-bit).
MAX_STRING_BYTES = 2**31 - 1


def _offsets_format(array_type: pa.DataType) -> str | None:
    """The ``array`` type code of the offsets of a string array (None: not a string array)."""
    import pyarrow as pa

    if pa.types.is_string(array_type):
        return "i"
    if pa.types.is_large_string(array_type):
        return "q"
    return None


def texts_from_arrow(values: pa.Array) -> Texts | None:
    """The values of an Arrow ``string`` or ``large_string`` array (a slice too: its offset
    is honoured), or None for any other type (the caller reads those value by value)."""
    code = _offsets_format(values.type)
    if code is None:
        return None
    count = len(values)
    _, offsets_buffer, data_buffer = values.buffers()
    start = values.offset
    width = array(code).itemsize
    # A string array of no values may have an empty offsets buffer, or none.
    offsets = (memoryview(offsets_buffer)[start * width:(start + count + 1) * width]
               .cast(code).tolist() if offsets_buffer is not None else []) or [0]
    end = offsets[-1]
    data = data_buffer[:end].to_pybytes() if data_buffer is not None and end else b""
    valid = None
    if values.null_count:
        valid = values.is_valid().to_numpy(zero_copy_only=False).tolist()
    return Texts(data, offsets, valid)


def texts_to_arrow(texts: Texts) -> pa.Array:
    """A ``string`` array of ``texts``; :class:`FormatError` if its data does not fit one.

    The data must be valid UTF-8 value by value (the batch loops check what they return);
    Arrow does not check it here."""
    import pyarrow as pa

    offsets = texts.offsets
    if offsets[-1] > MAX_STRING_BYTES:
        raise FormatError(
            f"a batch's output ({offsets[-1]} bytes) does not fit one Arrow string array; "
            "lower spark.sql.execution.arrow.maxRecordsPerBatch")
    validity = None
    null_count = 0
    if texts.valid is not None:
        null_count = len(texts) - sum(texts.valid)
        if null_count:
            validity = pa.array(texts.valid, type=pa.bool_()).buffers()[1]
    return pa.Array.from_buffers(
        pa.string(), len(texts),
        [validity, pa.py_buffer(array("i", offsets)), pa.py_buffer(texts.data)],
        null_count=null_count)
