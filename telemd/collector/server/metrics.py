"""The collector's Prometheus metrics, kept in memory and rendered as text.

Four families: records ingested by format and result, events by source and
result, request latency by route, and storage errors. Updated only from the
event loop's thread, so no locks. Written by hand rather than with
prometheus_client: four families do not justify a dependency and its global registry.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RESULTS = ("stored", "duplicate", "rejected")


class Histogram:
    __slots__ = ("counts", "sum", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += 1
        self.sum += seconds


class Metrics:
    def __init__(self) -> None:
        self.records: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.events: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.latency: defaultdict[tuple[str, str], Histogram] = defaultdict(Histogram)
        self.storage_errors = 0

    def count_records(self, fmt: str, result: str, n: int = 1) -> None:
        if n:
            self.records[(fmt, result)] += n

    def count_events(self, source: str, result: str, n: int = 1) -> None:
        if n:
            self.events[(source, result)] += n

    def observe_request(self, method: str, route: str, seconds: float) -> None:
        self.latency[(method, route)].observe(seconds)

    def count_storage_error(self) -> None:
        self.storage_errors += 1

    def render(self) -> str:
        lines = [
            "# HELP telemd_collector_records_total Records received, by format and result.",
            "# TYPE telemd_collector_records_total counter",
        ]
        for (fmt, result), n in sorted(self.records.items()):
            lines.append(f'telemd_collector_records_total{{format="{fmt}",result="{result}"}} {n}')
        lines += [
            "# HELP telemd_collector_events_total Events received, by source and result.",
            "# TYPE telemd_collector_events_total counter",
        ]
        for (source, result), n in sorted(self.events.items()):
            lines.append(
                f'telemd_collector_events_total{{source="{source}",result="{result}"}} {n}'
            )
        lines += [
            "# HELP telemd_collector_request_duration_seconds Time to answer a request.",
            "# TYPE telemd_collector_request_duration_seconds histogram",
        ]
        for (method, route), hist in sorted(self.latency.items()):
            labels = f'method="{method}",route="{route}"'
            cumulative = 0
            for bound, count in zip((*LATENCY_BUCKETS, "+Inf"), hist.counts, strict=True):
                cumulative += count
                lines.append(
                    f'telemd_collector_request_duration_seconds_bucket{{{labels},le="{bound}"}}'
                    f" {cumulative}"
                )
            lines.append(f"telemd_collector_request_duration_seconds_sum{{{labels}}} {hist.sum}")
            lines.append(
                f"telemd_collector_request_duration_seconds_count{{{labels}}} {hist.total}"
            )
        lines += [
            "# HELP telemd_collector_storage_errors_total Database operations that failed.",
            "# TYPE telemd_collector_storage_errors_total counter",
            f"telemd_collector_storage_errors_total {self.storage_errors}",
        ]
        return "\n".join(lines) + "\n"
