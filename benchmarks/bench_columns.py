"""Every throughput contender side by side in one run; writes a dated report.

    python benchmarks/bench_columns.py [--rows 1000000,4000000,16000000] [--repeat 3]
                                       [--output benchmarks/results] [--label scale]
                                       [--contenders dataframe,job]

For each size (rows of one STRING column of SSN-like values, on local Spark, in a fresh
process per size so that peak memory is per size) it measures, best of ``--repeat``:

- encrypt and decrypt rows/s through the DataFrame API (``encrypt_columns`` /
  ``decrypt_columns``), and the original notebooks' method (``base64(aes_encrypt(v, key,
  'GCM'))`` / ``aes_decrypt(unbase64(v), ...)`` in Spark SQL);
- SQL decrypt rows/s: the project's (the column mask's decrypt as rendered by
  ``spark/sql``, on local Spark: the batch Python function ``decrypt_cells``), the
  original notebooks' SQL function, and the previous mask (native ``aes_decrypt`` with a
  per-query key map, rebuilt in ``sql_native_mask.py``);
- the raw single-core AES-GCM loop on the same values (plain ``cryptography``, one process);
- the whole ``encrypt_columns`` job (its public entry point) against a plain copy job of
  the same parquet input into a table;
- the scheduled re-run (``incremental.py``): ``--rerun-files`` CSV files already ingested,
  one new file landed, the job run again; the files it read, from the checkpoint's log;
- key-service calls (unwraps counted at the local KEK provider, and the SQL unwrap
  function's calls), bytes per value on disk (parquet), and peak memory of the driver, the
  JVM (resident and heap) and the Python workers.

``--contenders`` runs some groups only (``dataframe``, ``sql``, ``job``, ``rerun``,
``bytes``, ``raw``; all by default), e.g. the memory figures at 16 M rows without the SQL
paths' correctness check and the size-independent re-run; the report says which ran.

It prints the table and writes ``<output>/<YYYY-MM-DD>.md`` and ``.json`` (with ``--label
L``: ``<YYYY-MM-DD>-L.md``, so that a second run of the day does not overwrite the first)
with the machine (cores, CPU, memory, load average at start and end). The report is
rewritten after each size, so a long run that is stopped keeps the sizes it finished.
``make bench`` runs it at 1 M rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from contenders import GROUPS  # this folder is on the path of a script run

HERE = Path(__file__).resolve().parent


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError("--rows needs positive row counts, e.g. 1000000")
    return sizes


def parse_label(text: str) -> str:
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise argparse.ArgumentTypeError("--label takes letters, digits, '-' and '_' only")
    return text


def parse_groups(text: str) -> tuple[str, ...]:
    groups = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(groups) - set(GROUPS))
    if not groups or unknown:
        raise argparse.ArgumentTypeError(
            f"--contenders takes some of {', '.join(GROUPS)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return tuple(g for g in GROUPS if g in groups)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=parse_sizes, default=[1_000_000],
                        help="Comma-separated sizes, e.g. 1000000,4000000,16000000.")
    parser.add_argument("--repeat", type=int, default=3, help="Best of this many runs.")
    parser.add_argument("--output", type=Path, default=HERE / "results",
                        help="Folder for <date>.md and <date>.json.")
    parser.add_argument("--label", type=parse_label,
                        help="Name the report <date>-<label>.md/.json instead of "
                             "<date>.md/.json (another run of the same day).")
    parser.add_argument("--rerun-files", type=int, default=1000,
                        help="Files already ingested before the re-run that lands one more.")
    parser.add_argument("--contenders", type=parse_groups, default=GROUPS,
                        help="Comma-separated groups of contenders to run, of: "
                             + ", ".join(GROUPS) + ".")
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--raw-loop", type=int, help=argparse.SUPPRESS)  # child process
    return parser


def _child_env() -> dict[str, str]:
    """The environment of a size's process: it imports the benchmark's own modules."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    return env


