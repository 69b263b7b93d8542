"""What one step measured: throughput, latency percentiles and errors, from its requests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loadtest.engine import Requests

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class StepStats:
    requests: int
    ok: int
    client_errors: int  # 4xx: a request the tool built was refused
    other_errors: int  # 5xx and requests without an answer
    throughput: float  # answered 2xx per second
    percentiles_ms: dict[int, float]  # of 2xx answers
    max_ms: float

    @property
    def error_rate(self) -> float:
        return (self.client_errors + self.other_errors) / self.requests if self.requests else 0.0

    @property
    def p50(self) -> float:
        return self.percentiles_ms[50]

    @property
    def p99(self) -> float:
        return self.percentiles_ms[99]


def step_stats(requests: Requests) -> StepStats:
    ok = (requests.status >= 200) & (requests.status < 300)
    client = (requests.status >= 400) & (requests.status < 500)
    times = requests.latency_ms[ok]
    percentiles = {
        p: float(np.percentile(times, p)) if times.size else float("nan") for p in PERCENTILES
    }
    return StepStats(
        requests=int(requests.status.size),
        ok=int(ok.sum()),
        client_errors=int(client.sum()),
        other_errors=int((~ok & ~client).sum()),
        throughput=float(ok.sum()) / requests.window_s if requests.window_s > 0 else 0.0,
        percentiles_ms=percentiles,
        max_ms=float(times.max()) if times.size else float("nan"),
    )
