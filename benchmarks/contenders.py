"""One benchmark run at one size, in its own process (so its peak memory is its own).

Every contender reads the same parquet data (``id``, and ``ssn``: SSN-like strings) on local
Spark and writes to a noop sink, except the job contenders, which write tables. Rates are
rows/s, best of ``repeat`` runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import machine

SSN_FORMAT = "%03d-%02d-%04d"
# Distinct SSN-like values in no particular order (a multiplicative scramble of the row
# number below a prime under 10^9), so that parquet cannot store them as a few dictionary
# entries: the bytes per value of the plaintext are those of real identifiers.
SCRAMBLE, PRIME = 2654435761, 999_999_937
SSN_SQL = (f"format_string('{SSN_FORMAT}', ((id * {SCRAMBLE}) % {PRIME}) div 1000000 % 1000, "
           f"((id * {SCRAMBLE}) % {PRIME}) div 10000 % 100, ((id * {SCRAMBLE}) % {PRIME}) % 10000)")
GROUP = "bench.hr.crypto.user"
SQL_ORIGINAL = "decrypt SQL: original notebooks (try_aes_decrypt)"
SQL_PROJECT = "decrypt SQL: project (column mask's decrypt: batch Python function decrypt_cells)"
SQL_NATIVE = "decrypt SQL: previous mask (native aes_decrypt + key map)"
# What no implementation of the same shape can beat on this machine: the work around the
# crypto, with no crypto at all (see ``floors``).
FLOOR_PLAIN = "floor: Arrow UDF that returns its input (plaintext column, no work)"
FLOOR_CELLS = "floor: Arrow UDF that returns its input (cells column, no work)"
FLOOR_MASK = ("floor: the column mask with a decrypt_cells that opens nothing "
              "(answers '+' || value)")
# The contenders, in groups a run may select (``--contenders``): the DataFrame API and the
# original method; the SQL decrypts; the whole job against a plain copy; the scheduled
# re-run; bytes per value on disk; the raw single-core loop. Memory is sampled in all.
GROUPS = ("dataframe", "sql", "job", "rerun", "bytes", "raw")


def ssn(i: int) -> str:
    """The value of row ``i`` (what ``SSN_SQL`` makes)."""
    x = i * SCRAMBLE % PRIME
    return SSN_FORMAT % (x // 1000000 % 1000, x // 10000 % 100, x % 10000)


def best_seconds(action, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def raw_loop(rows: int, repeat: int) -> dict:
    """One core, one Python process: plain ``cryptography`` AES-GCM over the same values.

    Three loops: encrypt with one ``os.urandom(12)`` call per value (the textbook loop),
    encrypt with the IVs sliced from one call, and decrypt. Each value is encoded to UTF-8
    and sealed with the same AAD a cell of this column has; no base64, no header."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    cipher = AESGCM(os.urandom(32))
    aad = b"ee1:1:string:bench.hr.people.ssn"
    values = [ssn(i) for i in range(rows)]

    def encrypt_each() -> list:
        return [cipher.encrypt(os.urandom(12), v.encode(), aad) for v in values]

    def encrypt_batched() -> list:
        ivs = os.urandom(12 * len(values))
        return [cipher.encrypt(ivs[12 * i:12 * i + 12], v.encode(), aad)
                for i, v in enumerate(values)]

    ivs = os.urandom(12 * rows)
    sealed = [(ivs[12 * i:12 * i + 12], cipher.encrypt(ivs[12 * i:12 * i + 12], v.encode(), aad))
              for i, v in enumerate(values)]

    def decrypt() -> list:
        return [cipher.decrypt(iv, body, aad).decode() for iv, body in sealed]

    return {name: rows / best_seconds(action, repeat) for name, action in (
        ("encrypt, one urandom per value", encrypt_each),
        ("encrypt, IVs from one urandom", encrypt_batched),
        ("decrypt", decrypt))}


