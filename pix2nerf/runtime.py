"""CPU threads that stay fast when other processes compete for the cores.

PyTorch's CPU kernels run on an OpenMP team that meets at a barrier after every parallel operation, and this
package's graphs are thousands of short operations. When other processes hold the cores, a team member gets
descheduled and the others spin at every barrier: on 2 cores with 4 busy processes, a 64^2 render took 3.6 s
with 2 threads instead of 0.4 s with one. A single thread has no barrier, so it degrades only by its fair share.

:class:`ThreadGovernor` therefore uses every CPU this process may run on (affinity and cgroup quota) while the
machine is otherwise quiet, and drops to the cores left free when other runnable tasks appear, re-checking at
most every ``interval`` seconds. ``PIX2NERF_NUM_THREADS`` (or an explicit count) fixes the number instead.
Every layer may import this module.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

THREADS_ENV = "PIX2NERF_NUM_THREADS"
"""Environment variable that fixes the thread count (a positive integer) and turns adaptation off."""
CHECK_INTERVAL_S = 2.0
"""Seconds between two looks at the machine's load."""
LOAD_SAMPLES = 5
"""Readings of the run queue per look; their median is used (a single reading is noisy)."""
SAMPLE_SPACING_S = 0.001
"""Pause between two readings, so that they do not all fall into one scheduling instant."""
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota when one is set."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = _CGROUP_CPU_MAX.read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def _runnable_system_tasks() -> int | None:
    """Tasks running or ready to run on the whole machine (``procs_running`` of /proc/stat), None off Linux."""
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _runnable_own_threads() -> int:
    """Threads of this process that are running or ready to run (state R in /proc/self/task/*/stat)."""
    count = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            if task.joinpath("stat").read_text().rpartition(")")[2].split()[0] == "R":
                count += 1
        except (OSError, IndexError):
            continue
    return count


def competing_tasks(samples: int = LOAD_SAMPLES) -> int:
    """Runnable tasks of *other* processes right now (median of ``samples`` readings, ``SAMPLE_SPACING_S`` apart);
    0 where unknown. Our own threads are counted just before and just after each system-wide reading and the
    larger count is subtracted, so a worker that goes to sleep in between is not mistaken for a competitor."""
    readings = []
    for index in range(samples):
        if index:
            time.sleep(SAMPLE_SPACING_S)
        before = _runnable_own_threads()
        system = _runnable_system_tasks()
        if system is None:
            return 0
        readings.append(max(0, system - max(before, _runnable_own_threads())))
    return sorted(readings)[len(readings) // 2]


def threads_from_environment() -> int | None:
    """The count fixed by ``PIX2NERF_NUM_THREADS``, or None; a malformed value is a ValueError naming it."""
    value = os.environ.get(THREADS_ENV)
    if value is None or value == "":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_ENV} must be a positive integer (a fixed CPU thread count), got {value!r}")
    return int(value)


class ThreadGovernor:
    """Sets torch's CPU thread count for the calling thread, adapting it to competing load.

    Args:
        threads: a fixed count (None: ``PIX2NERF_NUM_THREADS`` if set, else adaptive).
        interval: seconds between two looks at the load when adaptive.
    """

    def __init__(self, threads: int | None = None, interval: float = CHECK_INTERVAL_S) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be a positive integer or None (adaptive), got {threads}")
        self.fixed = threads if threads is not None else threads_from_environment()
        self.interval = interval
        self.cpus = available_cpus()
        self._last_check = -math.inf

    def choose(self) -> int:
        """The thread count for now: the fixed one, else the available CPUs minus competing tasks (at least 1)."""
        if self.fixed is not None:
            return self.fixed
        return max(1, self.cpus - competing_tasks())

    def update(self) -> int:
        """Apply :meth:`choose` if ``interval`` has passed since the last look (cheap to call per step or frame)."""
        now = time.monotonic()
        if now - self._last_check >= self.interval:
            self._last_check = now
            threads = self.choose()
            if threads != torch.get_num_threads():
                torch.set_num_threads(threads)
        return torch.get_num_threads()


_default: ThreadGovernor | None = None


def adapt_threads() -> int:
    """Update the process-wide :class:`ThreadGovernor` (created on first use); returns the thread count."""
    global _default
    if _default is None:
        _default = ThreadGovernor()
    return _default.update()


def configure_threads(threads: int | None = None) -> int:
    """Replace the process-wide governor: ``threads`` fixes the count, None adapts (or reads the environment)."""
    global _default
    _default = ThreadGovernor(threads)
    return _default.update()
