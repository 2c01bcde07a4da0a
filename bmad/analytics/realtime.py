"""Real-time figures kept in memory: sliding windows over fixed time buckets.

Each window is a ring of buckets keyed by ``int(ts // bucket_seconds)``; a
bucket from a lap ago is reset when reused, so memory stays fixed whatever
the traffic. These structures take no lock: the recorder that owns them
does. Times come from the caller (the injected clock), never from here.
"""

import random
from array import array
from collections import OrderedDict

RESPONSE_SAMPLES_PER_BUCKET = 1000
MAX_ACTIVE_USERS = 100_000
MAX_RUNNING_WORKFLOWS = 10_000
RUN_FORGET_SECONDS = 86400.0


class Window:
    """Sums of ``width`` values over the last ``span`` seconds, at ``bucket`` seconds' resolution."""

    def __init__(self, span, bucket, width=1):
        self.bucket = bucket
        self.size = int(round(span / bucket))
        self.width = width
        self._epochs = [None] * self.size
        self._values = [[0] * width for _ in range(self.size)]

    def _slot(self, ts):
        epoch = int(ts // self.bucket)
        i = epoch % self.size
        if self._epochs[i] != epoch:
            self._reset(i, epoch)
        return i

    def _reset(self, i, epoch):
        self._epochs[i] = epoch
        self._values[i] = [0] * self.width

    def add(self, ts, *values):
        """Add ``values`` at time ``ts``."""
        bucket = self._values[self._slot(ts)]
        for j, value in enumerate(values):
            bucket[j] += value

    def live_slots(self, now):
        """Indexes of the buckets inside the window ending at ``now``."""
        current = int(now // self.bucket)
        oldest = current - self.size
        return [i for i, epoch in enumerate(self._epochs) if epoch is not None and oldest < epoch <= current]

    def totals(self, now):
        """The per-value sums over the window ending at ``now``."""
        sums = [0] * self.width
        for i in self.live_slots(now):
            for j, value in enumerate(self._values[i]):
                sums[j] += value
        return sums


class SampledWindow(Window):
    """A Window that also keeps up to ``samples`` observations per bucket (reservoir-sampled) for percentiles.

    Samples are numbers kept in flat ``array('d')`` buffers: 8 bytes each, no Python object per sample.
    """

    def __init__(self, span, bucket, width=1, samples=RESPONSE_SAMPLES_PER_BUCKET, rng=None):
        super().__init__(span, bucket, width)
        self.samples = samples
        self._seen = [0] * self.size
        self._kept = [array("d") for _ in range(self.size)]
        self._rng = rng or random.Random(0)

    def _reset(self, i, epoch):
        super()._reset(i, epoch)
        self._seen[i] = 0
        self._kept[i] = array("d")

    def observe(self, ts, sample, *values):
        """Keep ``sample`` for percentile estimates at time ``ts``, and add ``values`` to the sums."""
        i = self._slot(ts)
        bucket = self._values[i]
        for j, value in enumerate(values):
            bucket[j] += value
        self._seen[i] += 1
        kept = self._kept[i]
        if len(kept) < self.samples:
            kept.append(sample)
        else:
            j = self._rng.randrange(self._seen[i])
            if j < self.samples:
                kept[j] = sample

    def percentile(self, now, fraction):
        """The nearest-rank percentile of the kept samples in the window, or None without samples."""
        values = []
        for i in self.live_slots(now):
            values.extend(self._kept[i])
        if not values:
            return None
        values.sort()
        rank = max(1, -(-int(fraction * 1000) * len(values) // 1000))
        return values[min(rank, len(values)) - 1]


class RealTime:
    """The live figures: requests per minute, active users, running workflows, errors, latency, spend."""

    def __init__(self):
        self.requests = Window(60, 1)
        self.responses = SampledWindow(300, 5, width=3)  # requests, errors, latency sum
        self.spend = Window(3600, 60, width=3)  # prompt tokens, completion tokens, cost
        self.active_users = OrderedDict()
        self.running = OrderedDict()

    def api_request(self, ts, user, error, latency_ms):
        """Count one answered request."""
        self.requests.add(ts, 1)
        if latency_ms is None:
            self.responses.add(ts, 1, error, 0.0)
        else:
            self.responses.observe(ts, latency_ms, 1, error, latency_ms)

    def user_seen(self, ts, user):
        """Note ``user`` as active at ``ts``."""
        _touch(self.active_users, user, ts, MAX_ACTIVE_USERS)

    def workflow_started(self, ts, run_id):
        """Count ``run_id`` as running from ``ts`` (forgotten after a day without an end)."""
        _touch(self.running, run_id, ts, MAX_RUNNING_WORKFLOWS)

    def workflow_ended(self, run_id):
        """``run_id`` completed or failed."""
        self.running.pop(run_id, None)

    def llm_spend(self, ts, prompt_tokens, completion_tokens, cost_usd):
        """Add one upstream call's tokens and cost at ``ts``."""
        self.spend.add(ts, prompt_tokens or 0, completion_tokens or 0, cost_usd or 0.0)

    def snapshot(self, now):
        """The real-time metrics at ``now``, as the API shows them."""
        users = self.active_users
        while users:
            user, seen = next(iter(users.items()))
            if seen > now - 300:
                break
            users.popitem(last=False)
        runs = self.running
        while runs:
            run_id, started = next(iter(runs.items()))
            if started > now - RUN_FORGET_SECONDS:
                break
            runs.popitem(last=False)
        requests, errors, latency_sum = self.responses.totals(now)
        p95 = self.responses.percentile(now, 0.95)
        prompt, completion, cost = self.spend.totals(now)
        return {
            "requests_last_minute": self.requests.totals(now)[0],
            "active_users_5m": len(users),
            "workflows_running": len(runs),
            "requests_5m": requests,
            "errors_5m": errors,
            "error_rate_5m": round(errors / requests, 4) if requests else 0.0,
            "avg_response_time_ms_5m": round(latency_sum / requests, 3) if requests else 0.0,
            "p95_response_time_ms_5m": round(p95, 3) if p95 is not None else 0.0,
            "tokens_last_hour": {"prompt": prompt, "completion": completion, "total": prompt + completion},
            "cost_usd_last_hour": round(cost, 6),
        }


def _touch(table, key, ts, limit):
    """Note ``key`` at ``ts`` in an ordered ``table`` of at most ``limit`` entries (the oldest go first)."""
    table[key] = ts
    table.move_to_end(key)
    if len(table) > limit:
        table.popitem(last=False)
