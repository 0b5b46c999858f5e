"""Shared outgoing-call logic, auto-instrumentation, and botocore's pure field mapping."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest
import requests

from k8sxray import _autoinstrument, _config
from k8sxray.integrations import _outgoing, botocore
from k8sxray.integrations import requests as k_requests


@pytest.fixture(autouse=True)
def _untouched() -> Iterator[None]:
    yield
    _autoinstrument.uninstrument_integrations()


def test_host_and_content_length() -> None:
    assert _outgoing.host_of("http://u:p@Example.COM:8080/a?b=c") == "example.com"
    assert _outgoing.host_of("not a url") == "unknown"
    assert _outgoing.host_of("http://[::1]:80/x") == "::1"
    assert _outgoing.host_of("http://h?x=@y") == "h"
    assert _outgoing.host_of("http://:80/") == "unknown"
    assert _outgoing.content_length({"content-length": "12"}) == 12
    assert _outgoing.content_length({"content-length": "x"}) is None
    assert _outgoing.content_length({}) is None


def test_targets_are_scrubbed_remembered_and_bounded() -> None:
    url = "http://u:p@Example.COM:8080/a?token=s3cret&page=2"
    first = _outgoing.target(url)
    assert first == ("example.com", "http://Example.COM:8080/a?token=REDACTED&page=2")
    assert _outgoing.target(url) is first  # remembered: the same answer, not worked out again
    for n in range(_outgoing.MAX_TARGETS + 1):  # the dict starts over instead of growing
        _outgoing.target(f"http://h{n}/")
    assert len(_outgoing._TARGETS) <= _outgoing.MAX_TARGETS
    long = "http://h/" + "x" * 5000 + "?password=p"
    assert _outgoing.target(long)[1].endswith("?password=REDACTED")
    assert long not in _outgoing._TARGETS  # long URLs are not kept


def test_instrument_is_idempotent_and_uninstrument_restores() -> None:
    original = requests.Session.__dict__["send"]
    assert k_requests.instrument() is True
    assert requests.Session.__dict__["send"] is not original
    assert k_requests.instrument() is False  # harmless
    assert k_requests.is_instrumented()
    k_requests.uninstrument()
    assert requests.Session.__dict__["send"] is original
    assert not k_requests.is_instrumented()
    k_requests.uninstrument()  # twice is harmless too
    assert requests.Session.__dict__["send"] is original


def test_uninstrument_under_a_later_wrapper_passes_through() -> None:
    import wrapt

    original = requests.Session.__dict__["send"]
    calls: list[str] = []

    def outer(wrapped, instance, args, kwargs):  # type: ignore[no-untyped-def]
        calls.append("outer")
        return wrapped(*args, **kwargs)

    k_requests.instrument()
    wrapt.wrap_function_wrapper("requests.sessions", "Session.send", outer)
    k_requests.uninstrument()  # cannot unwrap from under `outer`: goes inactive instead
    assert not k_requests.is_instrumented()
    assert requests.Session.__dict__["send"] is not original
    k_requests.instrument()  # reactivates the wrapper that stayed, without wrapping twice
    assert requests.Session.__dict__["send"].__wrapped__.__wrapped__ is original
    k_requests.uninstrument()
    requests.Session.send = original  # undo `outer` (test hygiene)


def test_a_wrapper_applied_before_ours_is_still_called_with_its_instance() -> None:
    import requests.adapters
    import wrapt

    original = requests.Session.__dict__["send"]
    seen: list[object] = []

    def earlier(wrapped, instance, args, kwargs):  # type: ignore[no-untyped-def]
        seen.append(instance)
        return wrapped(*args, **kwargs)

    class Adapter(requests.adapters.BaseAdapter):
        def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
            response = requests.Response()
            response.status_code = 204
            response.request = request
            return response

        def close(self) -> None:
            pass

    wrapt.wrap_function_wrapper("requests.sessions", "Session.send", earlier)
    try:
        theirs = requests.Session.__dict__["send"]
        k_requests.instrument()
        assert requests.Session.__dict__["send"].__wrapped__ is theirs
        session = requests.Session()
        session.mount("svc://", Adapter())
        assert session.get("svc://inventory/").status_code == 204
        assert seen == [session]  # bound to the session, as attribute access would have done
        k_requests.uninstrument()
        assert requests.Session.__dict__["send"] is theirs
    finally:
        requests.Session.send = original  # undo `earlier` (test hygiene)


def test_load_unknown_and_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown integration 'nope'"):
        _autoinstrument.load("nope")
    monkeypatch.setitem(sys.modules, "httpx", None)  # as if httpx were not installed
    with pytest.raises(_autoinstrument.IntegrationNotAvailable, match="pip install httpx"):
        _autoinstrument.load("httpx")
    with pytest.raises(_autoinstrument.IntegrationNotAvailable):
        _autoinstrument.instrument_integrations(["httpx"], config=_config.build(environ={}))
    # auto-enabled: a missing library is skipped quietly
    done = _autoinstrument.instrument_integrations(config=_config.build(environ={}))
    assert "httpx" not in done
    assert {"requests", "botocore"} <= set(done)


def test_disabled_integrations_are_left_off() -> None:
    config = _config.build(environ={"K8SXRAY_DISABLED_INTEGRATIONS": "requests,botocore"})
    done = _autoinstrument.instrument_integrations(config=config)
    assert "requests" not in done
    assert "botocore" not in done
    assert "httpx" in done
    assert not k_requests.is_instrumented()
    assert _autoinstrument.instrument_integrations(["requests"], config=config) == []


def test_instrument_when_imported_waits_for_the_import(monkeypatch: pytest.MonkeyPatch) -> None:
    import wrapt

    hooks: list[str] = []
    monkeypatch.setattr(wrapt, "register_post_import_hook", lambda hook, name: hooks.append(name))
    monkeypatch.setattr(_autoinstrument, "_hooked", set())
    monkeypatch.delitem(sys.modules, "requests")  # as if the app had not imported it yet
    names = _autoinstrument.instrument_when_imported({"botocore"})
    assert "botocore" not in names
    assert "requests" in names
    assert "requests" in hooks
    assert not k_requests.is_instrumented()  # nothing happens before the hook fires
    _autoinstrument.instrument_when_imported({"botocore"})
    assert hooks.count("requests") == 1  # a hook is registered once


def test_instrument_when_imported_instruments_an_imported_library_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import wrapt

    hooks: list[str] = []
    monkeypatch.setattr(wrapt, "register_post_import_hook", lambda hook, name: hooks.append(name))
    assert "requests" in sys.modules
    try:
        assert "requests" in _autoinstrument.instrument_when_imported({"botocore", "httpx", "xray_sdk"})
        assert k_requests.is_instrumented()
        assert "requests" not in hooks
        k_requests.uninstrument()
        _autoinstrument.instrument_when_imported({"botocore", "httpx", "xray_sdk"})
        assert k_requests.is_instrumented()  # re-enabled after an uninstrument
    finally:
        k_requests.uninstrument()


def test_context_missing_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    _config.configure(daemon_address="127.0.0.1:9", context_missing="LOG_ERROR")
    headers: dict[str, str] = {}
    with caplog.at_level(logging.WARNING, logger="k8sxray"):
        for _ in range(3):
            assert _outgoing.begin_http("a test call", "GET", "http://127.0.0.1/", headers) is None
    assert headers == {}
    assert sum("a test call outside a traced request" in r.getMessage() for r in caplog.records) == 1
    caplog.clear()
    _config.configure(daemon_address="127.0.0.1:9", context_missing="IGNORE_ERROR")
    with caplog.at_level(logging.DEBUG, logger="k8sxray"):
        assert _outgoing.begin_http("another test call", "GET", "http://127.0.0.1/", headers) is None
    assert not [r for r in caplog.records if "another test call" in r.getMessage()]


# --- botocore's field mapping (pure) ----------------------------------------------------------
def test_dynamodb_fields() -> None:
    fields = botocore.request_fields(
        "DynamoDB",
        "Query",
        {
            "TableName": "orders",
            "IndexName": "by_user",
            "ConsistentRead": True,
            "KeyConditionExpression": "pk = :v",
            "ExpressionAttributeValues": {":v": 1},
        },
    )
    assert fields == {
        "operation": "Query",
        "table_name": "orders",
        "index_name": "by_user",
        "consistent_read": True,
    }
    batch = botocore.request_fields("DynamoDB", "BatchGetItem", {"RequestItems": {"b": {}, "a": {}}})
    assert batch["table_names"] == ["a", "b"]
    assert "table_name" not in batch
    one = botocore.request_fields("DynamoDB", "BatchWriteItem", {"RequestItems": {"only": []}})
    assert one["table_name"] == "only"
    transact = botocore.request_fields(
        "DynamoDB",
        "TransactWriteItems",
        {"TransactItems": [{"Put": {"TableName": "t1", "Item": {}}}, {"Delete": {"TableName": "t2"}}]},
    )
    assert transact["table_names"] == ["t1", "t2"]
    response = botocore.response_fields(
        "DynamoDB",
        {
            "Count": 2,
            "ScannedCount": 5,
            "Items": [{"secret": 1}],
            "ResponseMetadata": {"RequestId": "R1", "RetryAttempts": 1},
        },
    )
    assert response == {"request_id": "R1", "retries": 1, "count": 2, "scanned_count": 5}


def test_sqs_s3_and_unknown_services() -> None:
    sqs = botocore.request_fields("SQS", "SendMessage", {"QueueUrl": "http://q/1", "MessageBody": "secret"})
    assert sqs == {"operation": "SendMessage", "queue_url": "http://q/1"}
    received = botocore.response_fields("SQS", {"Messages": [{"Body": "x"}, {"Body": "y"}]})
    assert received == {"message_count": 2}
    batch = botocore.request_fields("SQS", "SendMessageBatch", {"QueueUrl": "u", "Entries": [{}, {}, {}]})
    assert batch["message_count"] == 3
    s3 = botocore.request_fields("S3", "PutObject", {"Bucket": "b", "Key": "k", "Body": b"data"})
    assert s3 == {"operation": "PutObject", "bucket_name": "b", "key": "k"}
    s3_response = botocore.response_fields(
        "S3", {"ResponseMetadata": {"RequestId": "R", "HTTPHeaders": {"x-amz-id-2": "ID2"}}}
    )
    assert s3_response == {"request_id": "R", "id_2": "ID2"}
    assert botocore.request_fields("STS", "GetCallerIdentity", {}) == {"operation": "GetCallerIdentity"}
