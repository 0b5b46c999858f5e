"""Local samplers: X-Ray's default rule, a fixed rate, and local rules files.

Every sampler answers ``decide(host, method, path) -> bool`` and has ``close()``.
A rule samples the first ``fixed_target`` requests of each wall-clock second (its
reservoir), then ``rate`` of the rest; so a rate of ``0`` still samples one request a
second under the default reservoir, which is X-Ray's meaning of the rule.

Randomness comes from the :mod:`random` module's global generator by default, which
Python reseeds in a forked child, so gunicorn workers do not make identical decisions.
"""

from __future__ import annotations

import logging
import random as _random
import time
from collections.abc import Callable
from typing import Protocol

from .matching import RuleMatcher
from .reservoir import Clock, Reservoir
from .rules import DEFAULT_RULES, LocalRule, LocalRules, Target, load_rules_file

log = logging.getLogger(__name__)

__all__ = ["AlwaysSampler", "RateSampler", "RulesSampler", "Sampler", "local_sampler"]

Random = Callable[[], float]


class Sampler(Protocol):
    """Decides whether a new trace is sampled."""

    def decide(self, host: str, method: str, path: str) -> bool:
        """``True``: record this request. Empty arguments match any rule pattern."""
        ...

    def close(self) -> None:
        """Stop any background work (idempotent)."""
        ...


class AlwaysSampler:
    """Samples everything (a rate of 1 with no rules)."""

    __slots__ = ()

    def decide(self, host: str, method: str, path: str) -> bool:
        return True

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "AlwaysSampler()"


class RateSampler:
    """One rule for every request: ``fixed_target`` a second, then ``rate``."""

    __slots__ = ("_limit", "_now", "_random", "_rate", "_second", "_used")

    def __init__(
        self,
        fixed_target: int = 1,
        rate: float = 0.05,
        *,
        now: Clock = time.time,
        random: Random | None = None,
    ) -> None:
        self._limit = fixed_target
        self._rate = rate
        self._now = now
        self._random = random or _random.random
        self._second = -1
        self._used = 0

    def decide(self, host: str = "", method: str = "", path: str = "") -> bool:
        # The reservoir is inlined (see reservoir.Reservoir): this runs on every request.
        second = int(self._now())
        if second != self._second:
            self._second = second
            self._used = 0
        if self._used < self._limit:
            self._used += 1
            return True
        return self._random() < self._rate

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"RateSampler(fixed_target={self._limit}, rate={self._rate})"


class RulesSampler:
    """Local rules: the first matching rule decides, else the default rule."""

    __slots__ = ("_default", "_first", "_random", "_rules", "_targets")

    def __init__(self, rules: LocalRules, *, now: Clock = time.time, random: Random | None = None) -> None:
        self._random = random or _random.random
        self._rules = rules.rules
        self._first = RuleMatcher([(r.host, r.http_method, r.url_path) for r in rules.rules]).first
        self._targets = tuple(
            (Reservoir(rule.target.fixed_target, now).take, rule.target.rate) for rule in rules.rules
        )
        self._default = RateSampler(rules.default.fixed_target, rules.default.rate, now=now, random=random)

    @property
    def rules(self) -> tuple[LocalRule, ...]:
        return self._rules

    def decide(self, host: str, method: str, path: str) -> bool:
        index = self._first(host, method, path)
        if index < 0:
            return self._default.decide(host, method, path)
        take, rate = self._targets[index]
        return take() or self._random() < rate

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"RulesSampler({len(self._rules)} rules, default={self._default!r})"


def local_sampler(
    rules_path: str | None, rate: float | None, *, now: Clock = time.time, random: Random | None = None
) -> Sampler:
    """The sampler for local settings: a rules file, a rate, or X-Ray's default rule.

    With both a rules file and a rate, the rate replaces the file's default ``rate``.
    A rules file that has become unreadable since configure time is logged and
    replaced by the default rule (tracing never breaks the app).
    """
    rules = DEFAULT_RULES
    if rules_path is not None:
        try:
            rules = load_rules_file(rules_path)
        except ValueError as exc:
            log.error("k8sxray: sampling rules ignored, using X-Ray's default rule: %s", exc)
    if rate is not None:
        rules = LocalRules(rules.rules, Target(rules.default.fixed_target, rate), rules.version)
    if not rules.rules:
        if rules.default.rate >= 1.0:
            return AlwaysSampler()
        return RateSampler(rules.default.fixed_target, rules.default.rate, now=now, random=random)
    return RulesSampler(rules, now=now, random=random)
