"""The node's EC2 identity from IMDSv2, for ``aws.ec2`` (optional: ``K8SXRAY_EC2_NODE=1``).

Two requests to the instance metadata service: ``PUT /latest/api/token`` for a session token,
then ``GET /latest/dynamic/instance-identity/document`` with it. From a Pod this only works when
the node allows it (IMDSv2 hop limit 2, no network policy in the way); otherwise it fails fast.
The whole exchange runs in a short-lived daemon thread the caller waits for at most *timeout*.
"""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "http://169.254.169.254"
_TOKEN_TTL = "60"
_MAX_BODY = 64 * 1024
_FIELDS = (
    ("instanceId", "instance_id"),
    ("availabilityZone", "availability_zone"),
    ("instanceType", "instance_type"),
    ("imageId", "ami_id"),
)


class ImdsError(Exception):
    """Why the identity could not be read (a short, loggable reason)."""


def _request(conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str]) -> bytes:
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    body = response.read(_MAX_BODY + 1)
    if response.status != 200:
        raise ImdsError(f"{method} {path} answered HTTP {response.status}")
    if len(body) > _MAX_BODY:
        raise ImdsError(f"{method} {path} answered too much")
    return body


def _fetch(endpoint: str, timeout: float) -> dict[str, str]:
    parts = urlsplit(endpoint)
    if parts.scheme != "http" or not parts.hostname:
        raise ImdsError(f"unsupported endpoint {endpoint!r} (http://host[:port] expected)")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        token = _request(
            conn, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": _TOKEN_TTL}
        )
        document = _request(
            conn,
            "GET",
            "/latest/dynamic/instance-identity/document",
            {"X-aws-ec2-metadata-token": token.decode("ascii", "replace").strip()},
        )
    except (OSError, http.client.HTTPException) as exc:
        raise ImdsError(f"{type(exc).__name__}: {exc}") from None
    finally:
        conn.close()
    try:
        identity: Any = json.loads(document)
    except ValueError:
        raise ImdsError("the identity document is not JSON") from None
    if not isinstance(identity, dict):
        raise ImdsError("the identity document is not a JSON object")
    found = {ours: identity[theirs] for theirs, ours in _FIELDS if isinstance(identity.get(theirs), str)}
    found = {key: value for key, value in found.items() if value and len(value) <= 256}
    if "instance_id" not in found:
        raise ImdsError("the identity document has no instanceId")
    return found


def node_identity(
    endpoint: str = DEFAULT_ENDPOINT, timeout: float = 0.5
) -> tuple[dict[str, str] | None, str]:
    """``(aws.ec2 fields, "")`` or ``(None, reason)``, within about *timeout* seconds. Never raises."""
    result: list[tuple[dict[str, str] | None, str]] = []

    def work() -> None:
        try:
            result.append((_fetch(endpoint, timeout), ""))
        except ImdsError as exc:
            result.append((None, str(exc)))
        except Exception as exc:  # never let a surprise escape the thread
            result.append((None, f"unexpected {type(exc).__name__}: {exc}"))

    thread = threading.Thread(target=work, name="k8sxray-imds", daemon=True)
    thread.start()
    thread.join(timeout + 0.05)
    if not result:
        return None, f"no answer within {timeout:g} s"
    return result[0]
