"""Where ``encrypt_columns`` keeps its progress, and how it reads landed files exactly.

- **Checkpoint.** A folder per target: Structured Streaming's offsets and commits, the
  schema recorded at the first run (``_schema.json``), the local commit log of written
  batches (``_txn/``, see :mod:`.ingest_sink`) and the lock that keeps a second run out.
  Default: ``/Volumes/<catalog>/<schema>/envelope_checkpoints/encrypt_columns/<table>`` on
  Databricks (a managed volume of the target's schema, created when missing), and
  ``<local state>/checkpoints/<catalog>/<schema>/<table>`` locally (``.envelope/`` by default).
- **CSV as RFC 4180**: ``"`` quotes and doubles itself, quoted fields keep commas and line
  breaks, no whitespace is trimmed, the header row is checked against the schema's names.
  An unquoted empty field is NULL; a quoted empty field (``""``) is the empty string.
- **Schema**: given (``--source-schema``, a DDL string) or inferred once, at the first run,
  and recorded next to the checkpoint; later runs read with the recorded schema, so a file
  whose first rows look different cannot change a column's type. A row that does not fit
  the schema fails the run (``FAILFAST``): nothing is turned into NULL silently.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..identifiers import quote

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

FILE_FORMATS = ("csv", "json", "parquet")
SOURCE_FILE_COLUMN = "_source_file"
SCHEMA_FILE = "_schema.json"
CHECKPOINT_VOLUME = "envelope_checkpoints"

# Spark compares each unquoted CSV field with ``nullValue``; its default ("") would also
# turn a quoted empty field into NULL. A value no text file holds keeps "" as "".
CSV_NULL_SENTINEL = "\u0000envelope:no-null-value\u0000"
CSV_OPTIONS: dict[str, str] = {
    "header": "true",
    "enforceSchema": "false",  # the header's names must match the schema's, in order
    "quote": '"',
    "escape": '"',
    "multiLine": "true",
    "ignoreLeadingWhiteSpace": "false",
    "ignoreTrailingWhiteSpace": "false",
    "nullValue": CSV_NULL_SENTINEL,
    "encoding": "UTF-8",
    "mode": "FAILFAST",
}
JSON_OPTIONS: dict[str, str] = {"mode": "FAILFAST", "encoding": "UTF-8"}
LINE_SEPARATORS = {"auto": "", "crlf": "\r\n", "lf": "\n"}
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_REMOTE_SCHEMES = ("s3://", "s3a://", "abfss://", "gs://", "dbfs:/")


def reader_options(source_format: str, line_separator: str = "auto") -> dict[str, str]:
    """The options of the file reader for ``source_format`` (both Auto Loader and Spark).

    ``line_separator`` (CSV): ``crlf`` (RFC 4180) or ``lf`` reads every value exactly, and a
    file with the other separator fails the run; ``auto`` lets Spark detect it per file, and
    then a CRLF *inside a quoted value* of a CRLF file is read as LF.
    """
    if source_format not in FILE_FORMATS:
        raise ConfigError(
            f"unknown --source-format {source_format!r}: use {', '.join(FILE_FORMATS)} or table"
        )
    if line_separator not in LINE_SEPARATORS:
        raise ConfigError(f"--csv-line-separator must be one of {', '.join(LINE_SEPARATORS)}, "
                          f"not {line_separator!r}")
    options = dict({"csv": CSV_OPTIONS, "json": JSON_OPTIONS}.get(source_format, {}))
    if source_format == "csv" and LINE_SEPARATORS[line_separator]:
        options["lineSep"] = LINE_SEPARATORS[line_separator]
    return options


def parse_source_schema(ddl: str) -> StructType:
    """``--source-schema`` (``id BIGINT, name STRING, ...``) as a StructType, or ConfigError."""
    from pyspark.sql.types import StructType

    try:
        schema = StructType.fromDDL(ddl)
    except Exception as error:  # Spark's parse errors have several classes
        raise ConfigError(f"--source-schema is not a valid DDL column list: "
                          f"{str(error).splitlines()[0][:200]}") from None
    if not schema.fields:
        raise ConfigError("--source-schema names no column")
    return schema


def default_checkpoint(spark: SparkSession, databricks: bool, catalog: str, schema: str,
                       table: str) -> str:
    if databricks:
        volume = f"{quote(catalog, 'catalog')}.{quote(schema, 'schema')}." + CHECKPOINT_VOLUME
        spark.sql(f"CREATE VOLUME IF NOT EXISTS {volume} COMMENT "
                  "'encrypt_columns checkpoints: which landed files each target has ingested'")
        return f"/Volumes/{catalog}/{schema}/{CHECKPOINT_VOLUME}/encrypt_columns/{table}"
    warehouse = spark.conf.get("spark.sql.warehouse.dir", ".envelope/warehouse")
    local_state = Path(_local_path(warehouse)).parent
    return str(local_state / "checkpoints" / catalog / schema / table)


def _local_path(location: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(location).path) if location.startswith("file:") else location


def validate_checkpoint(location: str, source: str, databricks: bool) -> str:
    """The checkpoint folder, checked: absolute, no ``..``, and neither inside the source
    (its files would be read as input) nor containing it."""
    text = location.strip()
    if not text:
        raise ConfigError("--checkpoint-location is empty")
    if any(part == ".." for part in re.split(r"[\\/]", text)):
        raise ConfigError(f"--checkpoint-location must not contain '..': {text!r}")
    if databricks:
        if not (text.startswith("/Volumes/") or text.startswith(_REMOTE_SCHEMES)):
            raise ConfigError(
                f"--checkpoint-location {text!r}: on Databricks use a Unity Catalog volume "
                "path (/Volumes/<catalog>/<schema>/<volume>/...) or a cloud storage URI")
    elif _URI.match(text) and not text.startswith("file:"):
        raise ConfigError(f"--checkpoint-location {text!r}: local runs need a local folder")
    else:
        text = str(Path(_local_path(text)).resolve())
        source_path = Path(_local_path(source)).resolve()
        checkpoint = Path(text)
        if checkpoint == source_path or source_path in checkpoint.parents \
                or checkpoint in source_path.parents:
            raise ConfigError(
                f"--checkpoint-location {text} overlaps the source folder {source_path}: "
                "keep the checkpoint outside the landing folder")
    return text.rstrip("/")


def _schema_file(checkpoint: str) -> Path:
    return Path(_local_path(checkpoint)) / SCHEMA_FILE


def recorded_schema(checkpoint: str) -> StructType | None:
    from pyspark.sql.types import StructType

    path = _schema_file(checkpoint)
    if not path.is_file():
        return None
    return StructType.fromJson(json.loads(path.read_text(encoding="utf-8")))


def record_schema(checkpoint: str, schema: StructType) -> None:
    """Write ``_schema.json`` atomically (a reader never sees half a file)."""
    target = _schema_file(checkpoint)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(schema.jsonValue(), indent=1), encoding="utf-8")
    os.replace(partial, target)


def infer_schema_once(spark: SparkSession, source: str, source_format: str,
                      line_separator: str = "auto") -> StructType:
    """The schema of the files landed so far (CSV and JSON: inferred over every row)."""
    reader = spark.read.format(source_format).options(
        **reader_options(source_format, line_separator))
    if source_format == "csv":
        reader = reader.option("inferSchema", "true").option("enforceSchema", "true")
    try:
        return reader.load(source).schema
    except Exception as error:
        raise ConfigError(
            f"cannot infer the schema of {source} ({source_format}): "
            f"{str(error).splitlines()[0][:200]}. Land a first file, or give --source-schema"
        ) from None


def source_schema(spark: SparkSession, source: str, source_format: str, checkpoint: str,
                  given: str = "", line_separator: str = "auto") -> StructType:
    """The schema to read with: given, or recorded at the first run (inferred then once).

    A given schema must equal the recorded one once there is one: changing it would change
    how files already read were typed.
    """
    wanted = parse_source_schema(given) if given else None
    if checkpoint.startswith(_REMOTE_SCHEMES):
        # The schema file is written with local file calls (volumes are mounted on /Volumes).
        if wanted is None:
            raise ConfigError(f"a checkpoint on a cloud URI ({checkpoint}) needs "
                              "--source-schema: the schema is recorded on local and volume "
                              "paths only")
        return wanted
    recorded = recorded_schema(checkpoint)
    if recorded is not None:
        if wanted is not None and wanted.simpleString() != recorded.simpleString():
            raise ConfigError(
                f"--source-schema {wanted.simpleString()} differs from the schema recorded at "
                f"the first run in {checkpoint}/{SCHEMA_FILE}: {recorded.simpleString()}. "
                "Keep the recorded one, or start a new target with a new checkpoint")
        return recorded
    schema = wanted or infer_schema_once(spark, source, source_format, line_separator)
    record_schema(checkpoint, schema)
    return schema


def open_stream(spark: SparkSession, source: str, source_format: str, schema: StructType,
                checkpoint: str, databricks: bool, line_separator: str = "auto") -> DataFrame:
    """A streaming DataFrame of the files not yet read, with ``_source_file``: Auto Loader
    on Databricks, Spark's file source elsewhere, with the same reader options and schema."""
    from pyspark.sql import functions as F

    options = reader_options(source_format, line_separator)
    if databricks:
        reader = (spark.readStream.format("cloudFiles")
                  .option("cloudFiles.format", source_format)
                  .option("cloudFiles.schemaLocation", f"{checkpoint}/_autoloader_schema")
                  .option("cloudFiles.schemaEvolutionMode", "none")
                  .option("cloudFiles.includeExistingFiles", "true"))
    else:
        # The file source ignores a file whose modification time is more than maxFileAge
        # (7 days by default) older than the newest file seen: a late file copied with its
        # old time kept would be skipped silently. Auto Loader keeps every file it saw.
        reader = spark.readStream.format(source_format).option("maxFileAge", "36500d")
    stream = reader.options(**options).schema(schema).load(source)
    return stream.withColumn(SOURCE_FILE_COLUMN, F.col("_metadata.file_path"))
