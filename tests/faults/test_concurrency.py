"""Concurrent runs on one scope: versions stay numbered without gaps or duplicates, exactly
one is active, and no DEK is lost or changed.

Cross-process: the aws-sm back end, whose keyring is a Secrets Manager secret (no Spark, so
no embedded Derby metastore shared between JVMs), against moto; several real processes start
the same job at the same instant. Threads in one Spark session: the keyring table store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from envelope_encryption.errors import ConcurrentModification
from envelope_encryption.jobs import dek_generation, kek_setup
from envelope_encryption.jobs.common import build_context
from envelope_encryption.keyring.base import DekState
from tests.faults.concurrent_worker import NoSpark
from tests.faults.scenario import SCHEMA, aws_settings, unique_catalog

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
RUNS = 3


def run_processes(job: str, endpoint: str, catalog: str) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    start_at = time.time() + 4.0  # time for every interpreter to import the package
    workers = [
        subprocess.Popen([sys.executable, "-m", "tests.faults.concurrent_worker", job,
                          endpoint, catalog, str(start_at), str(RUNS)],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(PROCESSES)
    ]
    outcomes = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-2000:]
        outcomes += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(outcomes) == PROCESSES * RUNS
    return outcomes


def assert_versions_consistent(store, scope: str) -> list:
    """Versions 1..n, no (version, revision) stored twice, each version's kept revisions
    consecutive (the aws-sm store keeps the newest two), the highest enabled one active."""
    history = store.history(scope)
    slots = Counter((r.version, r.revision) for r in history)
    assert set(slots.values()) == {1}, f"a version or revision stored twice: {slots}"
    versions = sorted({r.version for r in history})
    assert versions == list(range(1, len(versions) + 1)), f"gap in the versions: {versions}"
    for version in versions:
        revisions = sorted(r.revision for r in history if r.version == version)
        assert revisions == list(range(revisions[0], revisions[-1] + 1)), revisions
    current = store.current(scope)
    enabled = [r for r in current if r.state is DekState.ENABLED]
    assert enabled and enabled[-1].version == len(versions)
    return current


@pytest.mark.slow
def test_concurrent_dek_generation_processes_aws_sm(moto, spark):
    moto.reset()
    settings = aws_settings("aws-sm", moto.url, unique_catalog("conc"), audit_table="none")
    # kek_setup looks for the original notebooks' objects in the catalog (Spark); the
    # concurrent runs below use none.
    kek_setup.run(settings, spark)
    outcomes = run_processes("dek_generation", moto.url, settings.catalog)
    made = [o["version"] for o in outcomes if "version" in o]
    refused = [o for o in outcomes if "error" in o]
    print(f"\n{PROCESSES} processes x {RUNS} dek_generation: {len(made)} created "
          f"{sorted(made)}, {len(refused)} refused ({Counter(o['error'] for o in refused)})")
    assert all(o["error"] == ConcurrentModification.__name__ for o in refused), refused
    assert len(made) == len(set(made)) and made, "two runs claimed the same version"
    with build_context(settings, NoSpark()) as ctx:
        scope = settings.scope(SCHEMA)
        current = assert_versions_consistent(ctx.store, scope)
        assert [r.version for r in current] == list(range(1, 2 + len(made)))
        assert ctx.keyring.active(scope).version == len(made) + 1
        deks = ctx.keyring.deks(scope)
        assert len({k.reveal() for k in deks.values()}) == len(current)  # all distinct


@pytest.mark.slow
def test_concurrent_rotate_kek_processes_aws_sm(moto, spark):
    moto.reset()
    settings = aws_settings("aws-sm", moto.url, unique_catalog("conc"), audit_table="none")
    # kek_setup looks for the original notebooks' objects in the catalog (Spark); the
    # concurrent runs below use none.
    kek_setup.run(settings, spark)
    for _ in range(2):
        dek_generation.run(settings, NoSpark(), schema=SCHEMA)
    with build_context(settings, NoSpark()) as ctx:
        scope = settings.scope(SCHEMA)
        before = {v: k.reveal() for v, k in ctx.keyring.deks(scope).items()}
    outcomes = run_processes("rotate_kek", moto.url, settings.catalog)
    refused = [o for o in outcomes if "error" in o]
    print(f"\n{PROCESSES} processes x {RUNS} rotate_kek: {len(outcomes) - len(refused)} "
          f"completed, refused: {Counter(o['error'] for o in refused)}")
    for outcome in refused:
        print(f"  {outcome['error']}: {outcome['message']}")
    # A refused run stops on ConcurrentModification, whether it lost the race on the DEK
    # store or on the KEK secret's version labels; it changed nothing it could not finish.
    assert {o["error"] for o in refused} <= {"ConcurrentModification"}, refused
    with build_context(settings, NoSpark()) as ctx:
        # A rewrap-only pass finishes whatever a refused run left; nothing is rotated.
        from envelope_encryption.jobs import rotate_kek

        rotate_kek.run(settings, NoSpark(), rewrap_only=True)
        current = assert_versions_consistent(ctx.store, scope)
        assert [r.version for r in current] == [1, 2, 3]
        kek = ctx.kek.describe()
        assert {(r.wrapped.kek_id, r.wrapped.kek_version) for r in current} == {
            (kek.kek_id, kek.kek_version)}
    with build_context(settings, NoSpark()) as ctx:
        assert {v: k.reveal() for v, k in ctx.keyring.deks(scope).items()} == before


def run_threads(count: int, target) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def body(index: int) -> None:
        barrier.wait()
        try:
            results[index] = target()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


@pytest.mark.slow
def test_concurrent_dek_generation_threads_table_store(spark, tmp_path):
    from envelope_encryption.config import Settings

    settings = Settings(catalog=unique_catalog("conc"), schemas=(SCHEMA,),
                        options={"local-kek-file": str(tmp_path / "kek.key")})
    kek_setup.run(settings, spark)
    results = run_threads(3, lambda: dek_generation.run(settings, spark, schema=SCHEMA))
    made = [r.version for r in results if not isinstance(r, Exception)]
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(made) == len(set(made)), f"two runs created the same version: {made}"
    print(f"\n3 threads dek_generation (table store): created {sorted(made)}, "
          f"refused {[type(e).__name__ for e in errors]}")
    for error in errors:
        print(f"  {type(error).__name__}: {str(error)[:600]}")
    assert all(isinstance(e, ConcurrentModification) for e in errors), errors
    with build_context(settings, spark) as ctx:
        current = assert_versions_consistent(ctx.store, settings.scope(SCHEMA))
        assert len(current) == 1 + len(made)

