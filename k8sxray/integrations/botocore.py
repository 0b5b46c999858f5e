"""AWS calls made with ``botocore`` (so ``boto3``): one ``aws`` subsegment per API call.

``BaseClient._make_api_call`` is patched on the class (clients created before
``instrument()`` are traced) and ``Endpoint.prepare_request`` adds the trace header to
each attempt's HTTP request: ``X-Amzn-Trace-Id`` only, whatever ``K8SXRAY_PROPAGATORS``
says, because it is the one AWS services read and pass on (OpenTelemetry's botocore
instrumentation sends only it too). The subsegment is named after the service
(``DynamoDB``, ``SQS``, ``S3``...) and carries ``aws.operation``, ``aws.region``, ``aws.request_id``,
``aws.retries`` and the resource names X-Ray shows (table, queue URL, bucket and key,
topic, function, stream); item data and message bodies are never recorded. X-Ray's own
sampling and segment calls are not traced (no recursion). A streamed result (S3
``GetObject``'s ``Body``) is read after the call's subsegment has ended. When the official
SDK has patched botocore too, its subsegment (in k8sxray's trace, through the SDK bridge)
is the only one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import _guard, _recorder
from .._errors import ContextMissingError
from . import _outgoing

LIBRARY = "botocore"
"""The import this integration needs."""

_WHAT = "a botocore call"

_REQUEST_FIELDS: Mapping[str, Mapping[str, str]] = {
    "DynamoDB": {
        "TableName": "table_name",
        "IndexName": "index_name",
        "ConsistentRead": "consistent_read",
        "ProjectionExpression": "projection_expression",
        "Select": "select",
        "Limit": "limit",
        "ScanIndexForward": "scan_index_forward",
        "Segment": "segment",
        "TotalSegments": "total_segments",
    },
    "SQS": {
        "QueueUrl": "queue_url",
        "QueueName": "queue_name",
        "MaxNumberOfMessages": "max_number_of_messages",
        "WaitTimeSeconds": "wait_time_seconds",
        "VisibilityTimeout": "visibility_timeout",
        "DelaySeconds": "delay_seconds",
    },
    "S3": {"Bucket": "bucket_name", "Key": "key", "VersionId": "version_id", "Prefix": "prefix"},
    "SNS": {"TopicArn": "topic_arn", "TargetArn": "target_arn"},
    "Lambda": {
        "FunctionName": "function_name",
        "InvocationType": "invocation_type",
        "Qualifier": "qualifier",
    },
    "Kinesis": {"StreamName": "stream_name", "StreamARN": "stream_arn"},
    "SFN": {"StateMachineArn": "state_machine_arn"},
}
"""Per service (botocore's service id): request parameter -> ``aws`` field."""

_RESPONSE_FIELDS: Mapping[str, Mapping[str, str]] = {
    "DynamoDB": {"Count": "count", "ScannedCount": "scanned_count", "ConsumedCapacity": "consumed_capacity"},
    "SQS": {"MessageId": "message_id", "QueueUrl": "queue_url"},
    "SNS": {"MessageId": "message_id"},
    "Lambda": {"FunctionError": "function_error", "StatusCode": "status_code"},
}
"""Per service: response field -> ``aws`` field."""

_SKIPPED = frozenset({"GetSamplingRules", "GetSamplingTargets", "PutTraceSegments", "PutTelemetryRecords"})
"""X-Ray operations of the tracing machinery itself, never traced."""


def request_fields(service: str, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``aws`` fields describing one call, from its parameters (never item data)."""
    fields: dict[str, Any] = {"operation": operation}
    for param, field in _REQUEST_FIELDS.get(service, {}).items():
        value = params.get(param)
        if value is not None:
            fields[field] = value
    if service == "DynamoDB":
        tables = _dynamodb_tables(params)
        if tables:
            fields["table_names"] = tables
            if len(tables) == 1 and "table_name" not in fields:
                fields["table_name"] = tables[0]
    elif service == "SQS" and isinstance(params.get("Entries"), list):
        fields["message_count"] = len(params["Entries"])
    return fields


def _dynamodb_tables(params: Mapping[str, Any]) -> list[str]:
    items = params.get("RequestItems")
    if isinstance(items, Mapping):
        return sorted(str(name) for name in items)
    transact = params.get("TransactItems")
    if isinstance(transact, list):
        names = {
            str(op["TableName"])
            for item in transact
            if isinstance(item, Mapping)
            for op in item.values()
            if isinstance(op, Mapping) and "TableName" in op
        }
        return sorted(names)
    return []


def response_fields(service: str, response: Mapping[str, Any]) -> dict[str, Any]:
    """The ``aws`` fields taken from a response: request id, retries and a few counts."""
    fields: dict[str, Any] = {}
    meta = response.get("ResponseMetadata")
    if isinstance(meta, Mapping):
        if meta.get("RequestId"):
            fields["request_id"] = meta["RequestId"]
        if meta.get("RetryAttempts"):
            fields["retries"] = meta["RetryAttempts"]
        headers = meta.get("HTTPHeaders")
        if service == "S3" and isinstance(headers, Mapping) and headers.get("x-amz-id-2"):
            fields["id_2"] = headers["x-amz-id-2"]
    for key, field in _RESPONSE_FIELDS.get(service, {}).items():
        value = response.get(key)
        if value is not None:
            fields[field] = value
    if service == "SQS" and isinstance(response.get("Messages"), list):
        fields["message_count"] = len(response["Messages"])
    elif service == "DynamoDB" and isinstance(response.get("TableNames"), list):
        fields["table_count"] = len(response["TableNames"])
    return fields


def _http_status(response: Mapping[str, Any]) -> tuple[int | None, int | None]:
    meta = response.get("ResponseMetadata")
    if not isinstance(meta, Mapping):
        return None, None
    status = meta.get("HTTPStatusCode")
    headers = meta.get("HTTPHeaders")
    length = _outgoing.content_length(headers) if isinstance(headers, Mapping) else None
    return (status if isinstance(status, int) else None), length


def _begin(instance: Any, operation: str, params: Any) -> tuple[_recorder.Subsegment | None, str]:
    try:
        model = instance.meta.service_model
        service = str(model.service_id)
        if model.endpoint_prefix == "xray" and operation in _SKIPPED:
            return None, service
        sub = _recorder.begin_subsegment(service, "aws")
        if sub is None:
            if _recorder.trace_header() is None:
                _recorder.context_missing(_WHAT)
            return None, service
        fields = request_fields(service, operation, params if isinstance(params, Mapping) else {})
        fields["region"] = instance.meta.region_name
        sub.set_aws(fields)
        return sub, service
    except ContextMissingError:  # outside any request, with AWS_XRAY_CONTEXT_MISSING=RUNTIME_ERROR
        raise
    except Exception:
        _guard.internal_error(f"{_WHAT} (begin)")
        return None, ""


def _finish(sub: _recorder.Subsegment, service: str, response: Any, exc: BaseException | None) -> None:
    try:
        if isinstance(response, Mapping):
            sub.set_aws(response_fields(service, response))
            status, length = _http_status(response)
            if status is not None:
                sub.set_http_response(status, length)
        if exc is not None:
            sub.add_exception(exc, remote=response is not None)
    except Exception:
        _guard.internal_error(f"{_WHAT} (finish)")
    _recorder.end_subsegment(sub)


_client_module: Any = None


def _sdk_patched() -> bool:
    return hasattr(_client_module, "_xray_enabled")


def _make_api_call(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _patches.active:
        return wrapped(*args, **kwargs)
    operation = args[0] if args else kwargs.get("operation_name", "")
    params = args[1] if len(args) > 1 else kwargs.get("api_params", {})
    if _sdk_patched():  # the official SDK's patch traces this call (into our trace, via the bridge)
        return wrapped(*args, **kwargs)
    sub, service = _begin(instance, str(operation), params)
    if sub is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        # botocore's ClientError carries the service's answer: its status and request id
        _finish(sub, service, getattr(exc, "response", None), exc)
        raise
    _finish(sub, service, result, None)
    return result


def _prepare_request(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    prepared = wrapped(*args, **kwargs)
    if not _patches.active:
        return prepared
    try:
        # the prepared request's headers are a case-insensitive dict: set once, never appended,
        # whether another patcher added the header before us or not
        headers = prepared.headers
        if _outgoing.HEADER not in headers:
            header = _recorder.trace_header()
            if header is not None:
                headers[_outgoing.HEADER] = header
    except Exception:
        _guard.internal_error(f"{_WHAT} (header)")
    return prepared


_patches = _outgoing.Patches(
    "botocore",
    [
        ("botocore.client", "BaseClient._make_api_call", _outgoing.wrapper(_make_api_call)),
        ("botocore.endpoint", "Endpoint.prepare_request", _outgoing.wrapper(_prepare_request)),
    ],
)


def instrument() -> bool:
    """Trace every botocore/boto3 call; ``False`` when it already was (harmless)."""
    global _client_module
    import botocore.client
    import botocore.endpoint  # the patch targets must be imported

    _client_module = botocore.client
    return _patches.apply()


def uninstrument() -> None:
    """Restore ``BaseClient._make_api_call`` and ``Endpoint.prepare_request``."""
    _patches.remove()


def is_instrumented() -> bool:
    """Whether ``instrument()`` is in effect."""
    return _patches.active
