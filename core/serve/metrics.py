"""Request counts, a latency histogram and errors in the Prometheus text format (version 0.0.4), hand-written.

Routes are labelled by their template (``/v1/users/{user_id}/recommendations``), never by the raw path, so the
number of series stays bounded whatever clients send; a path that matches no route is labelled ``unmatched``.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds (seconds) of the latency histogram's buckets; ``+Inf`` is added."""


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Thread-safe counters of what the server answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._errors: dict[tuple[str, str], int] = defaultdict(int)
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = defaultdict(float)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        with self._lock:
            self._requests[(route, method, status)] += 1
            if status >= 400:
                self._errors[(route, "server" if status >= 500 else "client")] += 1
            counts = self._buckets.setdefault(route, [0] * (len(BUCKETS) + 1))
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sums[route] += seconds

    def render(self, model_version: str, created: str, reloads: dict[str, int]) -> str:
        """Everything, as Prometheus text."""
        lines = [
            "# HELP fusionrec_http_requests_total Requests answered, by route template, method and status.",
            "# TYPE fusionrec_http_requests_total counter",
        ]
        with self._lock:
            for (route, method, status), n in sorted(self._requests.items()):
                lines.append(
                    f'fusionrec_http_requests_total{{route="{_label(route)}",method="{method}",status="{status}"}} {n}'
                )
            lines += [
                "# HELP fusionrec_http_errors_total Answers with status >= 400: client (4xx) or server (5xx).",
                "# TYPE fusionrec_http_errors_total counter",
            ]
            for (route, kind), n in sorted(self._errors.items()):
                lines.append(f'fusionrec_http_errors_total{{route="{_label(route)}",kind="{kind}"}} {n}')
            lines += [
                "# HELP fusionrec_http_request_duration_seconds Time to answer a request, by route template.",
                "# TYPE fusionrec_http_request_duration_seconds histogram",
            ]
            for route, counts in sorted(self._buckets.items()):
                lines += self._histogram(route, counts)
        lines += [
            "# HELP fusionrec_model_info The run being served: its path and its manifest's creation time.",
            "# TYPE fusionrec_model_info gauge",
            f'fusionrec_model_info{{version="{_label(model_version)}",created="{_label(created)}"}} 1',
            "# HELP fusionrec_model_reloads_total Reloads (POST /admin/reload, SIGHUP), by result.",
            "# TYPE fusionrec_model_reloads_total counter",
        ]
        lines += [f'fusionrec_model_reloads_total{{result="{r}"}} {n}' for r, n in sorted(reloads.items())]
        return "\n".join(lines) + "\n"

    def _histogram(self, route: str, counts: list[int]) -> list[str]:
        name, label = "fusionrec_http_request_duration_seconds", _label(route)
        out, total = [], 0
        for bound, n in zip([*map(str, BUCKETS), "+Inf"], counts, strict=True):
            total += n
            out.append(f'{name}_bucket{{route="{label}",le="{bound}"}} {total}')
        out.append(f'{name}_sum{{route="{label}"}} {self._sums[route]:.6f}')
        out.append(f'{name}_count{{route="{label}"}} {total}')
        return out
