"""Centralized sampling: X-Ray's rules and quotas, polled through the daemon's TCP port.

As the official SDKs do it: rules come from ``POST /GetSamplingRules`` (every 300 s;
10 s after a failure), statistics go to ``POST /SamplingTargets``
(every 10 s, or the ``Interval`` X-Ray gives a rule) and bring back each rule's
``ReservoirQuota``/``ReservoirQuotaTTL``/``FixedRate``. A rule without a fresh quota
borrows one request a second. Rules apply by ``Priority`` then ``RuleName``; the rule
named ``Default`` applies last. Until rules arrive, or once they are more than an hour
old, the local sampler decides (the failure is logged once, not per poll).

The poller is one daemon thread started by the first :meth:`CentralSampler.decide`,
restarted in a forked child (with a new ClientID and no inherited quota) and stopped
by :meth:`CentralSampler.close`. Request counters are plain ints updated without a
lock: under heavy concurrency a count may be lost now and then (statistics are
approximate); decisions are never blocked.
"""

from __future__ import annotations

import logging
import os
import random as _random
import threading
import time
from collections.abc import Callable, Iterable

from .. import _forks
from . import api
from .central_rules import CentralRule, RuleSet, build_rule_set, usable_by
from .reservoir import Clock, QuotaReservoir, Take
from .sampler import Random, Sampler

log = logging.getLogger(__name__)

__all__ = ["CentralRule", "CentralSampler"]  # CentralRule re-exported for callers inspecting .rules

RULES_INTERVAL = 300.0
TARGETS_INTERVAL = 10.0
CACHE_TTL = 3600.0
TIMEOUT = 2.0


