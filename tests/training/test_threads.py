"""training/threads.py: PyTorch's thread count follows the cores other work leaves free (issue 14,
point 2). The policy is checked with readings fed to it; CpuShare against a real busy process."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from seqlab.training import threads as th


class Readings:
    """A CpuShare stand-in that returns the given 'cores used by others', one per reading."""

    def __init__(self, values):
        self.values = list(values)

    def others(self):
        return self.values.pop(0)


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(1)


@pytest.mark.parametrize("others,wanted", [(0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (3.0, 1)])
def test_the_target_is_the_free_cores_and_never_below_one(two_cores, others, wanted):
    assert th.ThreadPolicy(0).target(others) == wanted


def test_a_switch_needs_two_readings_in_a_row_and_comes_back_when_the_cpu_is_free(two_cores):
    messages = []
    policy = th.ThreadPolicy(0, log=messages.append, every=0.0)
    policy.share = Readings([1.0, 0.0, 1.0, 1.0, 1.0, 0.1, 0.1])
    seen = [policy.check() for _ in range(7)]
    # one busy reading (a burst) changes nothing; two in a row switch; two free ones switch back
    assert seen == [2, 2, 2, 1, 1, 1, 2]
    assert torch.get_num_threads() == 2
    assert len(messages) == 2 and "threads 2 -> 1" in messages[0] and "threads 1 -> 2" in messages[1]


def test_each_kind_of_switch_is_told_once_a_run(two_cores):
    """A shared machine switching back and forth all day must not fill the log."""
    messages = []
    policy = th.ThreadPolicy(0, log=messages.append, every=0.0)
    policy.share = Readings([1.0, 1.0, 0.1, 0.1] * 5)
    seen = [policy.check() for _ in range(20)]
    assert seen.count(1) == 10 and torch.get_num_threads() == 2     # it still switches every time
    assert len(messages) == 2 and "threads 2 -> 1" in messages[0] and "told once" in messages[0]
    assert "threads 1 -> 2" in messages[1]


def test_readings_are_taken_at_most_once_per_interval(two_cores):
    policy = th.ThreadPolicy(0, every=3600.0)
    policy.share = Readings([])                       # any reading would fail: none must be taken
    assert [policy.check() for _ in range(100)] == [2] * 100


def test_a_fixed_thread_count_is_kept_whatever_the_load(two_cores):
    policy = th.ThreadPolicy(1, every=0.0)
    assert torch.get_num_threads() == 1
    assert [policy.check() for _ in range(3)] == [1, 1, 1]
    assert not hasattr(policy, "share")


def test_unknown_readings_change_nothing(two_cores):
    policy = th.ThreadPolicy(0, every=0.0)
    policy.share = Readings([None, None])
    assert policy.check() == 2 and policy.settle(0) == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CpuShare reads /proc (Linux only)")
def test_cpu_share_sees_a_busy_process_and_not_our_own_work():
    share = th.CpuShare()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        share.others()                                 # start the interval with the competitor running
        time.sleep(1.0)
        others = share.others()
    finally:
        busy.kill()
        busy.wait()
    assert others is not None and others > 0.6, others
    # our own computation is not counted as other work: it adds nothing to what the machine's
    # other work already was (0 on a quiet machine; a CI neighbour's share otherwise)
    share.others()
    time.sleep(0.5)
    before = share.others()
    end = time.perf_counter() + 0.5
    x = torch.randn(200, 200)
    while time.perf_counter() < end:
        x = torch.tanh(x @ x * 1e-3)
    own = share.others()
    assert own is not None and before is not None and own < before + 0.5, (own, before)
