"""The metrics' multiprocess plumbing: a dead worker's live gauges go, its counters stay;
a run's directory comes and goes with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from relaychat import metrics


def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_live_gauges_of_a_dead_process_go_and_its_counters_stay(tmp_path: Path) -> None:
    gone, alive = dead_pid(), os.getpid()
    for name in (
        f"gauge_livesum_{gone}.db",
        f"gauge_liveall_{gone}.db",
        f"counter_{gone}.db",
        f"histogram_{gone}.db",
        f"gauge_livesum_{alive}.db",
    ):
        (tmp_path / name).write_bytes(b"")
    metrics.forget_dead_processes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{gone}.db", f"histogram_{gone}.db", f"gauge_livesum_{alive}.db"]
    )


def test_each_run_of_workers_has_a_fresh_directory_of_its_own() -> None:
    before = os.environ.get(metrics.MULTIPROC_ENV)
    with metrics.shared_between_workers() as first:
        assert os.environ[metrics.MULTIPROC_ENV] == str(first)
        assert list(first.iterdir()) == []
        (first / "counter_1.db").write_bytes(b"")
    assert not first.exists()
    assert os.environ.get(metrics.MULTIPROC_ENV) == before
    with metrics.shared_between_workers() as second:
        assert second != first and list(second.iterdir()) == []