class CentralSampler:
    """Decides with X-Ray's centralized rules; ``fallback`` decides until they arrive."""

    def __init__(
        self,
        fallback: Sampler,
        *,
        address: Callable[[], api.Address],
        service_name: str,
        origin: Callable[[], str | None] = lambda: None,
        resource_arn: str | None = None,
        rules_interval: float = RULES_INTERVAL,
        targets_interval: float = TARGETS_INTERVAL,
        cache_ttl: float = CACHE_TTL,
        timeout: float = TIMEOUT,
        now: Clock = time.time,
        random: Random | None = None,
        poller: bool = True,
    ) -> None:
        """``poller=False`` never starts the thread: call :meth:`refresh_rules` and
        :meth:`report_targets` yourself (tests drive them with an injected clock)."""
        self._fallback = fallback
        self._address = address
        self._service_name = service_name
        self._origin_lookup = origin
        self._origin: str | None = None
        self._origin_known = False
        self._resource_arn = resource_arn or ""
        self.rules_interval = rules_interval
        self.targets_interval = targets_interval
        self._cache_ttl = cache_ttl
        self._timeout = timeout
        self._now = now
        self._random = random or _random.random
        self._state: RuleSet | None = None
        self._rules_fetched_at = 0.0
        self._failing = False
        self._closed = False
        self._poller = poller
        self._started = not poller
        self._thread: threading.Thread | None = None
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.client_id = os.urandom(12).hex()

    @property
    def fallback(self) -> Sampler:
        return self._fallback

    @property
    def rules(self) -> tuple[CentralRule, ...]:
        """The rules in use, in matching order, ``Default`` last (empty: falling back)."""
        state = self._state
        if state is None:
            return ()
        return (*state.rules, *((state.default,) if state.default else ()))

    # --- the request path -------------------------------------------------------------

    def decide(self, host: str, method: str, path: str) -> bool:
        if not self._started:
            self._start()
        state = self._state
        if state is None:
            return self._fallback.decide(host, method, path)
        index = state.first(host, method, path)
        rule = state.rules[index] if index >= 0 else state.default
        if rule is None:
            return self._fallback.decide(host, method, path)
        rule.requests += 1
        taken = rule.reservoir.take()
        if taken:
            rule.sampled += 1
            if taken == Take.BORROWED:
                rule.borrowed += 1
            return True
        if self._random() < rule.rate:
            rule.sampled += 1
            return True
        return False

    # --- the poller ---------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            if self._closed:
                return
            _forks.track(self)
            thread = threading.Thread(
                target=self._run, args=(self._stop, self._wake), name="k8sxray-sampling", daemon=True
            )
            try:
                thread.start()
            except RuntimeError as exc:  # interpreter shutting down
                log.warning("k8sxray: centralized sampling poller not started: %s", exc)
                return
            self._thread = thread

    def _run(self, stop: threading.Event, wake: threading.Event) -> None:
        clock = time.monotonic
        next_rules = clock()
        next_targets = clock() + self.targets_interval
        while not stop.is_set():
            if wake.is_set():
                wake.clear()
                next_rules = clock()
            if clock() >= next_rules:
                ok = self._guarded(self.refresh_rules)
                wait = self.rules_interval if ok else self.targets_interval  # retry failures sooner
                next_rules = clock() + wait + _random.random() * min(5.0, wait / 10)
            if clock() >= next_targets:
                self._guarded(self.report_targets)
                next_targets = (
                    clock() + self.targets_interval + _random.random() * self.targets_interval / 100
                )
            wake.wait(max(0.0, min(next_rules, next_targets) - clock()))

    def _guarded(self, work: Callable[[], bool]) -> bool:
        """Run one poll; log the first failure and the recovery, nothing in between."""
        try:
            contacted = work()
        except api.SamplingAPIError as exc:
            self._problem(str(exc))
            return False
        except Exception as exc:  # a bug here must not kill the poller
            log.debug("k8sxray: centralized sampling poll failed", exc_info=True)
            self._problem(f"{type(exc).__name__}: {exc}")
            return False
        if contacted and self._failing:
            self._failing = False
            log.info("k8sxray: centralized sampling reached the daemon again")
        return True

    def _problem(self, reason: str) -> None:
        if not self._failing:
            self._failing = True
            using = "cached X-Ray rules" if self._state is not None else "local sampling"
            log.warning("k8sxray: centralized sampling unavailable (%s); using %s", reason, using)

    def refresh_rules(self) -> bool:
        """Fetch the rules now and install the ones that apply to this service."""
        now = self._now()
        self._expire(now)
        definitions = api.get_sampling_rules(self._address(), self._timeout)
        if not self._origin_known:
            self._origin, self._origin_known = self._origin_lookup(), True
        self.install(definitions, now)
        return True

    def install(self, definitions: Iterable[api.RuleDefinition], now: float | None = None) -> None:
        """Install rule definitions (keeping the quota and counts of rules already known)."""
        now = self._now() if now is None else now
        usable = [
            d for d in definitions if usable_by(self._service_name, self._origin or "", self._resource_arn)(d)
        ]
        self._rules_fetched_at = now
        if not usable:
            return  # nothing usable: keep what we have (or keep falling back)
        self._state = build_rule_set(usable, self._state, self._now, now)

    def _expire(self, now: float) -> None:
        state = self._state
        if state is not None and now - state.loaded_at > self._cache_ttl:
            self._state = None
            log.warning("k8sxray: centralized sampling rules are over an hour old; using local sampling")

    def report_targets(self) -> bool:
        """Report the statistics of rules that are due and apply the targets X-Ray answers.

        Returns whether the daemon was called (nothing is sent when nothing is due).
        """
        now = self._now()
        self._expire(now)
        state = self._state
        if state is None:
            return False
        due = [r for r in state.by_name.values() if r.requests > 0 and now >= r.next_report]
        if not due:
            return False
        counts = [rule.snapshot() for rule in due]
        documents = [
            {
                "RuleName": rule.name,
                "ClientID": self.client_id,
                "Timestamp": int(now),
                "RequestCount": c[0],
                "SampledCount": c[1],
                "BorrowCount": c[2],
            }
            for rule, c in zip(due, counts, strict=True)
        ]
        try:
            targets, modified = api.get_sampling_targets(self._address(), documents, self._timeout)
        except Exception:
            for rule, c in zip(due, counts, strict=True):
                rule.give_back(c)
            raise
        for target in targets:
            rule = state.by_name.get(target.rule_name)
            if rule is None:
                continue
            rule.reservoir.load(target.reservoir_quota, target.reservoir_quota_ttl)
            if target.fixed_rate is not None:
                rule.rate = target.fixed_rate
            if target.interval is not None:
                rule.interval = float(target.interval)
        for rule in due:
            rule.next_report = now + rule.interval if rule.interval else 0.0
        if modified is not None and modified > self._rules_fetched_at:
            log.debug("k8sxray: sampling rules changed at X-Ray; fetching them now")
            self._wake.set()
        return True

    # --- lifecycle ----------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        self._reset_process_state()
        self._thread = None
        self._started = self._closed or not self._poller  # a closed sampler stays closed
        self._failing = False
        state = self._state
        if state is not None:  # the parent's quota and counts belong to the parent's ClientID
            for rule in state.by_name.values():
                rule.snapshot()
                rule.reservoir = QuotaReservoir(rule.reservoir.can_borrow, self._now)

    def close(self) -> None:
        """Stop the poller (idempotent); decisions go on with the last rules."""
        with self._lock:
            self._closed = True
            self._started = True
            thread, self._thread = self._thread, None
            self._stop.set()
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)  # it is a daemon thread: never hold up the caller for long

    def __repr__(self) -> str:
        state = "falling back" if self._state is None else f"{len(self.rules)} rules"
        return f"CentralSampler({state}, fallback={self._fallback!r})"
