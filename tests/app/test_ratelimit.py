"""Token buckets: the burst, the refill rate and Retry-After, on an injected clock."""

from app.ratelimit import MAX_TRACKED, TokenBuckets, retry_after


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate():
    clock = Clock()
    buckets = TokenBuckets(per_minute=6, burst=2, clock=clock)  # a token every 10 s
    for _ in range(2):
        assert buckets.wait("a") == 0
        buckets.take("a")
    assert buckets.wait("a") == 10.0 and buckets.wait("b") == 0  # buckets are per name
    clock.now += 4
    assert abs(buckets.wait("a") - 6.0) < 1e-9 and retry_after(buckets.wait("a")) == "6"
    clock.now += 6
    assert buckets.wait("a") == 0
    buckets.take("a")
    clock.now += 1000  # refills no further than the burst
    for _ in range(2):
        buckets.take("a")
    assert buckets.wait("a") > 0


def test_zero_rate_means_no_limit_and_memory_is_bounded():
    unlimited = TokenBuckets(per_minute=0, burst=1)
    for _ in range(100):
        unlimited.take("a")
    assert unlimited.wait("a") == 0
    clock = Clock()
    buckets = TokenBuckets(per_minute=1, burst=1, clock=clock)
    for number in range(MAX_TRACKED + 50):
        buckets.take(f"ip{number}")
    assert len(buckets._buckets) == MAX_TRACKED
    assert buckets.wait(f"ip{MAX_TRACKED + 49}") > 0 and buckets.wait("ip0") == 0  # the oldest went first
    assert retry_after(0.01) == "1"
