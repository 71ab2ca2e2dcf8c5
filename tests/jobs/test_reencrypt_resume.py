"""A batched re-encryption killed (SIGKILL, driver and JVM) at several points, each time
completed further by a re-run: no row lost or duplicated, every cell decrypts to its
original value, no cell is re-encrypted twice.

Each step is a real process (``reencrypt_kill_worker.py``) on one local table and metastore.
The table: 12 parquet files, 100 rows holding cells of DEK v1 in 10 files (20 of them also
hold a v2 cell), 20 rows under v2 only; 20 rows per batch, so 5 batches of 2 files. Kills:
after two batches; after the first file of a batch was swapped (the batch half committed);
after a batch's journal record, before any swap; after a batch was staged, before its record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.jobs.reencrypt_kill_worker import ROWS, plain

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 900


def _step(tmp_path: Path, *args: str) -> tuple[int, list[dict]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.jobs.reencrypt_kill_worker", str(tmp_path / "work"),
         str(tmp_path / "kek.key"), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # its own process group: the kill takes the JVM too
    out, err = worker.communicate(timeout=TIMEOUT)
    _wait_until_gone(worker.pid)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if worker.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"{args}: exit {worker.returncode}\n{err[-4000:]}")
    return worker.returncode, lines


def _wait_until_gone(group: int) -> None:
    """The next step opens the same metastore: wait until no process of the group is left."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError(f"process group {group} still alive")


def _cells(state: dict) -> dict[int, list[str]]:
    return {int(k): v for k, v in state["cells"].items()}


def _v2_cells(state: dict) -> dict[tuple[int, int], str]:
    return {(row, i): cell for row, cells in _cells(state).items()
            for i, cell in enumerate(cells) if cell.startswith("ee1:2:")}


def _check_intact(state: dict) -> None:
    assert sorted(state["ids"]) == list(range(ROWS)), "a row was lost or duplicated"
    assert {int(k): v for k, v in state["plain"].items()} == {i: plain(i) for i in range(ROWS)}
    assert sum(state["versions"].values()) == 2 * ROWS


def _rows_done(state: dict) -> int:
    return sum(all(c.startswith("ee1:2:") for c in cells) for cells in _cells(state).values())


def test_a_killed_reencryption_completes_on_rerun_with_each_cell_moved_once(tmp_path):
    code, (initial,) = _step(tmp_path, "setup")
    assert code == 0
    _check_intact(initial)
    assert initial["versions"] == {"1": 180, "2": 60} and len(initial["files"]) == 12
    assert _rows_done(initial) == 20

    kills = ["batch:2", "swap:1", "record:1", "stage:1"]
    starts = []  # the state each run found when it started
    for point in kills:
        code, lines = _step(tmp_path, "run", point)
        assert code == -signal.SIGKILL, f"{point}: the run was not killed: {lines}"
        assert [line["kind"] for line in lines] == ["state"]  # killed before any report
        starts.append(lines[0])
    code, lines = _step(tmp_path, "run", "none")
    assert code == 0
    last_start, report, final = lines
    after_kills = [*starts[1:], last_start]

    # Each kill left the table intact and further along (the predicate is the checkpoint):
    # two batches (40 rows); then one file (10 rows) of a half-swapped batch; that batch
    # finished by the next run, whose own next batch was recorded, not swapped; that batch
    # finished by the next run, whose own was staged only.
    for state in after_kills:
        _check_intact(state)
    assert [_rows_done(s) for s in after_kills] == [60, 70, 80, 100]
    assert [bool(s["journal"]) for s in after_kills] == [False, True, True, True]

    # The last run found 20 rows left (the staged-only batch was dropped and done again).
    assert (report["rows_to_do"], report["rows_done"], report["batches"]) == (20, 20, 1)
    _check_intact(final)
    assert final["versions"] == {"2": 2 * ROWS} and _rows_done(final) == ROWS
    assert final["files"] == initial["files"]  # every file swapped in place, none added
    assert final["journal"] == []

    # None encrypted twice: every cell under v2 at any point (before the first run, or
    # written by a batch that committed before a kill) is byte-identical at the end.
    last = _cells(final)
    for state in [initial, *after_kills]:
        for (row, column), cell in _v2_cells(state).items():
            assert last[row][column] == cell, (row, column)
