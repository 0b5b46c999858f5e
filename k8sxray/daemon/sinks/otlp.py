"""``--sink otlp``: segments as OpenTelemetry spans, OTLP/HTTP protobuf + gzip, to X-Ray or a collector.

Each document becomes spans (``k8sxray.otlp.spans``: same trace, span and parent ids; encoded by
``k8sxray.otlp.encoded``, in C when the optional module is built), grouped by resource (one per
service and Pod, keyed by the resource's encoded attributes); a batch becomes as few requests as
X-Ray's OTLP limits allow (5 MB uncompressed, 10,000 spans). X-Ray's endpoint (``https://xray.<region>.amazonaws.com/v1/traces``,
the default) is signed with SigV4 for service ``xray``, as the xray sink signs; any other endpoint (a
collector, Tempo, Jaeger) is called unsigned unless ``--otlp-sigv4`` asks.

Failures are classified as the xray sink classifies them, so the shipper retries the same way:
429, 5xx, timeouts and refused connections are retried for as long as the buffer holds the
documents; a 400 or 413 for several documents is split in halves to isolate the ones refused; any
other 4xx refuses the batch, counted by code. Documents that cannot become spans (not JSON, bad ids)
are refused one by one before anything is sent; in-progress documents become no span (delivered:
the completed document follows).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from k8sxray.daemon.sinks import OK, SendResult
from k8sxray.daemon.sinks._http import ConnectionPool, TransportError, proxy_for
from k8sxray.daemon.sinks.xray import (  # the xray sink's SigV4 request and signer, reused as they are
    _Request,
    _Signer,
    _without_host,
    endpoint_for,
    is_retryable_code,
)
from k8sxray.otlp import codec
from k8sxray.otlp.encoded import BUILT, Encoded, Encoder
from k8sxray.otlp.spans import MappingError

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 5 * 1024 * 1024
"""X-Ray's OTLP endpoint takes at most 5 MB (uncompressed) a request..."""
MAX_REQUEST_SPANS = 10_000
"""...and at most 10,000 spans."""
_CONTENT_TYPE = "application/x-protobuf"
_SCOPE = "k8sxray.daemon"


def default_endpoint(region: str) -> str:
    """X-Ray's OTLP traces endpoint in ``region``."""
    return endpoint_for(region) + "/v1/traces"


class _Part:
    """Documents of a batch whose spans go in one request: ``docs`` holds (index, spans)."""

    __slots__ = ("docs", "size", "spans")

    def __init__(self) -> None:
        self.docs: list[tuple[int, Encoded]] = []
        self.size = 0
        self.spans = 0


