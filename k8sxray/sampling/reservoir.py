"""Per-second reservoirs: how many requests a rule samples each second before its rate.

Both reservoirs count requests within one wall-clock second (``int(now())``) and are
lock-free on purpose: they run on every request. Under the GIL the worst a race can do
is let a thread or two through at a second boundary (a reservoir of 1 may sample 2 in
that second) or lose a count; that is the accepted approximation. Clocks are injectable
(``now``: seconds since the epoch as a float) so tests never sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "QuotaReservoir", "Reservoir", "Take"]

Clock = Callable[[], float]


class Reservoir:
    """Lets ``limit`` requests through per wall-clock second (the local ``fixed_target``)."""

    __slots__ = ("_limit", "_now", "_second", "_used")

    def __init__(self, limit: int, now: Clock = time.time) -> None:
        self._limit = limit
        self._now = now
        self._second = -1
        self._used = 0

    @property
    def limit(self) -> int:
        return self._limit

    def take(self) -> bool:
        """Take one place in this second's reservoir; ``False`` when it is used up."""
        second = int(self._now())
        if second != self._second:
            self._second = second
            self._used = 0
        if self._used < self._limit:
            self._used += 1
            return True
        return False


class Take:
    """What a :class:`QuotaReservoir` decided (plain ints: cheap to compare)."""

    NO = 0
    TAKEN = 1
    BORROWED = 2


class QuotaReservoir:
    """A centralized rule's reservoir: X-Ray's quota while it is fresh, else borrow 1 a second.

    X-Ray assigns each client a ``ReservoirQuota`` (requests a second) valid until
    ``ReservoirQuotaTTL``. Without a fresh quota, a rule whose ``ReservoirSize`` is not
    zero may borrow one request a second, as the official SDKs do.
    """

    __slots__ = ("_borrowed", "_now", "_quota", "_second", "_taken", "_ttl", "can_borrow")

    def __init__(self, can_borrow: bool, now: Clock = time.time) -> None:
        self.can_borrow = can_borrow
        self._now = now
        self._quota: int | None = None
        self._ttl = 0.0
        self._second = -1
        self._taken = 0
        self._borrowed = 0

    @property
    def quota(self) -> int | None:
        return self._quota

    @property
    def ttl(self) -> float:
        return self._ttl

    def load(self, quota: int | None, ttl: float | None) -> None:
        """Install a quota from a SamplingTargets answer; ``None`` keeps the current value."""
        if quota is not None:
            self._quota = quota
        if ttl is not None:
            self._ttl = ttl

    def take(self) -> int:
        """Return :attr:`Take.TAKEN`, :attr:`Take.BORROWED` or :attr:`Take.NO`."""
        now = self._now()
        second = int(now)
        if second != self._second:
            self._second = second
            self._taken = 0
            self._borrowed = 0
        quota = self._quota
        if quota is not None and now <= self._ttl:
            if self._taken < quota:
                self._taken += 1
                return Take.TAKEN
            return Take.NO
        if self.can_borrow and self._borrowed < 1:
            self._borrowed += 1
            return Take.BORROWED
        return Take.NO
