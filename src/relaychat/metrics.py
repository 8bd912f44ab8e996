"""Prometheus metrics of this process, served at GET /metrics.

With several workers each process counts its own; scrape every worker (or put them
behind a per-instance target) and sum in Prometheus.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
    "relaychat_open_event_streams", "Event streams open on this process", registry=REGISTRY
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
