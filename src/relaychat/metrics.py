"""Prometheus metrics, served at GET /metrics: of this process, or of every worker.

With several worker processes behind one port, a scrape reaches one of them at random, so
each would answer with its own share. Instead the workers use prometheus_client's
multiprocess mode: every process writes its values to memory-mapped files in one
directory (`PROMETHEUS_MULTIPROC_DIR`), and any of them answers a scrape with the sum
over all the files. `relaychat serve --workers N` (N > 1) makes a fresh directory for
each run and removes it at the end (`shared_between_workers`). Counters and histograms of
a worker that died stay in the sum (totals never go back); a gauge counts live processes
only (`livesum`): a worker removes its gauge file on the way out, and a scrape removes
those of processes that are gone without a word.

prometheus_client decides between plain and memory-mapped values when it is imported, by
whether `PROMETHEUS_MULTIPROC_DIR` is set; `MULTIPROCESS` is what it decided.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROCESS = prometheus_values.ValueClass is not prometheus_values.MutexValue

REGISTRY = CollectorRegistry(auto_describe=True)

EXTERNAL_MESSAGES = Counter(
    "relaychat_external_messages",
    "External message requests by outcome and key",
    ["outcome", "key"],
    registry=REGISTRY,
)
EXTERNAL_SECONDS = Histogram(
    "relaychat_external_processing_seconds",
    "Time to accept (or refuse) an external message",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
ERRORS = Counter(
    "relaychat_errors", "Errors answered to clients, by code", ["code"], registry=REGISTRY
)
RATE_LIMITED = Counter(
    "relaychat_rate_limited", "Requests refused by a rate limit", ["scope"], registry=REGISTRY
)
OPEN_STREAMS = Gauge(
    "relaychat_open_event_streams",
    "Event streams open (on every live worker)",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
GENERATIONS = Counter(
    "relaychat_generations",
    "Generations finished, by status and endpoint",
    ["status", "endpoint"],
    registry=REGISTRY,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "relaychat_generation_time_to_first_token_seconds",
    "From the start of a generation to its first token",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The metrics in Prometheus's text format: every worker's in multiprocess mode."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not MULTIPROCESS or not directory:
        return generate_latest(REGISTRY)
    forget_dead_processes(Path(directory))
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]  # untyped
    return generate_latest(registry)


def forget_dead_processes(directory: Path) -> None:
    """Remove the live-gauge files of processes that no longer run (killed, say)."""
    pids = {path.stem.rpartition("_")[2] for path in directory.glob("gauge_live*_*.db")}
    for pid in pids:
        if pid.isdigit() and not _running(int(pid)):
            mark_process_dead(int(pid), str(directory))  # type: ignore[no-untyped-call]


def process_exiting() -> None:
    """Take this process out of the live gauges (multiprocess mode; else nothing to do)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if MULTIPROCESS and directory:
        mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def shared_between_workers() -> Iterator[Path]:
    """A fresh metrics directory for the worker processes started in the block (they
    inherit `PROMETHEUS_MULTIPROC_DIR`), removed afterwards. Its files hold no secrets,
    but they are this run's: a directory left by another run would add its counts."""
    directory = Path(tempfile.mkdtemp(prefix="relaychat-metrics-"))
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(directory)
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds the pid: not ours
        return False
    return True
