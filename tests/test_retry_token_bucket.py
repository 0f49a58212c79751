"""Specs of the shared retry token bucket on an injected clock."""

from __future__ import annotations

import threading

import pytest

from perfkit.errors import ConfigError
from perfkit.retry import RetryTokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_grants_capacity_tokens_then_refuses() -> None:
    bucket = RetryTokenBucket(capacity=3, refill_per_s=1, clock=FakeClock())
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert (bucket.granted, bucket.denied) == (3, 1)


def test_tokens_refill_with_time_up_to_capacity() -> None:
    clock = FakeClock()
    bucket = RetryTokenBucket(capacity=2, refill_per_s=4, clock=clock, initial=0)
    clock.now += 0.25
    assert bucket.tokens() == pytest.approx(1.0)
    clock.now += 10
    assert bucket.tokens() == pytest.approx(2.0)


def test_reserve_on_credit_queues_waiters_at_the_refill_rate() -> None:
    bucket = RetryTokenBucket(capacity=1, refill_per_s=2, clock=FakeClock(), initial=1)
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0.0, 0.5, 1.0])


def test_concurrent_clients_never_get_more_tokens_than_there_are() -> None:
    bucket = RetryTokenBucket(capacity=500, refill_per_s=1e-9, clock=FakeClock())
    granted: list[bool] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(100):
            ok = bucket.try_acquire()
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 500 and len(granted) == 1600


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"capacity": 0, "refill_per_s": 1}, "capacity"),
        ({"capacity": 1, "refill_per_s": -1}, "refill_per_s"),
        ({"capacity": 1, "refill_per_s": 1, "on_empty": "block"}, "on_empty"),
        ({"capacity": 1, "refill_per_s": 1, "initial": 5}, "initial"),
    ],
)
def test_bad_token_bucket_settings_are_config_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        RetryTokenBucket(**kwargs)


def test_a_reservation_counts_when_the_token_is_used_not_when_asked() -> None:
    clock = FakeClock()
    bucket = RetryTokenBucket(capacity=1, refill_per_s=1, clock=clock)
    assert bucket.reserve(at=clock.now + 5.0) == 0.0  # planned in 5 s: free then
    assert bucket.reserve(at=clock.now + 5.0) == pytest.approx(1.0)  # one per second after
    assert bucket.reserve(at=clock.now + 1.0) == pytest.approx(6.0)  # queued behind them
