"""No DEK and no KEK in any byte the jobs leave behind: logs, exceptions, reprs, plans, Spark
event logs, tables, the metastore, Spark's local dir (shuffle files) and temporary files.

The scenario runs in its own process (``leak_scenario.py``) because its Spark session needs
event logs on, a local dir of its own and, so that every byte is searchable, no compression
(shuffle, spill, broadcast, RDD blocks, parquet). Every logger is at DEBUG. The keys come back
through a pipe only. The scan looks for each key raw, as hex (both cases), base64 and URL-safe
base64 (see ``leak_scanner.py``). A second test plants a key to show the scan can fail.

Every file is asserted, py4j's DEBUG log (``logs/py4j-debug.log``) included: py4j logs each
command it sends the JVM, and the DataFrame path's commands carry the pickled closures
holding the DEKs, so the package holds py4j at WARNING and filters it at the source
(``envelope_encryption.logs``). That log's hits are also printed apart, to show where a
regression would come from. The files the SQL mask path adds to the Spark local dir are
scanned and asserted with the rest.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from envelope_encryption.jobs.sample_data import customers
from tests.faults.leak_scanner import Hit, files_under, scan_bytes, scan_files
from tests.faults.leak_scenario import PY4J_LOG

ROOT = Path(__file__).resolve().parents[2]
# Plaintext values of the scenario's data (never keys): the probe that shuffle files are read.
PLAINTEXT_PROBE = {f"ssn of customer {row['id']}": str(row["ssn"]).encode()
                   for row in customers(60, first_id=1)}
LOCATIONS = ("logs", "captured", "eventlog", "state/warehouse", "state/metastore", "local",
             "tmp", "landing", "console")

NO_COMPRESSION = ("spark.shuffle.compress=false", "spark.shuffle.spill.compress=false",
                  "spark.broadcast.compress=false", "spark.rdd.compress=false",
                  "spark.sql.parquet.compression.codec=uncompressed",
                  "spark.eventLog.compress=false")


def location(path: str, workdir: Path) -> str:
    relative = Path(path).relative_to(workdir).as_posix() if path.startswith(str(workdir)) \
        else path
    for name in LOCATIONS:
        if relative.startswith(name):
            return name
    return relative.split("/")[0]


@dataclass
class Scan:
    keys: dict[str, bytes]
    hits: list[Hit]  # in every file but the known leaky ones: must be none
    known_hits: list[Hit]  # in the files of the paths with a known leak (reported)
    files: Counter  # files scanned per location
    plaintext_in_shuffle: int  # local-dir files holding a plaintext value (the scan sees in)


def run_scenario(workdir: Path) -> Scan:
    for name in ("eventlog", "local", "tmp"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    (workdir.parent / "kek").mkdir(exist_ok=True)
    confs = ["spark.eventLog.enabled=true", f"spark.eventLog.dir=file://{workdir / 'eventlog'}",
             f"spark.local.dir={workdir / 'local'}", *NO_COMPRESSION]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "PYSPARK_SUBMIT_ARGS": " ".join(f"--conf {c}" for c in confs) + " pyspark-shell",
        "SPARK_LOCAL_DIRS": str(workdir / "local"),
        "TMPDIR": str(workdir / "tmp"),
        "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={workdir / 'tmp'}",
    }
    kek_file = workdir.parent / "kek" / "kek.key"  # the KEK's own home: not a leak
    read_end, write_end = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.leak_scenario", str(workdir), str(write_end)],
        cwd=workdir, env=env, pass_fds=(write_end,), stdin=subprocess.PIPE,
        stdout=(workdir / "console-stdout.txt").open("wb"),
        stderr=(workdir / "console-stderr.txt").open("wb"))
    os.close(write_end)
    channel = os.fdopen(read_end)
    keys: dict[str, bytes] = {}
    hits: set[Hit] = set()
    known_hits: set[Hit] = set()
    scanned: set[Path] = set()
    sql_files: set[Path] = set()
    plain_files: set[str] = set()
    checkpoints = []
    try:
        for line in channel:
            message = json.loads(line)
            checkpoints.append(message["checkpoint"])
            keys.update({label: bytes.fromhex(h) for label, h in message["keys"].items()})
            # py4j's DEBUG log: where pickled closures would show (reported apart too).
            known = {workdir / "logs" / PY4J_LOG}
            sql_files |= {Path(p) for p in message["sql_files"]}
            files = files_under(workdir, exclude=[kek_file])
            scanned |= set(files)
            hits |= set(scan_files([p for p in files if p not in known], keys))
            known_hits |= set(scan_files([p for p in files if p in known], keys))
            # The DataFrame decrypt's shuffle (a group by) writes plaintext SSNs, uncompressed:
            # finding them shows the scan reads what the shuffle files hold.
            local = [p for p in files if location(str(p), workdir) == "local"]
            plain_files |= {h.where for h in scan_files(local, PLAINTEXT_PROBE)
                            if h.form == "raw"}
            child.stdin.write(b"scanned\n")
            child.stdin.flush()
        assert child.wait(timeout=60) == 0, (workdir / "console-stderr.txt").read_text()[-3000:]
    finally:
        if child.poll() is None:
            child.kill()
        channel.close()
    assert checkpoints == ["dataframe decrypt", "SQL mask path", "end", "stopped"], \
        (workdir / "console-stderr.txt").read_text()[-3000:]
    files = Counter(location(str(p), workdir) for p in scanned)
    files["local, added by the SQL mask path"] = len(sql_files)
    files["local, shuffle data"] = sum(1 for p in scanned
                                       if p.name.startswith("shuffle_") and p.suffix == ".data")
    return Scan(keys, sorted(hits, key=str), sorted(known_hits, key=str), files,
                len(plain_files))


@pytest.mark.slow
def test_no_key_in_any_byte_the_jobs_leave(tmp_path):
    workdir = tmp_path / "run"
    scan = run_scenario(workdir)
    assert sorted(scan.keys) == ["DEK v1", "DEK v2", "KEK v1", "KEK v2"]
    print(f"\nscanned files per location: {dict(sorted(scan.files.items()))}")
    print(f"hits outside the known leaky paths: {len(scan.hits)}")
    known = Counter((Path(h.where).relative_to(workdir).parts[0], Path(h.where).name, h.key,
                     h.form) for h in scan.known_hits)
    print(f"py4j DEBUG log, hits: {dict(known)}")
    assert not scan.known_hits, f"keys in py4j's DEBUG log: {dict(known)}"
    print(f"local-dir files holding plaintext values: {scan.plaintext_in_shuffle}")
    assert scan.plaintext_in_shuffle > 0, "the scan did not see into the shuffle files"
    # Every location was really scanned.
    for name in ("logs", "captured", "eventlog", "state/warehouse", "state/metastore", "local",
                 "tmp", "console"):
        assert scan.files[name] > 0, f"nothing scanned in {name}"
    assert scan.hits == [], [f"{h.where}: {h.key} as {h.form}" for h in scan.hits]


def test_the_scan_finds_a_planted_key(tmp_path):
    key = os.urandom(32)
    keys = {"planted": key}
    log = tmp_path / "logs" / "debug.log"
    log.parent.mkdir()
    log.write_text("2026-01-01 DEBUG envelope_encryption.keyring: unwrapped "
                   f"dek={base64.urlsafe_b64encode(key).decode().rstrip('=')} ok\n")
    table = tmp_path / "warehouse" / "part-00000.parquet"
    table.parent.mkdir()
    pq.write_table(pa.table({"id": [1, 2], "blob": [b"x" * 40 + key + b"y", b"z"]}), table)
    clean = tmp_path / "clean.txt"
    clean.write_text("nothing to see " + os.urandom(32).hex())
    hits = scan_files(files_under(tmp_path), keys)
    found = {(Path(h.where).name, h.form) for h in hits}
    # (A key whose base64 has no "+" or "/" also matches as plain base64.)
    assert {("debug.log", "base64url"), ("part-00000.parquet", "raw")} <= found
    assert {name for name, _ in found} == {"debug.log", "part-00000.parquet"}
    # Every form is found, at every alignment inside a longer text.
    for form_text in (key.hex(), key.hex().upper(), base64.b64encode(b"ab" + key).decode(),
                      base64.urlsafe_b64encode(b"a" + key + b"tail").decode()):
        assert list(scan_bytes("text", f"prefix {form_text} suffix".encode(), keys))
