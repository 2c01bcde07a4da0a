"""Running figures per provider: requests, failures, latency percentiles, tokens and cost.

Latency percentiles come from the last ``WINDOW`` attempts (bounded memory).
One lock per provider, held only to update or copy the numbers.
"""

import math
import threading
from collections import deque

WINDOW = 1000


class ProviderStats:
    """The figures of one provider since start."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = 0
        self.failures = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self._latency_total = 0.0
        self._latencies = deque(maxlen=WINDOW)

    def record(self, ok, latency_ms, prompt_tokens=0, completion_tokens=0, cost_usd=0.0):
        """Count one attempt."""
        with self._lock:
            self.requests += 1
            if not ok:
                self.failures += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.cost_usd += cost_usd
            self._latency_total += latency_ms
            self._latencies.append(latency_ms)

    def snapshot(self):
        """``requests, failures, success_rate, avg_latency_ms, p95_latency_ms, prompt_tokens,
        completion_tokens, cost_usd``."""
        with self._lock:
            requests, failures = self.requests, self.failures
            latencies = sorted(self._latencies)
            total = self._latency_total
            prompt, completion, cost = self.prompt_tokens, self.completion_tokens, self.cost_usd
        p95 = latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)] if latencies else 0.0  # nearest rank
        return {"requests": requests, "failures": failures,
                "success_rate": round((requests - failures) / requests, 4) if requests else 1.0,
                "avg_latency_ms": round(total / requests, 3) if requests else 0.0,
                "p95_latency_ms": round(p95, 3), "prompt_tokens": prompt, "completion_tokens": completion,
                "cost_usd": round(cost, 8)}
