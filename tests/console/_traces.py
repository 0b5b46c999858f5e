"""Recorded multi-service traces, as the SDKs write their segment documents (assembled: separately sent
subsegments already inside their parents).

- ``checkout``: Service-A (EKS) calls Service-B (EKS), which answers 500; B writes to the DynamoDB table
  ``orders`` three subsegments down (``handler`` > ``save`` > ``DynamoDB``); annotations of every type.
- ``throttled``: Service-A calls an uninstrumented payments host that answers 429, and passes it on.
- ``weather``: Service-A calls an uninstrumented host that answers 200; a plain EC2 instance id.
- ``orphan``: Service-B's segment alone, its caller's subsegment never arrived (partial).
- ``sqs_fault``: Service-C (no origin) fails sending to an SQS queue (a fault on the AWS call).
"""

from __future__ import annotations

from typing import Any

T = 1_700_000_000.0

CHECKOUT_ID = "1-6553f100-0a1b2c3d4e5f60718293a4b5"
THROTTLED_ID = "1-6553f101-1a1b2c3d4e5f60718293a4b5"
WEATHER_ID = "1-6553f102-2a1b2c3d4e5f60718293a4b5"
ORPHAN_ID = "1-6553f103-3a1b2c3d4e5f60718293a4b5"
SQS_ID = "1-6553f104-4a1b2c3d4e5f60718293a4b5"

EKS_A = {"pod": "service-a-7d9f8b6c5-x2x9z", "cluster_name": "shop", "container_id": "a" * 64}
EKS_B = {"pod": "service-b-5c6d7e8f9-q8w7e", "cluster_name": "shop", "container_id": "b" * 64}


