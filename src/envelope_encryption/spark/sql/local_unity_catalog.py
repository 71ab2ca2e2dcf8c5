"""Run the Unity Catalog SQL layer on local Spark, with stand-ins only for what OSS Spark lacks.

Open-source Spark has no ``is_account_group_member``, no Unity Catalog Python functions and
no column masks. :class:`LocalSqlEnvironment` supplies exactly those, and nothing else:

- ``is_account_group_member`` is a Python UDF answering from a configured list of groups
  (``groups=``, or the environment variable ``ENVELOPE_LOCAL_GROUPS``, comma-separated;
  none by default, so a local reader is a non-member unless told otherwise);
- the unwrap function (and, for ``aws-sm``, ``dek_records``) is registered as a pandas UDF
  whose body is the handler the Unity Catalog function runs
  (:mod:`envelope_encryption.spark.sql.runtime`): the same provider code, against the local
  KEK file or an emulator endpoint. Its calls are counted;
- the batch decrypt function ``decrypt_cells`` is registered as a Spark Arrow UDF of the
  same name, arguments and answers, running the same handler
  (:func:`.decrypt_cells.decrypt_cells_batches`; Spark hands it pyarrow arrays where Unity
  Catalog hands pandas Series). Its uses of a keyring and its key-service calls (with the
  worker process that made them) are counted;
- a column mask on a table's name is a persistent view (:mod:`.local_masks`) that applies
  to every local reader, as Unity Catalog's masks do; member reads, which need the key, go
  through :func:`read_table_as`: a temporary view selecting ``decrypt_<schema>(col, table,
  col)`` over the stored rows;
- with equality domains configured, ``equality_values`` (behind the rendered lookup
  functions ``blind_index_<domain>`` / ``deterministic_<domain>``) is a Spark Arrow UDF
  running the same handler (:func:`.equality_runtime.equality_values_batches`); its uses of
  a keyring are counted (``lookup_uses``).

``groups=`` given explicitly describes a hypothetical reader of the rendered functions (as
:func:`read_table_as` does); without it the groups are the current local principal's, from
``ENVELOPE_LOCAL_GROUPS``, and :meth:`LocalSqlEnvironment.set_groups` changes the current
principal for the masks on table names too.

The decrypt and encrypt functions themselves are the rendered SQL of :mod:`.render`,
created as temporary SQL functions: the SQL Databricks would run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ...config import Settings
from ...errors import ConfigError
from ...identifiers import quote, validate_identifier, validate_principal
from ...lakehouse import Lakehouse
from ..columns import TableRef
from . import runtime, subject_mask
from .equality_sql import lookup_functions, render_lookup_function
from .local_masks import GROUPS_ENV, groups_from_env, set_local_groups
from .render import (
    render_decrypt_function,
    render_encrypt_function,
    render_open_cell_function,
    render_seal_cell_function,
)
from .target import (
    DECRYPT_CELLS_FUNCTION,
    DEK_RECORDS_FUNCTION,
    EQUALITY_VALUES_FUNCTION,
    UNWRAP_FUNCTION,
    SqlOptions,
    SqlTarget,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["GROUPS_ENV", "LocalSqlEnvironment", "read_table_as"]


class _ListParam:
    """Accumulates lists (the key-service unwraps of the workers)."""

    def zero(self, value: list) -> list:
        return []

    def addInPlace(self, first: list, second: list) -> list:  # Spark's name
        first.extend(second)
        return first


class LocalSqlEnvironment:
    """The SQL layer of one deployment as temporary functions of a local SparkSession."""

    def __init__(self, spark: SparkSession, settings: Settings,
                 options: SqlOptions | None = None, groups: Iterable[str] | None = None) -> None:
        if Lakehouse.detect().databricks:
            raise ConfigError("the local SQL stand-ins are for local Spark; on Databricks "
                              "deploy the real functions (kek_setup --sql-functions=true)")
        self.spark = spark
        self.settings = settings
        self.options = options or SqlOptions()
        self.target = SqlTarget.of(settings, self.options, databricks=False)
        if groups is None:
            # The current local principal: the masks on table names see the same groups.
            self.groups = set_local_groups(spark, groups_from_env())
        else:
            self.groups = sorted({validate_principal(g, "group") for g in groups})
        self._unwrap_rows = spark.sparkContext.accumulator(0)
        self._keyring_uses = spark.sparkContext.accumulator(0)
        self._kek_unwraps = spark.sparkContext.accumulator([], _ListParam())
        self._lookup_uses = spark.sparkContext.accumulator(0)

    # -- stand-ins ---------------------------------------------------------------------------

    def set_groups(self, groups: Iterable[str]) -> None:
        """Change who the current local principal is a member of, for the rendered functions
        and the masks on table names alike (takes effect for the next query)."""
        self.groups = set_local_groups(self.spark, groups)
        self._register_membership()

    def _register_membership(self) -> None:
        from pyspark.sql.types import BooleanType

        members = frozenset(self.groups)
        self.spark.udf.register(
            "is_account_group_member",
            lambda group: group in members,
            BooleanType(),
        )

    def _register_unwrap(self) -> None:
        from pyspark.sql.functions import PandasUDFType, pandas_udf
        from pyspark.sql.types import ArrayType, BinaryType

        payload = runtime.settings_payload(self.settings)
        counter = self._unwrap_rows

        def unwrap(batches: Iterator[Any]) -> Iterator[Any]:
            from envelope_encryption.spark.sql.runtime import unwrap_batches

            def counted() -> Iterator[Any]:
                for batch in batches:
                    # Records handed over for unwrapping (the record arrays' elements).
                    counter.add(sum(0 if r is None else sum(x is not None for x in r)
                                    for r in batch[1]))
                    yield batch

            yield from unwrap_batches(counted(), payload)

        self.spark.udf.register(
            self.target.local_function_name(UNWRAP_FUNCTION),
            pandas_udf(unwrap, ArrayType(BinaryType()), PandasUDFType.SCALAR_ITER),
        )

    def _register_decrypt_cells(self) -> None:
        self._register_batch_function(DECRYPT_CELLS_FUNCTION, "decrypt_cells",
                                      "decrypt_cells_batches", self._keyring_uses)

    def _register_dek_records(self) -> None:
        from pyspark.sql.functions import PandasUDFType, pandas_udf
        from pyspark.sql.types import StringType

        payload = runtime.settings_payload(self.settings, self.options.equality_domains)

        def dek_records(batches: Iterator[Any]) -> Iterator[Any]:
            from envelope_encryption.spark.sql.runtime import dek_records_batches

            yield from dek_records_batches(batches, payload)

        self.spark.udf.register(
            self.target.local_function_name(DEK_RECORDS_FUNCTION),
            pandas_udf(dek_records, StringType(), PandasUDFType.SCALAR_ITER),
        )

    def _register_equality_values(self) -> None:
        self._register_batch_function(EQUALITY_VALUES_FUNCTION, "equality_runtime",
                                      "equality_values_batches", self._lookup_uses)

    def _register_batch_function(self, name: str, module: str, entry: str, uses: Any) -> None:
        """A privileged batch function as a Spark Arrow UDF running its Unity Catalog handler
        (``envelope_encryption.spark.sql.<module>.<entry>``), with the settings of its
        rendering. Counted: batches given a keyring (the last argument) in ``uses``, and each
        key-service unwrap with its worker process."""
        from pyspark.sql.functions import arrow_udf
        from pyspark.sql.pandas.functions import ArrowUDFType
        from pyspark.sql.types import StringType

        payload = runtime.settings_payload(self.settings, self.options.equality_domains)
        unwraps = self._kek_unwraps

        def batch_function(batches: Iterator[Any]) -> Iterator[Any]:
            import importlib
            import os

            handler = getattr(importlib.import_module(
                f"envelope_encryption.spark.sql.{module}"), entry)

            def counted() -> Iterator[Any]:
                for batch in batches:
                    uses.add(int(batch[-1].null_count < len(batch[-1])))  # any keyring
                    yield batch

            def unwrapped(version: int) -> None:
                unwraps.add([(os.getpid(), version)])

            yield from handler(counted(), payload, unwrapped)

        self.spark.udf.register(self.target.local_function_name(name),
                                arrow_udf(batch_function, StringType(), ArrowUDFType.SCALAR_ITER))

    def install(self) -> LocalSqlEnvironment:
        """Register the stand-ins, then create the rendered decrypt/encrypt functions."""
        import warnings

        with warnings.catch_warnings():
            # PandasUDFType is deprecated in favour of type hints, which cannot express a
            # closure's iterator-of-tuples signature as clearly; behaviour is the same.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            self._register_membership()
            self._register_unwrap()
            self._register_decrypt_cells()
            if self.settings.backend == "aws-sm":
                self._register_dek_records()
            if self.options.equality_domains:
                self._register_equality_values()
        self.spark.sql(render_open_cell_function(self.target, self.options))
        self.spark.sql(render_seal_cell_function(self.target))
        for schema in self.settings.schemas:
            self.spark.sql(render_decrypt_function(self.target, schema, self.options))
            self.spark.sql(render_encrypt_function(self.target, schema))
        for kind, domain, _ in lookup_functions(self.target, self.options):
            self.spark.sql(render_lookup_function(self.target, self.options, kind, domain))
        subject_mask.install_local(self)  # the masks of subject-keyed columns
        return self

    # -- using them --------------------------------------------------------------------------

    @property
    def unwrap_calls(self) -> int:
        """Keyring records ``unwrap_key`` was asked to unwrap since this environment was made
        (the encrypt functions: one per query)."""
        return int(self._unwrap_rows.value)

    @property
    def keyring_uses(self) -> int:
        """Batches ``decrypt_cells`` was given a keyring in since this environment was made
        (zero for readers who get no plaintext)."""
        return int(self._keyring_uses.value)

    @property
    def kek_unwraps(self) -> list[tuple[int, int]]:
        """(worker process id, DEK version) of each key-service unwrap ``decrypt_cells``
        made since this environment was made (at most one per worker and version)."""
        return list(self._kek_unwraps.value)

    @property
    def lookup_uses(self) -> int:
        """Batches ``equality_values`` (the lookup functions) was given a keyring in."""
        return int(self._lookup_uses.value)

    def lookup_function(self, kind: str, domain: str) -> str:
        """``blind_index_<domain>`` or ``deterministic_<domain>`` as callable here."""
        return self.target.function(self.target.lookup_name(kind, domain))

    def decrypt_function(self, schema: str) -> str:
        return self.target.function(self.target.decrypt_name(schema))

    def encrypt_function(self, schema: str) -> str:
        return self.target.function(self.target.encrypt_name(schema))

    def masked_view(self, ref: TableRef, columns: Sequence[str], name: str = "") -> str:
        """A temporary view of the table's stored rows with the decrypt SQL on ``columns``
        (what a reader with this environment's groups sees on Databricks); its name."""
        if ref.schema not in self.settings.schemas:
            raise ConfigError(f"schema {ref.schema} is not one of --schemas: no decrypt function")
        table = self.target.lakehouse.storage_table(self.spark, ref.catalog, ref.schema,
                                                    ref.table)
        masked = {validate_identifier(c, "column") for c in columns}
        existing = self.spark.table(table).columns
        missing = sorted(masked - set(existing))
        if missing:
            raise ConfigError(f"{ref.catalog}.{ref.schema}.{ref.table} has no column "
                              f"{', '.join(missing)}")
        function = self.decrypt_function(ref.schema)
        select = ", ".join(
            f"{function}({quote(c)}, '{ref.table}', '{c}') AS {quote(c)}" if c in masked
            else quote(c, "column")
            for c in existing
        )
        view = validate_identifier(name or f"{ref.table}_masked", "view")
        self.spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {quote(view)} AS "
                       f"SELECT {select} FROM {table}")
        return view


def read_table_as(spark: SparkSession, settings: Settings, table: TableRef,
                  columns: Sequence[str], member: bool,
                  options: SqlOptions | None = None) -> DataFrame:
    """What a reader sees through the column masks, as a member of the scope's group or not.

    The rows come through the same decrypt SQL the masks run on Databricks; only the group
    answer is simulated.
    """
    options = options or SqlOptions()
    group = options.group(options.reader_group, table.catalog, table.schema)
    env = LocalSqlEnvironment(spark, settings, options, groups=[group] if member else [])
    env.install()
    view = env.masked_view(
        table, columns, name=f"{table.table}_as_{'member' if member else 'non_member'}"
    )
    return spark.table(quote(view))