def raw_in_subprocess(rows: int, repeat: int) -> dict:
    """The raw loop in a fresh process: its values do not inflate the driver's memory."""
    out = subprocess.run(  # noqa: S603 - this script, with arguments it made
        [sys.executable, str(Path(__file__).with_name("bench_columns.py")), "--raw-loop",
         str(rows), "--repeat", str(repeat)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def identity_rate(df, column: str, rate) -> float:
    """rows/s of ``df`` with ``column`` passed through an Arrow UDF that returns its input:
    the Spark-to-Python transfer every DataFrame contender pays, with no work in Python."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    def same(values: pa.Array) -> pa.Array:
        return values

    # Postponed annotations name this function's local ``pa``: Spark reads the types.
    same.__annotations__ = {"values": pa.Array, "return": pa.Array}
    udf = F.arrow_udf(same, "string")
    return rate(df.select([udf(F.col(c)).alias(c) if c == column else F.col(c)
                           for c in df.columns]))


def register_noop_decrypt_cells(spark, env) -> None:
    """Replace ``decrypt_cells`` in ``env`` by a function that opens nothing and answers
    every value as its own plaintext: the mask's SQL, its key subquery and the keyring text
    crossing into Python on every row, without the handler."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyspark.sql import functions as F

    from envelope_encryption.spark.sql.target import DECRYPT_CELLS_FUNCTION

    def opened(values: pa.Array, places: pa.Array, keyrings: pa.Array) -> pa.Array:
        return pc.binary_join_element_wise("+", values, "")

    opened.__annotations__ = {"values": pa.Array, "places": pa.Array, "keyrings": pa.Array,
                              "return": pa.Array}
    spark.udf.register(env.target.local_function_name(DECRYPT_CELLS_FUNCTION),
                       F.arrow_udf(opened, "string"))


class Rates(dict):
    """rows/s by contender, printed as each is measured (a long run shows its progress)."""

    def __setitem__(self, name: str, value: float) -> None:
        print(f"   {value:>14,.0f} rows/s  {name}", flush=True)
        super().__setitem__(name, value)


class CountingUnwraps:
    """Counts the local KEK provider's unwraps in this process: the key-service calls.

    ``calls`` counts DEK unwraps; ``integrity_calls`` the keyring's integrity key, which a
    process unwraps once to verify the keyring's records, whatever the DEKs it reads."""

    def __init__(self) -> None:
        from envelope_encryption.kek.base import DEK_PURPOSE
        from envelope_encryption.kek.local import LocalKekProvider

        self.calls = self.integrity_calls = 0
        original = LocalKekProvider._unwrap_key
        counter = self

        def counted(provider, wrapped, context):
            if context.purpose == DEK_PURPOSE:
                counter.calls += 1
            else:
                counter.integrity_calls += 1
            return original(provider, wrapped, context)

        LocalKekProvider._unwrap_key = counted

    def reset(self) -> None:
        self.calls = self.integrity_calls = 0


def sql_contenders(spark, env, rows: int) -> dict[str, str]:
    """The SQL decrypt queries over ``bench__hr.people`` (columns ``ssn``: cells, and
    ``ssn_original``: the original notebooks' cells of the same values), by contender,
    after checking that all three return the same plaintext for every row."""
    import sql_native_mask

    from envelope_encryption.spark.sql.keyring_sql import integrity_record
    from envelope_encryption.spark.sql.passed_records import record_struct_sql

    unwrap = env.target.function("unwrap_key")
    # The original notebooks' decrypt; their membership check hoisted into a scalar
    # subquery, as it is a constant per query on Databricks.
    spark.sql(f"""
        CREATE OR REPLACE TEMPORARY FUNCTION original_decrypt(value STRING) RETURNS STRING
        RETURN CASE WHEN (SELECT is_account_group_member('{GROUP}')) THEN coalesce(
          CAST(try_aes_decrypt(unbase64(value),
            (SELECT element_at({unwrap}(k.key_alias, array(to_json({record_struct_sql("k")})),
                                        {integrity_record(env.target)}), 1)
             FROM bench__crypto.dek_keyring k WHERE k.key_alias = 'bench.hr'
             ORDER BY k.key_version DESC LIMIT 1), 'GCM', 'DEFAULT') AS STRING), value)
        ELSE value END""")
    native = sql_native_mask.register(spark, env, "hr", GROUP)
    project = env.decrypt_function("hr")
    same = spark.sql(
        f"SELECT count_if({project}(ssn, 'people', 'ssn') <=> original_decrypt(ssn_original) "
        f"AND {native}(ssn, 'people', 'ssn') <=> original_decrypt(ssn_original)) AS same "
        "FROM bench__hr.people").first().same
    assert same == rows, f"the SQL paths disagree on {rows - same} rows"
    return {
        SQL_ORIGINAL: "SELECT original_decrypt(ssn_original) AS ssn FROM bench__hr.people",
        SQL_PROJECT: f"SELECT {project}(ssn, 'people', 'ssn') AS ssn FROM bench__hr.people",
        SQL_NATIVE: f"SELECT {native}(ssn, 'people', 'ssn') AS ssn FROM bench__hr.people",
    }


def run_size(rows: int, repeat: int, work: Path, rerun_files: int = 1000,
             groups: tuple[str, ...] = GROUPS) -> dict:
    """The contenders of ``groups`` (all by default) at ``rows`` rows; returns the figures
    (see bench_columns.py)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    import incremental
    from pyspark.sql import functions as F

    from envelope_encryption.config import Settings
    from envelope_encryption.jobs import encrypt_columns as encrypt_job
    from envelope_encryption.kek.local import LocalKekProvider
    from envelope_encryption.keyring import Keyring
    from envelope_encryption.keyring.table_store import TableDekStore
    from envelope_encryption.lakehouse import Lakehouse
    from envelope_encryption.spark.columns import TableRef, decrypt_columns, encrypt_columns
    from envelope_encryption.spark.session import local_spark_session
    from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment

    unwraps = CountingUnwraps()
    figures: dict = {"rows": rows, "repeat": repeat, "rates": Rates(), "calls": {},
                     "contenders": list(groups)}
    rates = figures["rates"]
    with machine.MemorySampler() as sampler:
        spark = local_spark_session(work, app_name="bench", shuffle_partitions=2)
        sampler.watch_heap(spark)
        kek_file = work / "kek.key"
        settings = Settings(backend="local", catalog="bench", schemas=("hr",),
                            options={"local-kek-file": str(kek_file)})
        lakehouse = Lakehouse(databricks=False)
        store = TableDekStore(spark, "bench", lakehouse=lakehouse)
        store.ensure()
        kek = LocalKekProvider(kek_file)
        kek.ensure()
        Keyring(store, kek, "bench").ensure_active("bench.hr")
        ref = TableRef("bench", "hr", "people")

        source = spark.range(rows).select("id", F.expr(SSN_SQL).alias("ssn"))
        source.write.parquet(str(work / "plain"))
        plain = spark.read.parquet(str(work / "plain"))
        assert [r.ssn for r in plain.orderBy("id").limit(3).collect()] == \
            [ssn(i) for i in range(min(rows, 3))]

        def noop(df) -> None:
            df.write.format("noop").mode("overwrite").save()

        def rate(df) -> float:
            return rows / best_seconds(lambda: noop(df), repeat)

        # -- DataFrame API and the original method, encrypt ---------------------------------
        cells_needed = bool({"dataframe", "sql", "bytes"} & set(groups))
        unwraps.reset()
        keyring = Keyring(store, kek, "bench")  # an empty DEK cache, as in a new process
        ours_enc = encrypt_columns(plain, ["ssn"], keyring=keyring, table=ref)
        key = keyring.dek("bench.hr", 1)
        key_hex = key.reveal().hex()  # the original method puts the key in its SQL
        original_enc = plain.select("id", F.base64(F.expr(
            f"aes_encrypt(ssn, unhex('{key_hex}'), 'GCM', 'DEFAULT')")).alias("ssn"))
        if "dataframe" in groups:
            rates["encrypt: original notebooks (SQL aes_encrypt)"] = rate(original_enc)
            rates["encrypt: encrypt_columns (DataFrame)"] = rate(ours_enc)
            rates[FLOOR_PLAIN] = identity_rate(plain, "ssn", rate)

        # -- stored cells, both formats -----------------------------------------------------
        lakehouse.ensure_schema(spark, "bench", "hr", "benchmark")
        if cells_needed:
            ours_enc.write.parquet(str(work / "cells"))
            original_enc.write.parquet(str(work / "original"))
            cells = spark.read.parquet(str(work / "cells"))
            original_cells = spark.read.parquet(str(work / "original"))
        if "sql" in groups:
            cells.join(original_cells.withColumnRenamed("ssn", "ssn_original"), "id") \
                .write.saveAsTable("bench__hr.people")

        if "dataframe" in groups:
            ours_dec = decrypt_columns(cells, ["ssn"], keyring=keyring, table=ref,
                                       types={"ssn": "string"})
            original_dec = original_cells.select("id", F.expr(
                f"CAST(aes_decrypt(unbase64(ssn), unhex('{key_hex}'), 'GCM', 'DEFAULT') "
                "AS STRING)").alias("ssn"))
            rates["decrypt: original notebooks (SQL aes_decrypt)"] = rate(original_dec)
            rates["decrypt: decrypt_columns (DataFrame)"] = rate(ours_dec)
            rates[FLOOR_CELLS] = identity_rate(cells, "ssn", rate)
            calls = figures["calls"]
            calls["DataFrame encrypt + decrypt, one keyring: DEK unwraps"] = unwraps.calls
            calls["DataFrame encrypt + decrypt, one keyring: integrity-key unwraps"] = \
                unwraps.integrity_calls
            assert ours_dec.where(F.col("ssn").isNull()).count() == 0

        # -- SQL: the project's decrypt (the column mask's), the native mask, the original ---
        if "sql" in groups:
            env = LocalSqlEnvironment(spark, settings, groups=[GROUP]).install()
            queries = sql_contenders(spark, env, rows)
            for name, query in queries.items():
                before, unwraps_before = env.unwrap_calls, len(env.kek_unwraps)
                rates[name] = rate(spark.sql(query))
                figures["calls"][f"{name}, per query: unwrap_key records"] = \
                    (env.unwrap_calls - before) / repeat
                figures["calls"][f"{name}, per query: key-service unwraps in decrypt_cells"] = \
                    (len(env.kek_unwraps) - unwraps_before) / repeat
            figures["calls"]["decrypt_cells, whole run: key-service unwraps"] = \
                len(env.kek_unwraps)
            figures["calls"]["decrypt_cells, whole run: distinct (worker process, version)"] = \
                len(set(env.kek_unwraps))
            # Last: it replaces the environment's decrypt_cells.
            register_noop_decrypt_cells(spark, env)
            rates[FLOOR_MASK] = rate(spark.sql(queries[SQL_PROJECT]))

        # -- the whole encrypt_columns job against a plain copy job ---------------------------
        run_number = [0]
        job_arguments = ["--kek-backend", "local", "--catalog", "bench", "--schemas", "hr",
                         "--local-kek-file", str(kek_file)]

        def job() -> None:
            run_number[0] += 1
            code = encrypt_job.main([
                *job_arguments, "--source", str(work / "plain"),
                "--source-format", "parquet", "--target-table", f"hr.job_{run_number[0]}",
                "--columns", "ssn"])
            assert code == 0

        def copy() -> None:
            run_number[0] += 1
            spark.read.parquet(str(work / "plain")).write.saveAsTable(
                f"bench__hr.copy_{run_number[0]}")

        if "job" in groups:
            unwraps.reset()
            job_seconds = best_seconds(job, repeat)
            figures["calls"]["encrypt_columns job, per run: DEK unwraps"] = \
                unwraps.calls / repeat
            figures["calls"]["encrypt_columns job, per run: integrity-key unwraps"] = \
                unwraps.integrity_calls / repeat
            copy_seconds = best_seconds(copy, repeat)
            figures["job"] = {"encrypt_columns_s": job_seconds, "copy_s": copy_seconds,
                              "ratio": job_seconds / copy_seconds}
            rates["job: encrypt_columns (whole job, parquet in, table out)"] = rows / job_seconds
            rates["job: plain copy (parquet in, table out)"] = rows / copy_seconds

        # -- the scheduled re-run: ``rerun_files`` ingested files and one new one ------------
        if "rerun" in groups:
            figures["rerun"] = incremental.rerun_after_history(
                spark, work, rerun_files, job_arguments, encrypt_job.main,
                "hr.landing", "bench__hr.landing")

        # -- bytes per value on disk (parquet, the column alone) ------------------------------
        if "bytes" in groups:
            sizes = {}
            for name, df in (("plaintext", plain), ("ee1 cells", cells),
                             ("original notebooks' cells", original_cells)):
                path = work / f"size_{name.split()[0]}"
                df.select("ssn").coalesce(1).write.parquet(str(path))
                sizes[name] = sum(f.stat().st_size for f in path.glob("*.parquet")) / rows
            figures["bytes_per_value"] = sizes
        sampler.watch_heap(None)
        figures["memory"] = {"jvm_heap": sampler.heap}
        spark.stop()
    if "raw" in groups:
        figures["rates"].update({f"raw single core: {name}": value
                                 for name, value in raw_in_subprocess(rows, repeat).items()})
    figures["memory"].update({
        "driver_peak_mib": round(machine.peak_kb() / 1024, 1),
        "jvm_peak_rss_mib": round(sampler.peaks["jvm"] / 1024, 1),
        "python_worker_peak_mib": round(sampler.peaks["python_worker"] / 1024, 1),
    })
    return figures
