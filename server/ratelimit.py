"""A sans-IO per-key token bucket: Azure IMDS allows 5 requests per second per VM.

Time is a parameter (``now``, seconds); nothing here reads a clock. A bucket holds
``burst`` tokens, refills at ``rate`` per second, and each allowed request takes one.
"""

from __future__ import annotations


class RateLimiter:
    """Token buckets keyed by caller (VM name); ``allow()`` says whether a request passes."""

    def __init__(self, rate: float = 5.0, burst: float | None = None, *, max_keys: int = 65536) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (use no limiter to disable limiting)")
        self.rate = rate
        self.burst = float(burst if burst is not None else rate)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._max_keys = max_keys

    def allow(self, key: str, now: float) -> bool:
        """Take a token for ``key`` at time ``now``; False means answer 429."""
        tokens, last = self._buckets.get(key, (self.burst, now))
        if now > last:
            tokens = min(self.burst, tokens + (now - last) * self.rate)
        else:
            now = last  # a clock that went back does not refill
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` has a token again (0 if it has one now)."""
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Forget buckets that are full again (they behave as unknown keys)."""
        full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
