"""Run in a subprocess by test_no_key_in_shuffle_files.py: a SQL decrypt on its own Spark
session whose ``spark.local.dir`` is a given folder, then a scan of every file there.

Prints one JSON line: hits per query shape and form (raw, hex, base64) of the scope's DEKs.
The DEKs are obtained here through the project's API and compared in memory only; nothing
but the counts leaves this process.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path


def _forms(key: bytes) -> list[bytes]:
    return [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key),
            base64.urlsafe_b64encode(key)]


def _hits(folder: Path, keys: list[bytes]) -> int:
    needles = [form for key in keys for form in _forms(key)]
    found = 0
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += sum(data.count(needle) for needle in needles)
    return found


def main() -> int:
    local_dir, work, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    from envelope_encryption.config import Settings
    from envelope_encryption.kek.local import LocalKekProvider
    from envelope_encryption.keyring import Keyring
    from envelope_encryption.keyring.table_store import TableDekStore
    from envelope_encryption.lakehouse import Lakehouse
    from envelope_encryption.spark.columns import TableRef, encrypt_columns
    from envelope_encryption.spark.session import local_spark_session
    from envelope_encryption.spark.sql.keyring_sql import integrity_record
    from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment
    from envelope_encryption.spark.sql.passed_records import record_struct_sql

    if mode == "project-session":
        os.environ["SPARK_LOCAL_DIRS"] = str(local_dir)
        spark = local_spark_session(work, app_name="shuffle-scan", shuffle_partitions=2)
    else:  # a plain session: shuffle files unencrypted, so only the query shape protects
        spark = (SparkSession.builder.master("local[2]").appName("shuffle-scan")
                 .config("spark.local.dir", str(local_dir))
                 .config("spark.io.encryption.enabled", "false")
                 .config("spark.sql.warehouse.dir", str(work / "warehouse"))
                 .config("spark.sql.shuffle.partitions", "2")
                 .config("spark.ui.enabled", "false")
                 .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    settings = Settings(backend="local", catalog="scan", schemas=("hr",),
                        options={"local-kek-file": str(work / "kek.key")})
    lakehouse = Lakehouse(databricks=False)
    store = TableDekStore(spark, "scan", lakehouse=lakehouse)
    store.ensure()
    kek = LocalKekProvider(work / "kek.key")
    kek.ensure()
    keyring = Keyring(store, kek, "scan")
    keyring.ensure_active("scan.hr")
    ref = TableRef("scan", "hr", "people")
    rows = spark.createDataFrame([(i, f"{i:03d}-00-0000") for i in range(40)], "id int, ssn string")
    lakehouse.ensure_schema(spark, "scan", "hr", "scan")
    encrypt_columns(rows, ["ssn"], keyring=keyring, table=ref).write.mode(
        "overwrite").saveAsTable("scan__hr.people")
    keyring.create_version("scan.hr")
    encrypt_columns(rows, ["ssn"], keyring=keyring, table=ref).write.mode(
        "append").saveAsTable("scan__hr.people")
    keys = [keyring.dek("scan.hr", v).reveal() for v in (1, 2)]

    env = LocalSqlEnvironment(spark, settings, groups=["scan.hr.crypto.user"]).install()
    decrypt = env.decrypt_function("hr")
    plain = spark.sql(f"SELECT {decrypt}(ssn, 'people', 'ssn') AS ssn FROM scan__hr.people "
                      "DISTRIBUTE BY ssn").collect()
    assert len(plain) == 80 and all(r.ssn.endswith("-00-0000") for r in plain)
    result = {"decrypted": len(plain),
              "unwrapped": sorted({version for _, version in env.kek_unwraps}),
              "shape": _hits(local_dir, keys)}

    # The shape this project used before: unwrap per record, then collect_list, whose two
    # aggregation stages exchange the unwrapped keys through shuffle files.
    unwrap = env.target.function("unwrap_key")
    spark.sql(f"""SELECT map_from_entries(collect_list(struct(k.key_version,
          element_at({unwrap}(k.key_alias, array(to_json({record_struct_sql("k")})),
                              {integrity_record(env.target)}), 1)))) AS keys
        FROM scan__crypto.dek_keyring k WHERE k.key_alias = 'scan.hr'""").collect()
    result["planted"] = _hits(local_dir, keys)
    result["shuffle_files"] = sum(1 for p in local_dir.rglob("*.data"))
    print("RESULT " + json.dumps(result), flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
