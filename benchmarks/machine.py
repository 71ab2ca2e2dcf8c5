"""What the benchmark ran on, and the peak memory of its processes (Linux ``/proc``)."""

from __future__ import annotations

import os
import platform
import threading
from pathlib import Path

PROC = Path("/proc")


def describe() -> dict:
    """Cores, CPU model, memory and load average now."""
    model = ""
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kb = _status_kb(PROC / "meminfo", "MemTotal")
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor() or "unknown",
        "memory_gib": round(memory_kb / 2**20, 1) if memory_kb else None,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _status_kb(path: Path, field: str) -> int:
    """A ``Field:   123 kB`` line of a /proc status-like file, in kB (0 when absent)."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def peak_kb(pid: int | str = "self") -> int:
    """The peak resident set (VmHWM) of a process, in kB."""
    return _status_kb(PROC / str(pid) / "status", "VmHWM")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _descendants(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kind(pid: int) -> str:
    try:
        command = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
    if "java" in command.split(" ", 1)[0] or "org.apache.spark" in command:
        return "jvm"
    if "pyspark.daemon" in command or "pyspark/daemon" in command or "pyspark.worker" in command:
        return "python_worker"
    return ""


class MemorySampler:
    """Samples the peak resident set of this process's JVM and Spark Python workers.

    Python workers come and go, so their ``VmHWM`` is read every ``interval`` seconds; the
    figure kept per kind is the largest peak of any one process of that kind.
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peaks: dict[str, int] = {"jvm": 0, "python_worker": 0}
        self.jvm_pid: int | None = None
        self.heap = {"heap_peak_mib": 0.0, "heap_max_mib": 0.0}
        self._memory_bean = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def watch_heap(self, spark) -> None:
        """Sample the JVM's used heap too (through the session's gateway), until None."""
        if spark is None:
            self.sample()
            self._memory_bean = None
            return
        management = spark.sparkContext._jvm.java.lang.management.ManagementFactory
        self._memory_bean = management.getMemoryMXBean()

    def sample(self) -> None:
        bean = self._memory_bean
        if bean is not None:
            try:
                usage = bean.getHeapMemoryUsage()
                self.heap = {
                    "heap_peak_mib": max(self.heap["heap_peak_mib"],
                                         round(usage.getUsed() / 2**20, 1)),
                    "heap_max_mib": round(usage.getMax() / 2**20, 1)}
            except Exception:  # the session is stopping: keep what was seen
                self._memory_bean = None
        for pid in _descendants(os.getpid()):
            kind = _kind(pid)
            if kind:
                if kind == "jvm":
                    self.jvm_pid = pid
                self.peaks[kind] = max(self.peaks[kind], peak_kb(pid))
