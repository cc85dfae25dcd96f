"""One child process of a benchmark: its wall and CPU seconds, its peak resident size, stderr.

The peak is the child's own ``ru_maxrss`` from ``wait4``. Linux records the peak of the
memory a process leaves at ``exec`` too, and ``subprocess`` may start the child sharing this
process's memory (vfork), so a benchmark that measures peaks keeps itself small (no torch,
no whole recordings) until its children have run.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

KIB_PER_MIB = 1024


@dataclass(frozen=True)
class Child:
    wall_seconds: float
    cpu_seconds: float  # user + system
    peak_rss_mib: float
    stderr: str


def run_child(command: list[str], cwd: Path, env: dict[str, str] | None = None,
              timeout_seconds: float = 3600.0) -> Child:
    """Run ``command`` to its end; a non-zero exit raises with the end of its stderr."""
    with tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                   stderr=err, text=True)
        timer = threading.Timer(timeout_seconds, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        stderr = err.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{stderr[-3000:]}")
    return Child(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / KIB_PER_MIB, stderr)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
