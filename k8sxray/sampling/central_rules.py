"""Centralized rules as the request path sees them: each rule's live state, and the ordered set.

A :class:`RuleSet` is immutable once built; the poller swaps in a new one, so a request reads a
consistent set without a lock. A rule's counters and reservoir are updated lock-free (see
:mod:`k8sxray.sampling.reservoir` for what that approximates).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .api import RuleDefinition
from .matching import RuleMatcher, compile_wildcard
from .reservoir import Clock, QuotaReservoir

__all__ = ["DEFAULT_RULE_NAME", "CentralRule", "RuleSet", "build_rule_set", "usable_by"]

DEFAULT_RULE_NAME = "Default"
"""X-Ray's reserved name of the catch-all rule, applied after every other rule."""


class CentralRule:
    """A rule's live state: its rate, reservoir and the counts to report."""

    __slots__ = (
        "borrowed",
        "definition",
        "interval",
        "name",
        "next_report",
        "rate",
        "requests",
        "reservoir",
        "sampled",
    )

    def __init__(self, definition: RuleDefinition, now: Clock) -> None:
        self.definition = definition
        self.name = definition.name
        self.rate = definition.fixed_rate
        self.reservoir = QuotaReservoir(definition.reservoir_size > 0, now)
        self.requests = 0
        self.sampled = 0
        self.borrowed = 0
        self.interval: float | None = None
        self.next_report = 0.0

    def adopt(self, old: CentralRule) -> None:
        """Keep the quota and counts of the same rule from the previous poll.

        X-Ray's last ``FixedRate`` target is kept too unless the rule itself changed.
        """
        if old.definition == self.definition:
            self.rate = old.rate
        old.reservoir.can_borrow = self.reservoir.can_borrow
        self.reservoir = old.reservoir
        self.requests, self.sampled, self.borrowed = old.requests, old.sampled, old.borrowed
        self.interval, self.next_report = old.interval, old.next_report

    def snapshot(self) -> tuple[int, int, int]:
        """Take and reset (requests, sampled, borrowed)."""
        counts = (self.requests, self.sampled, self.borrowed)
        self.requests = self.sampled = self.borrowed = 0
        return counts

    def give_back(self, counts: tuple[int, int, int]) -> None:
        self.requests += counts[0]
        self.sampled += counts[1]
        self.borrowed += counts[2]


class RuleSet:
    """Rules in matching order (priority, then name) and the ``Default`` rule."""

    __slots__ = ("by_name", "default", "first", "loaded_at", "rules")

    def __init__(self, rules: Sequence[CentralRule], default: CentralRule | None, loaded_at: float) -> None:
        self.rules = tuple(rules)
        self.default = default
        self.loaded_at = loaded_at
        patterns = [(r.definition.host, r.definition.http_method, r.definition.url_path) for r in rules]
        self.first = RuleMatcher(patterns).first
        self.by_name = {r.name: r for r in (*rules, *((default,) if default else ()))}


def usable_by(service_name: str, origin: str, resource_arn: str) -> Callable[[RuleDefinition], bool]:
    """Rules this service may use: version 1, no attributes, matching name, type and ARN.

    An unknown origin or ARN is the empty string: only ``*`` matches it.
    """

    def usable(rule: RuleDefinition) -> bool:
        return (
            rule.version == 1
            and not rule.attributes
            and compile_wildcard(rule.service_name)(service_name)
            and compile_wildcard(rule.service_type)(origin)
            and compile_wildcard(rule.resource_arn)(resource_arn)
        )

    return usable


def build_rule_set(
    definitions: Sequence[RuleDefinition], previous: RuleSet | None, now: Clock, loaded_at: float
) -> RuleSet:
    """Order the rules, carrying over each known rule's quota and counts from *previous*."""
    old = previous.by_name if previous is not None else {}
    rules = [CentralRule(d, now) for d in definitions]
    for rule in rules:
        if rule.name in old:
            rule.adopt(old[rule.name])
    default = next((r for r in rules if r.name == DEFAULT_RULE_NAME), None)
    ordered = sorted((r for r in rules if r is not default), key=lambda r: (r.definition.priority, r.name))
    return RuleSet(ordered, default, loaded_at)
