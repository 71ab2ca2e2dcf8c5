"""The benchmark command keeps working: a tiny run writes both report files, and every
contender in them has a positive figure. No timing is asserted (speed is the benchmark's
business, and the machine may be loaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTENDERS = (
    "encrypt: original notebooks (SQL aes_encrypt)",
    "encrypt: encrypt_columns (DataFrame)",
    "decrypt: original notebooks (SQL aes_decrypt)",
    "decrypt: decrypt_columns (DataFrame)",
    "decrypt SQL: original notebooks (try_aes_decrypt)",
    "decrypt SQL: project (column mask's decrypt: batch Python function decrypt_cells)",
    "decrypt SQL: previous mask (native aes_decrypt + key map)",
    "job: encrypt_columns (whole job, parquet in, table out)",
    "job: plain copy (parquet in, table out)",
    "raw single core: encrypt, one urandom per value",
    "raw single core: encrypt, IVs from one urandom",
    "raw single core: decrypt",
    "floor: Arrow UDF that returns its input (plaintext column, no work)",
    "floor: Arrow UDF that returns its input (cells column, no work)",
    "floor: the column mask with a decrypt_cells that opens nothing (answers '+' || value)",
)


def bench_env() -> dict[str, str]:
    """The environment of a benchmark process: this checkout's sources first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return env


@pytest.mark.slow
def test_bench_writes_every_contender(tmp_path):
    env = bench_env()
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_columns.py"), "--rows", "2000",
         "--repeat", "1", "--rerun-files", "25", "--output", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = sorted(tmp_path.glob("*.json"))
    assert len(reports) == 1 and reports[0].with_suffix(".md").is_file()
    report = json.loads(reports[0].read_text())
    assert report["machine_start"]["cores"] and report["machine_end"]["load_average"]
    (figures,) = report["sizes"]
    assert figures["rows"] == 2000
    assert set(CONTENDERS) <= set(figures["rates"])
    assert all(figures["rates"][name] > 0 for name in CONTENDERS)
    assert all(value > 0 for value in figures["ratios"].values())
    # One key-service call per DEK version touched per process (or query): one version here.
    calls = figures["calls"]
    assert calls["DataFrame encrypt + decrypt, one keyring: DEK unwraps"] == 1
    assert calls["encrypt_columns job, per run: DEK unwraps"] == 1
    assert calls["decrypt SQL: previous mask (native aes_decrypt + key map), per query: "
                 "unwrap_key records"] == 1
    assert calls["decrypt SQL: project (column mask's decrypt: batch Python function "
                 "decrypt_cells), per query: unwrap_key records"] == 0
    # decrypt_cells unwraps inside its workers: at most once per worker process and version.
    unwraps = calls["decrypt_cells, whole run: key-service unwraps"]
    assert unwraps >= 1
    assert unwraps == calls["decrypt_cells, whole run: distinct (worker process, version)"]
    assert all(value > 0 for value in figures["bytes_per_value"].values())
    assert figures["bytes_per_value"]["ee1 cells"] > figures["bytes_per_value"]["plaintext"]
    # The scheduled re-run reads the one new file only, not the 25 ingested before.
    rerun = figures["rerun"]
    assert rerun["first_run_files_read"] == 25
    assert rerun["rerun_files_read"] == 1
    assert rerun["rerun_rows_appended"] == rerun["rows_per_file"]
    memory = figures["memory"]
    assert memory["driver_peak_mib"] > 0 and memory["jvm_peak_rss_mib"] > 0
    assert memory["python_worker_peak_mib"] > 0
    assert 0 < memory["jvm_heap"]["heap_peak_mib"] <= memory["jvm_heap"]["heap_max_mib"]
    markdown = reports[0].with_suffix(".md").read_text()
    assert all(name in markdown for name in CONTENDERS) and "Load average" in markdown


@pytest.mark.slow
def test_equality_bench_writes_its_report(tmp_path):
    env = bench_env()
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_equality.py"), "--rows", "2000",
         "--repeat", "1", "--output", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    (report,) = tmp_path.glob("equality-*.md")
    text = report.read_text()
    assert "2,000 rows per table, 1,000 pairs" in text
    for contender in ("join on plaintext", "join on deterministic cells (ed1)",
                      "join on 64-bit blind indexes (bi1)", "decrypt both sides, then join"):
        assert f"| {contender} |" in text


@pytest.mark.slow
def test_bench_subjects_prints_its_figures(tmp_path):
    env = bench_env()
    output = tmp_path / "subjects.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_subjects.py"), "--subjects", "300",
         "--rows-per-subject", "2", "--output", str(output)],
        env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rows/s" in result.stdout
    (figures,) = json.loads(output.read_text())["sizes"]
    assert (figures["subjects"], figures["rows"]) == (300, 600)
    assert all(rate > 0 for rate in figures["rates"].values()) and len(figures["rates"]) == 6
    # One DEK unwrap per process whatever the number of subjects: derived, never unwrapped.
    calls = figures["calls"]
    assert calls["per-subject encrypt, all runs: DEK unwraps"] == 1
    assert calls["per-subject decrypt, broadcast: DEK unwraps"] == 1
    assert calls["per-subject decrypt, shuffle: DEK unwraps"] == 1
    memory = figures["memory"]
    assert memory["driver_peak_mib"] > 0 and memory["python_worker_peak_mib"] > 0
    assert figures["subject_table_bytes_per_subject"] > 32  # at least the salt


def test_bench_options_select_contenders_and_name_the_report():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_columns
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    parser = bench_columns.build_parser()
    args = parser.parse_args(["--contenders", "job,dataframe", "--label", "scale-16m"])
    assert args.contenders == ("dataframe", "job") and args.label == "scale-16m"
    assert parser.parse_args([]).contenders == bench_columns.GROUPS
    for bad in (["--contenders", "job,speed"], ["--contenders", ""], ["--label", "a/b"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    # A report of some groups only: the ratios of the contenders that ran, and says which.
    figures = {"rows": 10, "cores": 2, "contenders": ["job"], "calls": {"x": 1},
               "rates": {"job: encrypt_columns (whole job, parquet in, table out)": 1.0,
                         "job: plain copy (parquet in, table out)": 4.0},
               "job": {"encrypt_columns_s": 10.0, "copy_s": 2.5, "ratio": 4.0},
               "memory": {"driver_peak_mib": 1, "jvm_peak_rss_mib": 2,
                          "python_worker_peak_mib": 3,
                          "jvm_heap": {"heap_peak_mib": 1, "heap_max_mib": 2}}}
    assert bench_columns._ratios(figures) == {
        "encrypt_columns job wall time / plain copy job": 4.0}
    figures["ratios"] = bench_columns._ratios(figures)
    machine = {"cores": 2, "cpu": "c", "memory_gib": 1, "system": "s", "python": "3",
               "load_average": [1, 1, 1]}
    text = bench_columns.render({"date": "d", "repeat": 1, "machine_start": machine,
                                 "machine_end": machine, "sizes": [figures], "command": "c"})
    assert "Contenders run: job only." in text and "Scheduled re-run" not in text
