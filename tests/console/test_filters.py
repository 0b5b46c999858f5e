"""X-Ray's filter expressions on the recorded traces: each keyword against AWS's documented meaning."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8sxray.console.filters import FilterError, compile_filter, matches, required_services, tokenize
from k8sxray.console.trace import trace_facts

from . import _traces

NAMES = {
    _traces.CHECKOUT_ID: "checkout",  # A (EKS) -> B (EKS, 500) -> DynamoDB orders; annotations
    _traces.THROTTLED_ID: "throttled",  # A -> api.payments.example, 429 passed on
    _traces.WEATHER_ID: "weather",  # A -> api.weather.example, all 200
    _traces.ORPHAN_ID: "orphan",  # B alone, its caller missing
    _traces.SQS_ID: "sqs",  # C (no origin) -> SQS queue jobs, faults
}
# As the store keeps them: through JSON.
FACTS = {NAMES[tid]: json.loads(json.dumps(trace_facts(make()))) for tid, make in _traces.ALL.items()}


def selected(expression: str) -> set[str]:
    compiled = compile_filter(expression)
    return {name for name, facts in FACTS.items() if compiled.matches(facts)}


CASES = [
    # boolean keywords: the entry segment's status (throttle: any segment)
    ("ok", {"weather", "orphan"}),
    ("!ok", {"checkout", "throttled", "sqs"}),
    ("error", {"throttled"}),
    ("error = true", {"throttled"}),
    ("error = false", {"checkout", "weather", "orphan", "sqs"}),
    ("error != true", {"checkout", "weather", "orphan", "sqs"}),
    ("ERROR = TRUE", {"throttled"}),
    ("throttle", {"throttled"}),
    ("fault", {"checkout", "sqs"}),
    ("!fault", {"throttled", "weather", "orphan"}),
    ("partial", {"orphan"}),
    ("partial = false", {"checkout", "throttled", "weather", "sqs"}),
    ("inferred", {"checkout", "throttled", "weather", "sqs"}),
    # number keywords
    ("responsetime > 0.2", {"checkout", "weather"}),
    ("responsetime <= 0.08", {"throttled", "orphan"}),
    ("duration >= 0.1 AND duration < 0.26", {"checkout", "sqs"}),
    ("duration = 0.25", {"checkout"}),
    ("duration != 0.25", {"throttled", "weather", "orphan", "sqs"}),
    ("http.status = 429", {"throttled"}),
    ("http.status >= 500", {"checkout", "sqs"}),
    ("http.status < 300", {"weather", "orphan"}),
    # string keywords
    ('http.url = "http://shop.example/pay"', {"throttled"}),
    ('http.url CONTAINS "shop.example"', {"checkout", "throttled", "weather"}),
    ('http.url BEGINSWITH "http://service-"', {"orphan", "sqs"}),
    ('http.url ENDSWITH "?cart=42"', {"checkout"}),
    ('http.url != "http://shop.example/pay"', {"checkout", "weather", "orphan", "sqs"}),
    ('http.url contains "SHOP"', set()),  # values are compared exactly
    ('http.method = "POST"', {"checkout", "sqs"}),
    ('http.useragent BEGINSWITH "curl/"', {"checkout"}),
    ('http.clientip = "10.0.0.9"', {"weather"}),
    ('user = "alice"', {"checkout"}),
    ('user != "alice"', {"weather"}),  # needs a user
    ('!(user = "alice")', {"throttled", "weather", "orphan", "sqs"}),
    ('name = "Service-B"', {"checkout", "orphan"}),
    ('name = "KeyError"', {"checkout"}),  # an exception's name
    ('type = "AWS::SQS::Queue"', {"sqs"}),
    ('type = "remote"', {"throttled", "weather"}),
    ('message CONTAINS "sku"', {"checkout"}),
    ('availabilityzone = "eu-west-1a"', {"weather"}),
    ('instance.id BEGINSWITH "i-0b"', {"checkout"}),
    ('resource.arn ENDSWITH ":cluster/shop"', {"checkout"}),
    # annotations: presence, and each value type with its operators
    ("annotation.customer_tier", {"checkout", "throttled"}),
    ("!annotation.customer_tier", {"weather", "orphan", "sqs"}),
    ('annotation.customer_tier = "gold"', {"checkout"}),
    ('annotation.customer_tier != "gold"', {"throttled"}),
    ('annotation.customer_tier BEGINSWITH "s"', {"throttled"}),
    ("annotation.cart_items = 3", {"checkout"}),
    ("annotation.cart_items > 3", set()),
    ("annotation.cart_items = 3.0", {"checkout"}),
    ('annotation.cart_items = "3"', set()),  # a number is no string
    ("annotation.express = true", {"checkout"}),
    ("annotation.retry = false", {"checkout"}),
    ("annotation.retry = true", set()),
    ("annotation.order_value >= 99.5", {"checkout"}),  # recorded on a subsegment
    ("annotation[express]", {"checkout"}),
    ('annotation["customer_tier"] = "silver"', {"throttled"}),
    # service(): any node of the service; the inner filter on one node
    ('service("Service-B")', {"checkout", "orphan"}),
    ('!service("Service-B")', {"throttled", "weather", "sqs"}),
    ('service("Service-B") { fault }', {"checkout"}),
    (
        'service("Service-B") { fault = true OR responsetime > 2.5 } AND annotation.cart_items = 3',
        {"checkout"},
    ),
    ('service("Service-A") { ok }', {"weather"}),
    ('service("Service-A") { root }', {"checkout", "throttled", "weather"}),
    ('service("Service-B") { root }', {"orphan"}),
    ('service("Service-B") { annotation.retry = false }', {"checkout"}),
    ('service("Service-A") { annotation.retry = false }', set()),
    ('service("Service-B") { http.status = 500 AND http.clientip = "10.0.0.8" }', {"checkout"}),
    ('service("Service-A") { user = "bob" }', {"weather"}),
    ('service("Service-B") { message = "\'sku\'" }', {"checkout"}),
    ('service("Service-B") { availabilityzone = "eu-west-1b" }', {"checkout"}),
    ('service("orders") { inferred AND ok AND type = "AWS::DynamoDB::Table" }', {"checkout"}),
    ('service("api.payments.example") { throttle }', {"throttled"}),
    ('service("api.payments.example") { http.url CONTAINS "/charge" }', {"throttled"}),
    ("service() { fault AND inferred }", {"sqs"}),
    ("service() { throttle }", {"throttled"}),
    ("service() { responsetime > 0.25 }", {"weather"}),
    ('service(id(name: "Service-B", type: "AWS::EKS::Container")) { fault }', {"checkout"}),
    ('service(id(type: "AWS::SQS::Queue"))', {"sqs"}),
    ('service(id(name: "Service-B", type: "AWS::EC2::Instance"))', set()),
    # edge(): one call, from the caller's side
    ('edge("Service-A", "Service-B")', {"checkout"}),
    ('edge("Service-A", "Service-B") { fault }', {"checkout"}),
    ('edge("Service-A", "Service-B") { responsetime > 0.225 }', {"checkout"}),  # the caller waited 230 ms
    ('edge("Service-B", "orders") { ok }', {"checkout"}),
    ('edge("Service-A", "api.payments.example") { error AND throttle }', {"throttled"}),
    ('edge("Service-A", "Service-A")', set()),  # the client edge is not A -> A
    ('edge(id(name: "Service-A", type: "client"), "Service-A")', {"checkout", "throttled", "weather"}),
    ('edge("Service-C", id(name: "jobs", type: "AWS::SQS::Queue")) { fault }', {"sqs"}),
    # root causes
    ('rootcause.fault.service { name = "Service-B" }', {"checkout"}),
    ('rootcause.fault.service { inferred AND type = "AWS::SQS::Queue" }', {"sqs"}),
    ('rootcause.fault.entity { name = "save" AND last }', {"checkout"}),
    ('rootcause.fault.entity { name = "save" AND index = 2 }', {"checkout"}),
    ('rootcause.fault.entity { name = "save" AND first }', set()),
    ("rootcause.fault.entity { remote }", {"sqs"}),
    ('rootcause.fault.exception { name = "KeyError" }', {"checkout"}),
    ('rootcause.fault.exception { message = "slow down" }', {"sqs"}),
    ('rootcause.error.service { name = "api.payments.example" }', {"throttled"}),
    ("rootcause.error.service", {"throttled"}),
    # AND / OR / ! / parentheses / juxtaposition
    ("ok !partial duration < 0.31", {"weather"}),
    ("ok AND !partial", {"weather"}),
    ("fault OR error", {"checkout", "throttled", "sqs"}),
    ("fault or error and partial", {"checkout", "sqs"}),  # AND binds tighter
    ("(fault OR error) AND !inferred", set()),
    ("!(fault OR error)", {"weather", "orphan"}),
    ("!!fault", {"checkout", "sqs"}),
    ("", set(NAMES.values())),
    ("   ", set(NAMES.values())),
]


@pytest.mark.parametrize(("expression", "expected"), CASES)
def test_keyword_meaning(expression: str, expected: set[str]) -> None:
    assert selected(expression) == expected


ERRORS = [
    ("foo", "unknown keyword 'foo'", 0),
    ("ok AND foo.bar = 1", "unknown keyword 'foo.bar'", 7),
    ('responsetime > "slow"', "compared with = != < <= > >= and a number", 15),
    ("http.url > 3", "CONTAINS BEGINSWITH ENDSWITH and a quoted string", 11),
    ('http.status CONTAINS "5"', "and a number", 21),
    ("http.url", "needs an operator", 0),
    ("fault > 1", "is a boolean", 0),
    ('fault = "yes"', "is a boolean", 0),
    ("annotation.x CONTAINS 3", "number annotation", 22),
    ('annotation.x < "a"', "string annotation", 15),
    ("annotation.x > true", "boolean annotation", 15),
    ("annotation[]", "expected an annotation key", 11),
    ('service("A") { partial }', "'partial' is not available in service()", 15),
    ('edge("a", "b") { http.url = "x" }', "not available in edge()", 17),
    ('edge("a", "b") { annotation.k }', "annotation.k is not available inside edge()", 17),
    ("root", "'root' is not available in a trace", 0),
    ("remote", "'remote' is not available in a trace", 0),
    ('service("a") { service("b") }', "service() cannot be used inside service()", 15),
    ('group.name = "prod"', "X-Ray groups live in AWS", 0),
    ('group.arn = "arn:aws:xray:eu-west-1:1:group/x"', "X-Ray groups live in AWS", 0),
    ('rootcause.responsetime.service { name = "a" }', "no response-time analysis", 0),
    ("rootcause.fault.entity { coverage > 0.5 }", "no response-time analysis", 25),
    ("rootcause.fault.thing { ok }", "unknown keyword", 0),
    ('service(id(account.id: "1"))', "keeps no account ids", 11),
    ('service(id(colour: "red"))', "id() takes name, type and account.id", 11),
    ("service(id())", "id() takes name", 11),
    ("service(42)", "expected a quoted service name or id(...)", 8),
    ('edge("a")', "expected ','", 8),
    ('service("a") {}', "an empty {} filter", 13),
    ('service("a") { ok', "expected '}'", 17),
    ("((ok)", "expected ')'", 5),
    ("ok)", "unexpected ')'", 2),
    ("ok OR", "expected a keyword, found the end", 5),
    ("AND ok", "expected a keyword, found 'AND'", 0),
    ('http.url = "open', "unterminated string", 11),
    ("ok && error", "unexpected character '&'", 3),
    ("http.status = ", "expected a value", 14),
    ("http.status = fast", "expected a value", 14),
    ("!" * 40 + "ok", "nests deeper than", 32),
    ("(" * 40 + "ok" + ")" * 40, "nests deeper than", 32),
]


@pytest.mark.parametrize(("expression", "message", "position"), ERRORS)
def test_what_cannot_be_evaluated_is_an_error_naming_where(
    expression: str, message: str, position: int
) -> None:
    with pytest.raises(FilterError, match=re.escape(message)) as caught:
        compile_filter(expression)
    assert caught.value.position == position
    assert f"(at position {position})" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_overlong_expression_is_refused() -> None:
    with pytest.raises(FilterError, match="longer than"):
        compile_filter("ok AND " * 1000 + "ok")


def test_strings_take_escapes() -> None:
    assert [t.value for t in tokenize(r'"a\"b\\c"')][:1] == ['a"b\\c']
    assert selected(r'service("Service-B") { message = "\'sku\'" }') == {"checkout"}


def test_matches_and_the_compiled_filter_is_cached() -> None:
    assert compile_filter("fault") is compile_filter("fault")
    assert matches("fault", FACTS["checkout"]) is True
    assert matches("fault", FACTS["weather"]) is False


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('service("A")', {"A"}),
        ('service("A") { fault } AND service("B")', {"A", "B"}),
        ('service("A") service("B") ok', {"A", "B"}),
        ('service("A") AND (service("B") OR fault)', {"A"}),
        ('service("A") OR service("B")', None),
        ('(service("A") AND service("B")) OR (service("B") AND service("C"))', {"B"}),
        ('!service("A")', None),
        ("service() { fault }", None),
        ('edge("A", "B")', {"A", "B"}),
        ('edge(id(name: "A", type: "client"), "A")', {"A"}),
        ('service(id(type: "AWS::SQS::Queue"))', None),
        ("fault", None),
        ("", None),
    ],
)
def test_required_services(expression: str, expected: set[str] | None) -> None:
    assert required_services(expression) == expected


def test_time_bounds_for_the_prefilter() -> None:
    compiled = compile_filter("duration >= 1 AND duration < 5 AND responsetime > 0.5 AND duration != 3")
    assert compiled.duration == (1.0, 5.0)
    assert compiled.response_time == (0.5, None)
    assert compile_filter("duration > 1 OR ok").duration == (None, None)
    assert compile_filter('service("a") { duration > 1 }').duration == (None, None)


def test_evaluation_is_fast() -> None:
    import time

    compiled = compile_filter(
        'service("Service-B") { fault OR responsetime > 2.5 } AND annotation.cart_items = 3'
    )
    facts = FACTS["checkout"]
    start = time.perf_counter()
    for _ in range(10_000):
        compiled.matches(facts)
    per_call = (time.perf_counter() - start) / 10_000
    assert per_call < 50e-6, per_call  # a few µs here; generous for a loaded CI machine


# ---- hypothesis: any text, and any well-formed expression ------------------------------------------

_ALPHABET = st.sampled_from(list('()!{}[],:="<>. \t\n\\-_aAbBdefiklnoprstuvwxyzCEORN0123456789é'))
_WORDS = st.sampled_from(
    ["ok", "error", "fault", "AND", "OR", "service", "edge", "id", "name", "annotation.k", "annotation",
     "http.url", "http.status", "responsetime", "CONTAINS", "true", "false", "rootcause.fault.service",
     "group.name", "root", '"x"', "1.5", "-2", "!", "(", ")", "{", "}", ",", ":", "=", "!=", ">", "<="]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(_ALPHABET, max_size=60), st.text(max_size=30), st.lists(_WORDS, max_size=14).map(" ".join)
    )
)
def test_any_text_compiles_or_raises_filter_error(text: str) -> None:
    try:
        compiled = compile_filter(text)
    except FilterError as exc:
        position = exc.position
        assert 0 <= position <= len(text)
        return
    for facts in FACTS.values():
        assert compiled.matches(facts) in (True, False)


_ATOMS = st.sampled_from(
    [
        "ok", "error", "throttle", "fault", "partial", "inferred", "responsetime > 0.1", "duration <= 0.25",
        "http.status = 500", 'http.url CONTAINS "shop"', 'user = "alice"', 'name = "Service-B"',
        'type = "remote"', "annotation.cart_items >= 3", "annotation.express",
        'annotation.customer_tier = "gold"',
        'service("Service-B") { fault }', 'service("Service-A")', "service() { inferred AND ok }",
        'edge("Service-A", "Service-B") { fault }', 'rootcause.fault.service { name = "jobs" }',
    ]
)  # fmt: skip


def _expressions() -> st.SearchStrategy[tuple[str, Any]]:
    """Pairs of an expression and the Python function that should give the same answer."""
    leaves = _ATOMS.map(lambda atom: (atom, lambda facts, a=atom: matches(a, facts)))

    def extend(children: st.SearchStrategy[tuple[str, Any]]) -> st.SearchStrategy[tuple[str, Any]]:
        pair = st.tuples(children, children)
        return st.one_of(
            children.map(lambda c: (f"!({c[0]})", lambda f, c=c: not c[1](f))),
            pair.map(lambda p: (f"({p[0][0]}) AND ({p[1][0]})", lambda f, p=p: p[0][1](f) and p[1][1](f))),
            pair.map(lambda p: (f"({p[0][0]}) OR ({p[1][0]})", lambda f, p=p: p[0][1](f) or p[1][1](f))),
            pair.map(lambda p: (f"({p[0][0]}) ({p[1][0]})", lambda f, p=p: p[0][1](f) and p[1][1](f))),
        )

    return st.recursive(leaves, extend, max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(_expressions())
def test_well_formed_expressions_combine_as_boolean_logic_and_hints_never_drop_a_match(
    pair: tuple[str, Any],
) -> None:
    expression, expected = pair
    compiled = compile_filter(expression)
    for facts in FACTS.values():
        result = compiled.matches(facts)
        assert result == expected(facts), expression
        if result:
            if compiled.services is not None:
                assert compiled.services <= {row[0] for row in facts["nodes"]}
            low, high = compiled.duration
            assert low is None or facts["duration"] >= low
            assert high is None or facts["duration"] <= high
