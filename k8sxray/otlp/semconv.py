"""The tables both directions of the mapping share: ids, names, origins, resource attributes.

Each table is read one way by ``mapping.segments`` (spans to segment documents) and the other way
by ``mapping.spans`` (segment documents to spans), so a fact is written once.
"""

from __future__ import annotations

import re
from typing import Any

SERVICE_NAME = "service.name"
UNKNOWN_SERVICE = "unknown_service"
"""OpenTelemetry's ``service.name`` when none is configured."""

ANNOTATIONS = "aws.xray.annotations"
"""The span attribute listing which attributes are X-Ray annotations (indexed, searchable)."""
METADATA_PREFIX = "aws.xray.metadata."
"""``aws.xray.metadata.<namespace>``: one X-Ray metadata namespace, JSON-encoded."""
SQL_PREFIX = "aws.xray.sql."
"""X-Ray ``sql`` fields OpenTelemetry has no attribute for."""
OTEL_NAMESPACE = "otel"
"""The metadata namespace holding span attributes X-Ray has no field for (and the span's own name
and kind when the segment does not say them)."""
RESOURCE_NAMESPACE = "otel.resource"
"""The metadata namespace (segments only) holding resource attributes X-Ray has no field for."""

ORIGINS = {
    "aws_eks": "AWS::EKS::Container",
    "aws_ecs": "AWS::ECS::Container",
    "aws_ec2": "AWS::EC2::Instance",
    "aws_elastic_beanstalk": "AWS::ElasticBeanstalk::Environment",
    "aws_lambda": "AWS::Lambda::Function",
}
"""``cloud.platform`` -> segment ``origin``."""
PLATFORMS = {origin: platform for platform, origin in ORIGINS.items()}

RESOURCE_AWS = {
    "eks": (("pod", "k8s.pod.name"), ("cluster_name", "k8s.cluster.name"), ("container_id", "container.id")),
    "ec2": (
        ("instance_id", "host.id"),
        ("availability_zone", "cloud.availability_zone"),
        ("instance_type", "host.type"),
        ("ami_id", "host.image.id"),
    ),
    "ecs": (
        ("container", "container.name"),
        ("container_id", "container.id"),
        ("container_arn", "aws.ecs.container.arn"),
    ),
    "xray": (("sdk", "telemetry.sdk.name"), ("sdk_version", "telemetry.sdk.version")),
}
"""Segment ``aws.<object>.<field>`` <-> resource attribute, for the objects set from the resource."""

RESOURCE_K8S = (
    ("namespace", "k8s.namespace.name"),
    ("node", "k8s.node.name"),
    ("pod_uid", "k8s.pod.uid"),
    ("container_name", "k8s.container.name"),
)
"""``metadata.k8s.<field>`` (as k8sxray's Kubernetes plugin writes it) <-> resource attribute."""
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")
"""``metadata.k8s.workload.kind`` values, each with its ``k8s.<kind>.name`` resource attribute."""
LABEL_PREFIX = "k8s.pod.label."

AWS_CALL = (
    ("operation", "rpc.method"),
    ("region", "aws.region"),
    ("request_id", "aws.request_id"),
    ("queue_url", "aws.sqs.queue.url"),
    ("bucket_name", "aws.s3.bucket"),
    ("key", "aws.s3.key"),
)
"""Subsegment ``aws.<field>`` of an AWS SDK call <-> span attribute (current names)."""
AWS_CALL_OLDER = {
    "operation": ("aws.operation",),
    "request_id": ("aws.requestId",),
    "queue_url": ("aws.sqs.queue_url", "aws.queue_url", "messaging.url"),
    "bucket_name": ("aws.bucket_name",),
}
"""Other attribute names read for the same fields (older instrumentations)."""

SQL = (
    ("sanitized_query", "db.query.text"),
    ("database_type", "db.system"),
    ("user", "db.user"),
    ("url", "db.connection_string"),
)
"""Subsegment ``sql.<field>`` <-> span attribute; other ``sql`` fields use :data:`SQL_PREFIX`."""

_HEX = frozenset("0123456789abcdef")
_NAME_BAD = re.compile(r"[^\w\s.:/%&#=+\\\-@]", re.ASCII)
_ANNOTATION_BAD = re.compile(r"[^A-Za-z0-9_]")


def is_hex(text: Any, digits: int) -> bool:
    """Whether ``text`` is ``digits`` lowercase hex digits, not all zero (OTLP's invalid id)."""
    return type(text) is str and len(text) == digits and _HEX.issuperset(text) and text != "0" * digits


def xray_trace_id(trace_id: str) -> str:
    """An OTLP trace id (32 hex digits) in X-Ray's form: ``1-`` + the first 8 + ``-`` + the last 24.

    Kept unchanged whether or not the first 8 digits are a time (``AwsXRayIdGenerator`` makes them
    one; a random W3C id does not): X-Ray's PutTraceSegments reference says a W3C trace id is sent
    in exactly this form and that the time in it is not required or validated.
    """
    return f"1-{trace_id[:8]}-{trace_id[8:]}"


def otlp_trace_id(xray_id: Any) -> str | None:
    """An X-Ray trace id (``1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy``) as 32 hex digits, or None."""
    if type(xray_id) is not str or len(xray_id) != 35 or xray_id[:2] != "1-" or xray_id[10] != "-":
        return None
    digits = xray_id[2:10] + xray_id[11:]
    return digits if is_hex(digits, 32) else None


def entity_name(text: str) -> str:
    """A name X-Ray accepts: its characters only (others removed), at most 200 of them."""
    cleaned = _NAME_BAD.sub("", text)[:200].strip()
    return cleaned or UNKNOWN_SERVICE


def annotation_key(key: str) -> str:
    """An annotation key X-Ray accepts: letters, digits and underscores (others become ``_``)."""
    return _ANNOTATION_BAD.sub("_", key)
