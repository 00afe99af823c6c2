"""A fair share of a busy CPU: PyTorch's thread count follows the cores other work leaves free.

PyTorch's CPU kernels run on an OpenMP team of one thread per core whose threads spin at
every barrier. Beside one other CPU-bound process on 2 cores, a team of 2 waits, spinning,
for the thread the scheduler put aside: measured on the demo model, the update rate fell
to 0.04-0.30x of quiet (benchmarks/contention.md), where one thread alone keeps 0.57x.
OMP_WAIT_POLICY=PASSIVE (no spinning) held 0.53x under load but cost 42 % when quiet, and
no GOMP_SPINCOUNT served both, so seqlab measures instead of guessing:

- `CpuShare` reads /proc/stat (every process's CPU time) and /proc/self/stat (ours) and
  returns how many cores *other* processes kept busy since the last reading.
- `ThreadPolicy` (train.threads=0, the default) sets torch's thread count to the cores left
  free, between 1 and the cores seqlab may use, rechecked every second of training; a change
  needs two readings in a row, so one burst of other work does not flip it.

On a quiet machine nothing changes: every core, the same arithmetic as before, so a run is
bit-identical to one with train.threads fixed to the core count. When the thread count does
change the float sums change order (~1e-7 relative), so a run that must be bit-reproducible
under any load fixes train.threads=N. Off Linux (no /proc) the policy keeps torch's default.
"""
from __future__ import annotations

import os
import time
from typing import Callable

import torch


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at most torch's default team."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, torch.get_num_threads()))


class CpuShare:
    """Cores kept busy by other processes, from the CPU time counters of the kernel."""

    def __init__(self) -> None:
        self._last = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        """(busy ticks of all CPUs, ticks of this process, wall seconds), or None off Linux."""
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            with open("/proc/self/stat", encoding="ascii") as f:
                own = f.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)          # idle + iowait
        busy = sum(fields[:8]) - idle                                      # guest time is inside user
        ours = int(own[11]) + int(own[12])                                 # utime + stime, every thread
        return float(busy), float(ours), time.perf_counter()

    def others(self) -> float | None:
        """Cores other processes used since the previous call (None when unknown)."""
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[2] - last[2] <= 0:
            return None
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        other = ((now[0] - last[0]) - (now[1] - last[1])) / ticks / (now[2] - last[2])
        return max(0.0, other)


class ThreadPolicy:
    """torch's intra-op thread count for a run: fixed (threads > 0), or the free cores (0)."""

    def __init__(self, threads: int = 0, log: Callable[[str], None] | None = None, every: float = 1.0):
        self.log = log or (lambda message: None)
        self.every = every
        self.cores = usable_cores()
        self.fixed = threads > 0
        if self.fixed:
            torch.set_num_threads(threads)
            return
        self.share = CpuShare()
        self.pending: int | None = None
        self.last_check = time.perf_counter()
        self.current = torch.get_num_threads()

    def target(self, others: float) -> int:
        """Threads for the cores others leave free: a core counts as taken from 0.5 of one on."""
        return max(1, min(self.cores, self.cores - int(others + 0.5)))

    def check(self, force: bool = False) -> int:
        """Call often (every update); at most once a second it reads the counters and, when two
        readings in a row agree on another count, switches. Returns the thread count."""
        if self.fixed:
            return torch.get_num_threads()
        now = time.perf_counter()
        if not force and now - self.last_check < self.every:
            return self.current
        self.last_check = now
        others = self.share.others()
        if others is None:
            return self.current
        wanted = self.target(others)
        if wanted == self.current:
            self.pending = None
        elif force or self.pending == wanted:
            said = self.__dict__.setdefault("said", set())      # each kind of switch is told once a run
            if (self.current, wanted) not in said:
                said.add((self.current, wanted))
                self.log(f"{'other work keeps' if wanted < self.cores else 'the CPU is free again:'} "
                         f"{others:.1f} core(s) busy; PyTorch threads {self.current} -> {wanted}"
                         + (" (told once; later switches are silent)" if len(said) == 1 else ""))
            torch.set_num_threads(wanted)
            self.current, self.pending = wanted, None
        else:
            self.pending = wanted
        return self.current

    def settle(self, seconds: float = 0.25) -> int:
        """For short verbs (eval, sample): one reading over `seconds`, applied at once."""
        if self.fixed:
            return torch.get_num_threads()
        time.sleep(max(0.0, seconds - (time.perf_counter() - self.last_check)))
        return self.check(force=True)
