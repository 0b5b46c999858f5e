"""botocore/boto3 against a real moto server on loopback: the ``aws`` subsegment fields."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.client
import botocore.exceptions
import pytest
from moto.server import ThreadedMotoServer

from k8sxray import _config, _recorder
from k8sxray.integrations import botocore as k_botocore
from k8sxray.testing import capture_segments

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def client(service: str, endpoint: str, sent: list[list[str]]) -> Any:
    made = boto3.client(service, region_name=REGION, endpoint_url=endpoint)

    def capture(request: Any, **_: Any) -> None:
        sent.append(
            [
                v.decode() if isinstance(v, bytes) else v
                for k, v in request.headers.items()
                if k.lower() == "x-amzn-trace-id"
            ]
        )

    made.meta.events.register("before-send", capture)
    return made


@contextmanager
def in_request() -> Iterator[None]:
    segment = _recorder.start_request(f"Root={ROOT};Sampled=1", "a", "GET", "/", time.time())
    assert segment is not None
    try:
        yield
    finally:
        _recorder.end_segment(segment)


@pytest.fixture
def traced() -> Iterator[list[dict[str, Any]]]:
    _config.configure(daemon_address="127.0.0.1:9", context_missing="IGNORE_ERROR")
    with capture_segments() as documents:
        yield documents
    k_botocore.uninstrument()


def test_dynamodb(endpoint: str, aws_env: None, traced: list[dict[str, Any]]) -> None:
    sent: list[list[str]] = []
    dynamodb = client("dynamodb", endpoint, sent)  # created before instrument()
    k_botocore.instrument()
    with in_request():
        dynamodb.create_table(
            TableName="orders",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(TableName="orders", Item={"pk": {"S": "secret-item"}})
        dynamodb.get_item(TableName="orders", Key={"pk": {"S": "secret-item"}}, ConsistentRead=True)
        with pytest.raises(botocore.exceptions.ClientError) as info:
            dynamodb.get_item(TableName="missing", Key={"pk": {"S": "x"}})
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    subs = traced[0]["subsegments"]
    assert [sub["aws"]["operation"] for sub in subs] == ["CreateTable", "PutItem", "GetItem", "GetItem"]
    # one header per HTTP request, its Parent the call's subsegment
    assert sent == [[f"Root={ROOT};Parent={sub['id']};Sampled=1"] for sub in subs]
    for sub in subs:
        assert sub["name"] == "DynamoDB"
        assert sub["namespace"] == "aws"
        assert sub["aws"]["region"] == REGION
        assert sub["aws"]["request_id"]
    get = subs[2]
    assert get["aws"]["table_name"] == "orders"
    assert get["aws"]["consistent_read"] is True
    assert get["http"]["response"]["status"] == 200
    assert "secret-item" not in str(traced)
    failed = subs[3]
    assert failed["aws"]["table_name"] == "missing"
    assert failed["http"]["response"]["status"] == 400
    assert failed["error"] is True
    assert not failed.get("fault")  # a 4xx answer is the caller's error, not a fault
    (exc,) = failed["cause"]["exceptions"]
    assert exc["remote"] is True
    assert exc["type"] == "ResourceNotFoundException"


def test_sqs_and_s3(endpoint: str, aws_env: None, traced: list[dict[str, Any]]) -> None:
    k_botocore.instrument()
    sent: list[list[str]] = []
    sqs = client("sqs", endpoint, sent)
    s3 = client("s3", endpoint, sent)
    with in_request():
        url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="secret-body")
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=5)
        s3.create_bucket(Bucket="reports", CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket="reports", Key="2026/report.csv", Body=b"secret-data")
    by_op = {sub["aws"]["operation"]: sub for sub in traced[0]["subsegments"]}
    assert by_op["CreateQueue"]["aws"]["queue_name"] == "jobs"
    assert by_op["SendMessage"]["aws"]["queue_url"] == url
    assert by_op["SendMessage"]["aws"]["message_id"]
    assert by_op["ReceiveMessage"]["aws"]["message_count"] == 1
    assert by_op["ReceiveMessage"]["aws"]["max_number_of_messages"] == 5
    assert by_op["SendMessage"]["name"] == "SQS"
    put = by_op["PutObject"]
    assert put["name"] == "S3"
    assert put["aws"]["bucket_name"] == "reports"
    assert put["aws"]["key"] == "2026/report.csv"
    assert put["aws"]["region"] == REGION
    assert all(len(headers) == 1 for headers in sent)
    assert "secret-body" not in str(traced)
    assert "secret-data" not in str(traced)


def test_outside_a_request_and_uninstrument(
    endpoint: str, aws_env: None, traced: list[dict[str, Any]]
) -> None:
    original = botocore.client.BaseClient.__dict__["_make_api_call"]
    k_botocore.instrument()
    sent: list[list[str]] = []
    sqs = client("sqs", endpoint, sent)
    assert sqs.list_queues()["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert sent == [[]]  # no trace, no header
    assert traced == []
    k_botocore.uninstrument()
    assert botocore.client.BaseClient.__dict__["_make_api_call"] is original
    with in_request():
        sqs.list_queues()
    assert "subsegments" not in traced[0]