def run_sizes(sizes: list[int], repeat: int, rerun_files: int,
              groups: tuple[str, ...] = GROUPS):
    """The figures of each size in turn, each measured in a fresh process."""
    for rows in sizes:
        print(f"-- {rows:,} rows, best of {repeat} ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-") as work:
            out = Path(work) / "figures.json"
            subprocess.run(  # noqa: S603 - this script, with arguments it made
                [sys.executable, str(HERE / "bench_columns.py"), "--one-size", str(rows),
                 "--repeat", str(repeat), "--rerun-files", str(rerun_files),
                 "--contenders", ",".join(groups), "--output", str(out)],
                check=True, env=_child_env())
            yield json.loads(out.read_text())


def _ratios(figures: dict) -> dict[str, float]:
    from contenders import FLOOR_CELLS, FLOOR_MASK, FLOOR_PLAIN, SQL_NATIVE, SQL_PROJECT

    rates = figures["rates"]
    cores = figures.get("cores") or 1
    encrypt = "encrypt: encrypt_columns (DataFrame)"
    pairs = {
        "encrypt_columns / original SQL encrypt": (
            encrypt, "encrypt: original notebooks (SQL aes_encrypt)", 1),
        "decrypt_columns / original SQL decrypt": (
            "decrypt: decrypt_columns (DataFrame)",
            "decrypt: original notebooks (SQL aes_decrypt)", 1),
        "project SQL decrypt / original SQL decrypt": (
            SQL_PROJECT, "decrypt SQL: original notebooks (try_aes_decrypt)", 1),
        "project SQL decrypt / previous native mask": (SQL_PROJECT, SQL_NATIVE, 1),
        "encrypt_columns per core / raw loop (one urandom per value)": (
            encrypt, "raw single core: encrypt, one urandom per value", cores),
        "encrypt_columns per core / raw loop (IVs from one urandom)": (
            encrypt, "raw single core: encrypt, IVs from one urandom", cores),
    }
    # A ratio is given when both of its contenders ran (see --contenders).
    ratios = {name: rates[a] / divisor / rates[b] for name, (a, b, divisor) in pairs.items()
              if a in rates and b in rates}
    # The most any implementation of the same shape could reach against the original: the
    # no-op floor alone, and (estimated, not measured) the floor plus the raw loop spread
    # over every core, the time per row of each added.
    bounds = {
        "encrypt": (FLOOR_PLAIN, "raw single core: encrypt, IVs from one urandom",
                    "encrypt: original notebooks (SQL aes_encrypt)"),
        "decrypt": (FLOOR_CELLS, "raw single core: decrypt",
                    "decrypt: original notebooks (SQL aes_decrypt)"),
    }
    for name, (floor, raw, original) in bounds.items():
        if floor in rates and original in rates:
            ratios[f"bound on {name}: no-op Arrow UDF / original SQL {name}"] = \
                rates[floor] / rates[original]
        if floor in rates and raw in rates and original in rates:
            combined = 1 / (1 / rates[floor] + 1 / (rates[raw] * cores))
            ratios[f"bound on {name}: no-op Arrow UDF plus the raw loop on every core "
                   f"(estimate) / original SQL {name}"] = combined / rates[original]
    original_sql = "decrypt SQL: original notebooks (try_aes_decrypt)"
    if FLOOR_MASK in rates and original_sql in rates:
        ratios["bound on the SQL decrypt: mask with a no-op decrypt_cells / original SQL "
               "decrypt"] = rates[FLOOR_MASK] / rates[original_sql]
    if "job" in figures:
        ratios["encrypt_columns job wall time / plain copy job"] = figures["job"]["ratio"]
    return ratios