def checkout() -> list[dict[str, Any]]:
    a = {
        "name": "Service-A",
        "id": "a000000000000001",
        "trace_id": CHECKOUT_ID,
        "start_time": T,
        "end_time": T + 0.250,
        "origin": "AWS::EKS::Container",
        "fault": True,
        "user": "alice",
        "resource_arn": "arn:aws:eks:eu-west-1:123456789012:cluster/shop",
        "http": {
            "request": {
                "method": "POST",
                "url": "http://shop.example/checkout?cart=42",
                "user_agent": "curl/8.5.0",
                "client_ip": "10.0.0.7",
            },
            "response": {"status": 500, "content_length": 21},
        },
        "aws": {"eks": EKS_A, "xray": {"sdk": "k8sxray", "sdk_version": "0.1.0"}},
        "annotations": {"customer_tier": "gold", "cart_items": 3, "express": True},
        "cause": "e000000000000002",
        "subsegments": [
            {
                "name": "service-b",
                "id": "a000000000000002",
                "start_time": T + 0.010,
                "end_time": T + 0.240,
                "namespace": "remote",
                "fault": True,
                "http": {
                    "request": {"method": "POST", "url": "http://service-b/orders", "traced": True},
                    "response": {"status": 500},
                },
                "cause": {
                    "working_directory": "/app",
                    "exceptions": [
                        {
                            "id": "e000000000000002",
                            "type": "HTTPError",
                            "message": "500 Server Error",
                            "remote": True,
                        }
                    ],
                },
            }
        ],
    }
    b = {
        "name": "Service-B",
        "id": "b000000000000001",
        "trace_id": CHECKOUT_ID,
        "parent_id": "a000000000000002",
        "start_time": T + 0.020,
        "end_time": T + 0.230,
        "origin": "AWS::EKS::Container",
        "fault": True,
        "http": {
            "request": {"method": "POST", "url": "http://service-b/orders", "client_ip": "10.0.0.8"},
            "response": {"status": 500},
        },
        "aws": {
            "eks": EKS_B,
            "ec2": {"instance_id": "i-0b1c2d3e4f5a6b7c8", "availability_zone": "eu-west-1b"},
        },
        "annotations": {"retry": False, "cart_items": 3},
        "cause": {
            "working_directory": "/srv",
            "exceptions": [
                {
                    "id": "e000000000000003",
                    "type": "KeyError",
                    "message": "'sku'",
                    "stack": [{"path": "/srv/app.py", "line": 42, "label": "save"}],
                }
            ],
        },
        "subsegments": [
            {
                "name": "handler",
                "id": "b000000000000002",
                "start_time": T + 0.021,
                "end_time": T + 0.229,
                "namespace": "local",
                "fault": True,
                "subsegments": [
                    {
                        "name": "save",
                        "id": "b000000000000003",
                        "start_time": T + 0.030,
                        "end_time": T + 0.200,
                        "fault": True,
                        "annotations": {"order_value": 99.5},
                        "cause": {
                            "working_directory": "/srv",
                            "exceptions": [
                                {"id": "e000000000000003", "type": "KeyError", "message": "'sku'"}
                            ],
                        },
                        "subsegments": [
                            {
                                "name": "DynamoDB",
                                "id": "b000000000000004",
                                "start_time": T + 0.040,
                                "end_time": T + 0.080,
                                "namespace": "aws",
                                "http": {"response": {"status": 200}},
                                "aws": {
                                    "operation": "PutItem",
                                    "region": "eu-west-1",
                                    "request_id": "REQ1",
                                    "table_name": "orders",
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    return [b, a]  # in the order they arrived: the callee finishes first


def throttled() -> list[dict[str, Any]]:
    return [
        {
            "name": "Service-A",
            "id": "a100000000000001",
            "trace_id": THROTTLED_ID,
            "start_time": T + 10,
            "end_time": T + 10.080,
            "origin": "AWS::EKS::Container",
            "error": True,
            "throttle": True,
            "http": {
                "request": {
                    "method": "GET",
                    "url": "http://shop.example/pay",
                    "user_agent": "python-requests/2.32",
                },
                "response": {"status": 429},
            },
            "aws": {"eks": EKS_A},
            "annotations": {"customer_tier": "silver"},
            "subsegments": [
                {
                    "name": "api.payments.example",
                    "id": "a100000000000002",
                    "start_time": T + 10.005,
                    "end_time": T + 10.075,
                    "namespace": "remote",
                    "error": True,
                    "throttle": True,
                    "http": {
                        "request": {"method": "POST", "url": "https://api.payments.example/charge"},
                        "response": {"status": 429},
                    },
                }
            ],
        }
    ]


def weather() -> list[dict[str, Any]]:
    return [
        {
            "name": "Service-A",
            "id": "a200000000000001",
            "trace_id": WEATHER_ID,
            "start_time": T + 20,
            "end_time": T + 20.300,
            "origin": "AWS::EKS::Container",
            "http": {
                "request": {"method": "GET", "url": "http://shop.example/forecast", "client_ip": "10.0.0.9"},
                "response": {"status": 200},
            },
            "aws": {
                "eks": EKS_A,
                "ec2": {"instance_id": "i-0a1a2a3a4a5a6a7a8", "availability_zone": "eu-west-1a"},
            },
            "user": "bob",
            "subsegments": [
                {
                    "name": "api.weather.example",
                    "id": "a200000000000002",
                    "start_time": T + 20.010,
                    "end_time": T + 20.290,
                    "namespace": "remote",
                    "http": {
                        "request": {"method": "GET", "url": "https://api.weather.example/v1/today"},
                        "response": {"status": 200},
                    },
                }
            ],
        }
    ]


def orphan() -> list[dict[str, Any]]:
    return [
        {
            "name": "Service-B",
            "id": "b300000000000001",
            "trace_id": ORPHAN_ID,
            "parent_id": "a3000000000000ff",
            "start_time": T + 30,
            "end_time": T + 30.050,
            "origin": "AWS::EKS::Container",
            "http": {
                "request": {"method": "GET", "url": "http://service-b/health"},
                "response": {"status": 200},
            },
        }
    ]


def sqs_fault() -> list[dict[str, Any]]:
    return [
        {
            "name": "Service-C",
            "id": "c400000000000001",
            "trace_id": SQS_ID,
            "start_time": T + 40,
            "end_time": T + 40.120,
            "fault": True,
            "http": {
                "request": {"method": "POST", "url": "http://service-c/jobs"},
                "response": {"status": 502},
            },
            "subsegments": [
                {
                    "name": "SQS",
                    "id": "c400000000000002",
                    "start_time": T + 40.010,
                    "end_time": T + 40.110,
                    "namespace": "aws",
                    "fault": True,
                    "http": {"response": {"status": 503}},
                    "aws": {
                        "operation": "SendMessage",
                        "queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs",
                    },
                    "cause": {
                        "exceptions": [
                            {"id": "e400000000000001", "type": "ServiceUnavailable", "message": "slow down"}
                        ]
                    },
                }
            ],
        }
    ]


ALL = {
    CHECKOUT_ID: checkout,
    THROTTLED_ID: throttled,
    WEATHER_ID: weather,
    ORPHAN_ID: orphan,
    SQS_ID: sqs_fault,
}
"""Every recorded trace by id: a function that returns fresh documents."""
