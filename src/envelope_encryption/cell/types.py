"""Type tags: which Spark type a cell's plaintext had, and its canonical string form.

A non-string column is encrypted from a canonical string (below) and the tag in the cell's
header says how to turn the decrypted string back into its type. The canonical forms are
Spark's own ``CAST(value AS STRING)`` except where that would depend on the session:

=============  ==========================================  =================================
tag            canonical string                             back to the type
=============  ==========================================  =================================
string         the value itself                             as is
tinyint …      ``CAST(v AS STRING)`` (decimal digits)       ``CAST(s AS <tag>)``
bigint,
float, double,
decimal(p,s),
boolean, date
timestamp      ISO-8601 in UTC with offset,                 ``CAST(s AS TIMESTAMP)``
               ``yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX``
timestamp_ntz  ``yyyy-MM-dd'T'HH:mm:ss.SSSSSS``             ``CAST(s AS TIMESTAMP_NTZ)``
binary         standard base64                              ``unbase64(s)``
=============  ==========================================  =================================
"""

from __future__ import annotations

import re

from ..errors import ConfigError

_SIMPLE_TAGS = (
    "string", "tinyint", "smallint", "int", "bigint", "float", "double", "boolean", "date",
    "timestamp", "timestamp_ntz", "binary",
)
# ASCII digits only, and no "$" (it accepts a trailing newline): fullmatch anchors.
_DECIMAL = re.compile(r"decimal\(([0-9]{1,2}),([0-9]{1,2})\)")
TAG_PATTERN = r"(?:[a-z_]+|decimal\([0-9]{1,2},[0-9]{1,2}\))"


def supported_type_tags() -> tuple[str, ...]:
    return (*_SIMPLE_TAGS, "decimal(p,s)")


def canonical_type_tag(spark_simple_string: str) -> str:
    """The type tag of a Spark type given by its ``simpleString()``, or ConfigError."""
    tag = spark_simple_string.strip().lower()
    if tag in _SIMPLE_TAGS or _DECIMAL.fullmatch(tag):
        return tag
    raise ConfigError(
        f"columns of type {spark_simple_string} cannot be encrypted; supported: "
        + ", ".join(supported_type_tags())
    )