def render(report: dict) -> str:
    start, end = report["machine_start"], report["machine_end"]
    lines = [
        f"# Benchmark {report['date']}",
        "",
        f"Machine: {start['cores']} cores, {start['cpu']}, {start['memory_gib']} GiB, "
        f"{start['system']}, Python {start['python']}. Load average (1, 5, 15 min) at start "
        f"{start['load_average']}, at end {end['load_average']}. Local Spark "
        f"(`local[*]`), one STRING column of SSN-like values, noop sink unless said, best of "
        f"{report['repeat']}. Command: `{report['command']}`.",
        "",
        "The machine may be shared: compare figures within one run (the ratios), not "
        "across runs.",
    ]
    for figures in report["sizes"]:
        rows = figures["rows"]
        lines += ["", f"## {rows:,} rows", "", "| contender | rows/s |", "|---|---:|"]
        lines += [f"| {name} | {value:,.0f} |" for name, value in figures["rates"].items()]
        lines += ["", "| ratio (same run) | value |", "|---|---:|"]
        lines += [f"| {name} | {value:.2f} |" for name, value in figures["ratios"].items()]
        if "contenders" in figures and tuple(figures["contenders"]) != GROUPS:
            lines += ["", f"Contenders run: {', '.join(figures['contenders'])} only."]
        if "job" in figures:
            job = figures["job"]
            lines += ["", f"Whole job: `encrypt_columns` {job['encrypt_columns_s']:.2f} s, "
                      f"plain copy {job['copy_s']:.2f} s."]
        if "rerun" in figures:
            rerun = figures["rerun"]
            lines += ["", f"Scheduled re-run: {rerun['landed_files_before_rerun']:,} files "
                      f"ingested by a first run ({rerun['first_run_s']:.1f} s, "
                      f"{rerun['first_run_files_read']:,} files read), one file landed, the "
                      f"job run again: **{rerun['rerun_files_read']} file(s) read** (counted "
                      f"in the checkpoint's source log), {rerun['rerun_rows_appended']} rows "
                      f"appended ({rerun['rows_per_file']} per file), "
                      f"{rerun['rerun_s']:.1f} s."]
        lines += ["", "| key-service calls | count |", "|---|---:|"]
        lines += [f"| {name} | {value:g} |" for name, value in figures["calls"].items()]
        if "bytes_per_value" in figures:
            lines += ["", "| bytes per value on disk (parquet, the column alone) | bytes |",
                      "|---|---:|"]
            lines += [f"| {name} | {value:.1f} |"
                      for name, value in figures["bytes_per_value"].items()]
        memory = figures["memory"]
        heap = memory["jvm_heap"]
        lines += ["", "| peak memory | MiB |", "|---|---:|",
                  f"| driver (Python, VmHWM) | {memory['driver_peak_mib']:,.0f} |",
                  f"| JVM (VmHWM) | {memory['jvm_peak_rss_mib']:,.0f} |",
                  f"| JVM heap used, peak (of max {heap['heap_max_mib']:,.0f}) | "
                  f"{heap['heap_peak_mib']:,.0f} |",
                  f"| Python worker, largest (VmHWM) | "
                  f"{memory['python_worker_peak_mib']:,.0f} |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    sys.path.insert(0, str(HERE))
    if args.raw_loop is not None:
        from contenders import raw_loop

        print(json.dumps(raw_loop(args.raw_loop, args.repeat)))
        return 0
    if args.one_size is not None:
        from contenders import run_size

        with tempfile.TemporaryDirectory(prefix="bench-size-") as work:
            figures = run_size(args.one_size, args.repeat, Path(work), args.rerun_files,
                               args.contenders)
        args.output.write_text(json.dumps(figures))
        return 0

    import machine

    started = machine.describe()
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    name = f"{today}-{args.label}" if args.label else today
    command = ("python benchmarks/bench_columns.py "
               f"--rows {','.join(str(n) for n in args.rows)} --repeat {args.repeat} "
               f"--rerun-files {args.rerun_files}"
               + (f" --contenders {','.join(args.contenders)}"
                  if args.contenders != GROUPS else "")
               + (f" --label {args.label}" if args.label else ""))
    args.output.mkdir(parents=True, exist_ok=True)
    sizes: list[dict] = []
    for figures in run_sizes(args.rows, args.repeat, args.rerun_files, args.contenders):
        figures["cores"] = started["cores"]
        figures["ratios"] = _ratios(figures)
        sizes.append(figures)
        report = {"date": today, "repeat": args.repeat, "machine_start": started,
                  "machine_end": machine.describe(), "sizes": sizes, "command": command}
        text = render(report)
        (args.output / f"{name}.md").write_text(text)
        (args.output / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(text)
    print(f"written: {args.output / (name + '.md')} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