class OtlpSink:
    """Sends batches as OTLP/HTTP requests."""

    name = "otlp"
    check_documents = False  # every document is parsed here; what cannot become spans is refused, counted
    batch_size = 500
    """Documents per batch (the buffer hands the xray sink 50, PutTraceSegments' limit): a request
    costs a signature, a gzip stream and a round trip, shared by ten times more documents."""

    def __init__(
        self,
        endpoint_url: str,
        *,
        credentials: Callable[[], Any] | None = None,
        region: str | None = None,
        proxy: str | None = None,
        verify_ssl: bool = True,
        timeout: float = 5.0,
        connections: int = 8,
        gzip_level: int = 1,
        native: bool | None = None,
    ) -> None:
        if credentials is not None and not region:
            raise ValueError("signing OTLP requests needs a region")
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the OTLP endpoint must be an http(s) URL, got {endpoint_url!r}")
        self._credentials = credentials
        self._region = region or ""
        self.local_sampling = credentials is None
        """Without X-Ray credentials behind the sink, the daemon answers sampling calls itself."""
        self._url = endpoint_url
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        proxy_url = proxy_for(endpoint_url, proxy)
        if proxy_url:
            log.info("calls to %s go through proxy %s", endpoint_url, urlsplit(proxy_url).hostname)
        self._pool = ConnectionPool(
            endpoint_url, proxy=proxy_url, verify=verify_ssl, timeout=timeout, size=connections
        )
        self._gzip_level = gzip_level
        self._signing_key: list[tuple[tuple[str, ...], bytes]] = []
        self.encoder = Encoder(native=native)
        """Encodes documents (in C when built; ``native=False`` or ``K8SXRAY_NATIVE=false``: Python)."""

    def send(self, batch: list[bytes]) -> SendResult:
        rejected: dict[str, int] = {}
        parts = [_Part()]
        encode = self.encoder.encode
        for index, raw in enumerate(batch):
            try:
                encoded = encode(raw)
            except MappingError as exc:
                code = f"InvalidDocument: {exc.reason}"
                rejected[code] = rejected.get(code, 0) + 1
                continue
            except (ValueError, RecursionError):
                rejected["InvalidDocument: not_json"] = rejected.get("InvalidDocument: not_json", 0) + 1
                continue
            except Exception:  # a bug must not keep a batch retrying forever: this document is refused
                log.exception("cannot convert a document to spans; it is refused")
                rejected["InvalidDocument: unexpected"] = rejected.get("InvalidDocument: unexpected", 0) + 1
                continue
            if encoded is None:
                continue  # in progress: nothing to send yet, nothing to retry
            count = encoded[2]
            size = len(encoded[1]) + 16 * count
            part = parts[-1]
            if part.docs and (
                part.size + size > MAX_REQUEST_BYTES - 65536 or part.spans + count > MAX_REQUEST_SPANS
            ):
                part = _Part()
                parts.append(part)
            part.docs.append((index, encoded))
            part.size += size
            part.spans += count
        result = SendResult(rejected=rejected) if rejected else OK
        for part in parts:
            if part.docs:
                result = _merge(result, self._send_docs(part.docs), [index for index, _ in part.docs])
        return result

    def _send_docs(self, docs: list[tuple[int, Encoded]]) -> SendResult:
        """One request for ``docs``; its result's indices count from 0 within ``docs``."""
        groups: dict[bytes, list[bytes]] = {}  # by the resource's encoded attributes
        for _, (resource, spans, _count) in docs:
            group = groups.get(resource)
            if group is None:
                groups[resource] = [spans]
            else:
                group.append(spans)
        body = b"".join(codec.resource_spans_field(r, spans, _SCOPE) for r, spans in groups.items())
        result = self._post(body, len(docs))
        if result.rejected and len(docs) > 1 and result.detail.startswith(("HTTP 400", "HTTP 413")):
            # one bad document may have failed them all: each half on its own keeps the good ones
            half = len(docs) // 2
            first = self._send_docs(docs[:half])
            return _merge(first, self._send_docs(docs[half:]), list(range(half, len(docs))))
        return result

    def _post(self, body: bytes, documents: int) -> SendResult:  # noqa: PLR0911 - one return per outcome
        every = tuple(range(documents))
        compressor = zlib.compressobj(self._gzip_level, zlib.DEFLATED, 31)  # 31: a gzip member
        data = compressor.compress(body) + compressor.flush()
        headers = {"Content-Type": _CONTENT_TYPE, "Content-Encoding": "gzip"}
        if self._credentials is not None:
            credentials = self._credentials()
            if credentials is None:
                return SendResult(retry=every, error="Other", detail="no AWS credentials found")
            headers["Host"] = self._pool.host_header
            request = _Request(self._url, data, headers)
            try:
                _Signer(credentials.get_frozen_credentials(), self._region, self._signing_key).add_auth(
                    request
                )
            except Exception as exc:  # refreshing credentials can fail (e.g. STS unreachable)
                return SendResult(retry=every, error="Other", detail=f"cannot sign: {exc}")
            headers = _without_host(request.headers)
        try:
            response = self._pool.request("POST", self._path, data, headers)
        except TransportError as exc:
            return SendResult(retry=every, error=exc.kind, detail=str(exc))
        status = response.status
        if 200 <= status < 300:
            refused = codec.rejected_spans(response.headers.get("content-type", _CONTENT_TYPE), response.body)
            if refused:
                return SendResult(
                    rejected={"PartialSuccess": min(refused, documents)},
                    detail=f"the endpoint refused {refused} spans",
                )
            return OK
        code = _error_code(response.headers.get("x-amzn-errortype")) or str(status)
        detail = f"HTTP {status} {code}"
        if status >= 500:
            return SendResult(retry=every, error="HTTPCode5XX", detail=detail)
        if status in (408, 429) or is_retryable_code(code):
            return SendResult(retry=every, error="HTTPCode4XX", detail=detail, throttled=status == 429)
        return SendResult(rejected={code: documents}, error="HTTPCode4XX", detail=detail)

    def close(self) -> None:
        self._pool.close()
        encoder = self.encoder
        how = (
            ""
            if encoder.native
            else " (K8SXRAY_NATIVE=false)"
            if BUILT
            else " (k8sxray.otlp._fast is not built)"
        )
        log.info("documents encoded as spans: %d in C, %d in Python%s", encoder.fast, encoder.slow, how)


def _error_code(header: str | None) -> str | None:
    return header.split(":", 1)[0] if header else None


def _merge(total: SendResult, part: SendResult, indices: list[int]) -> SendResult:
    """``total`` plus the result of sending documents ``indices`` of the batch (``part``'s own
    indices count from 0 within them)."""
    if part is OK and total is OK:
        return OK
    rejected = dict(total.rejected)
    for code, count in part.rejected.items():
        rejected[code] = rejected.get(code, 0) + count
    return SendResult(
        retry=total.retry + tuple(indices[i] for i in part.retry),
        rejected=rejected,
        error=part.error or total.error,
        detail=part.detail or total.detail,
        throttled=total.throttled or part.throttled,
    )
