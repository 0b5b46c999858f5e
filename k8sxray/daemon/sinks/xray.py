"""``--sink xray``: PutTraceSegments, signed by botocore, over pooled keep-alive connections.

botocore owns credentials (the default chain, or an assumed role) and SigV4. The request itself is
built here: the generated client's per-call machinery costs about twice the CPU for the same call,
which matters at tens of thousands of segments a second.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SIGNED_HEADERS_BLACKLIST, SigV4Auth
from botocore.awsrequest import AWSRequest

from k8sxray.daemon.sinks import OK, SendResult
from k8sxray.daemon.sinks._http import ConnectionPool, TransportError, proxy_for

log = logging.getLogger(__name__)

_RETRY_CODES = (
    "throttl",
    "toomanyrequests",
    "internal",
    "unavailable",
    "timeout",
    "expired",
    "requesttimetooskewed",
    "slowdown",
)
_CONTENT_TYPE = "application/json"
_NONE_UNPROCESSED = b'{"UnprocessedTraceSegments":[]}'
"""X-Ray's usual answer, recognised without parsing it."""


def endpoint_for(region: str) -> str:
    """The public X-Ray endpoint of a region."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://xray.{region}.{suffix}"


def is_retryable_code(code: str) -> bool:
    """Whether an X-Ray error code describes a passing condition worth retrying."""
    lowered = code.lower()
    return any(word in lowered for word in _RETRY_CODES)


def encode_batch(batch: list[bytes]) -> bytes:
    """The PutTraceSegments body: each document as a JSON string, unchanged.

    One ``json.dumps`` of the whole list (measured cheaper under load than escaping documents one
    by one); a batch holding invalid UTF-8 has the bad bytes replaced by U+FFFD.
    """
    try:
        texts = [doc.decode() for doc in batch]
    except UnicodeDecodeError:
        texts = [doc.decode("utf-8", "replace") for doc in batch]
    return b'{"TraceSegmentDocuments":' + json.dumps(texts).encode() + b"}"


class _Headers(dict[str, tuple[str, str]]):
    """Case-insensitive request headers, one value each: what the signer does with them (test,
    read, delete, set, list) without the ``email.message.Message`` that botocore uses."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__((name.lower(), (name, value)) for name, value in headers.items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def __getitem__(self, name: str) -> str:  # type: ignore[override]
        return super().__getitem__(name.lower())[1]

    def __setitem__(self, name: str, value: str) -> None:  # type: ignore[override]
        super().__setitem__(name.lower(), (name, value))

    def __delitem__(self, name: str) -> None:
        super().__delitem__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        found = super().get(name.lower())
        return default if found is None else found[1]

    def items(self) -> Any:
        return super().values()


class _Request(AWSRequest):  # type: ignore[misc]
    """A request whose body is already bytes (botocore's ``body`` would re-prepare the whole
    request on every access just to hand the same bytes back) and whose headers are a plain dict."""

    def __init__(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        super().__init__("POST", url, data=body)
        self.headers = _Headers(headers)

    @property
    def body(self) -> bytes:
        data: bytes = self.data
        return data


class _Signer(SigV4Auth):  # type: ignore[misc]
    """botocore's SigV4, minus work it repeats on every call.

    The signing key (four HMACs of the secret, date, region and service) changes once a day or when
    the credentials rotate, so it is kept in ``cache``, a one-entry list shared by the sink's threads;
    the headers to sign are selected once per request (not twice) into a plain dict, and the
    (constant) URL path is normalized once. Everything else, the algorithm included, is botocore's.
    """

    _path: tuple[str, str] = ("", "")

    def __init__(self, credentials: Any, region: str, cache: list[tuple[tuple[str, ...], bytes]]) -> None:
        super().__init__(credentials, "xray", region)
        self._cache = cache
        self._headers: tuple[object, Any] | None = None

    def signature(self, string_to_sign: str, request: AWSRequest) -> str:
        date = request.context["timestamp"][0:8]
        key = (self.credentials.secret_key, date, self._region_name, self._service_name)
        cached = self._cache[0] if self._cache else None
        if cached is None or cached[0] != key:
            signing = self._sign(f"AWS4{key[0]}".encode(), date)
            for part in (self._region_name, self._service_name, "aws4_request"):
                signing = self._sign(signing, part)
            cached = (key, signing)
            self._cache[:] = [cached]
        result: str = self._sign(cached[1], string_to_sign, hex=True)
        return result

    def _normalize_url_path(self, path: str) -> str:
        known = _Signer._path
        if known[0] != path:
            known = _Signer._path = (path, super()._normalize_url_path(path))
        return known[1]

    def headers_to_sign(self, request: AWSRequest) -> Any:
        memo = self._headers
        if memo is not None and memo[0] is request:
            return memo[1]
        headers: Any = _SignedHeaders()
        for name, value in request.headers.items():
            lname = name.lower()
            if lname not in SIGNED_HEADERS_BLACKLIST:
                headers.setdefault(lname, []).append(value)
        if "host" not in headers:  # the sink always sets Host; botocore derives it otherwise
            headers = super().headers_to_sign(request)
        self._headers = (request, headers)
        return headers


class _SignedHeaders(dict[str, list[str]]):
    """The headers to sign, lower-cased, as botocore's signer reads them (names, ``get_all``), in a
    plain dict instead of an ``email.message.Message``."""

    def get_all(self, name: str) -> list[str]:
        return self.get(name, [])


class XRaySink:
    """Sends batches to X-Ray's PutTraceSegments."""

    name = "xray"
    local_sampling = False  # sampling calls are forwarded to X-Ray, signed
    check_documents = False  # X-Ray validates; a refused batch is split to isolate bad documents

    def __init__(
        self,
        credentials: Callable[[], Any],
        region: str,
        endpoint_url: str,
        *,
        proxy: str | None = None,
        verify_ssl: bool = True,
        timeout: float = 5.0,
        connections: int = 8,
        console_token: str | None = None,
    ) -> None:
        self._credentials = credentials
        self._extra = {"X-K8sxray-Token": console_token} if console_token else {}
        self._region = region
        self._url = endpoint_url.rstrip("/") + "/TraceSegments"
        proxy_url = proxy_for(self._url, proxy)
        if proxy_url:
            log.info("calls to %s go through proxy %s", self._url, urlsplit(proxy_url).hostname)
        self._pool = ConnectionPool(
            self._url, proxy=proxy_url, verify=verify_ssl, timeout=timeout, size=connections
        )
        self._path = urlsplit(self._url).path
        self._signing_key: list[tuple[tuple[str, ...], bytes]] = []

    def send(self, batch: list[bytes]) -> SendResult:
        result = self._send_once(batch)
        if result.error == "HTTPCode4XX" and result.rejected and len(batch) > 1:
            return self._bisect(batch)
        return result

    def _bisect(self, batch: list[bytes]) -> SendResult:
        """A 4xx for a whole batch may be one bad document: send halves to keep the good ones."""
        half = len(batch) // 2
        parts = ((0, batch[:half]), (half, batch[half:]))
        retry: list[int] = []
        rejected: dict[str, int] = {}
        for offset, part in parts:
            sub = self.send(part)
            retry.extend(offset + i for i in sub.retry)
            for code, count in sub.rejected.items():
                rejected[code] = rejected.get(code, 0) + count
        return SendResult(
            retry=tuple(retry),
            rejected=rejected,
            error="HTTPCode4XX" if rejected else None,
            detail="split a refused batch to isolate bad documents",
        )

    def _send_once(self, batch: list[bytes]) -> SendResult:  # noqa: PLR0911 - one return per outcome
        every = tuple(range(len(batch)))
        credentials = self._credentials()
        if credentials is None:
            return SendResult(retry=every, error="Other", detail="no AWS credentials found")
        body = encode_batch(batch)
        # Host is given so botocore need not parse the URL for it; the pool writes it itself
        headers = {"Content-Type": _CONTENT_TYPE, "Host": self._pool.host_header, **self._extra}
        request = _Request(self._url, body, headers)
        try:
            _Signer(credentials.get_frozen_credentials(), self._region, self._signing_key).add_auth(request)
        except Exception as exc:  # refreshing credentials can fail (e.g. STS unreachable)
            return SendResult(retry=every, error="Other", detail=f"cannot sign: {exc}")
        try:
            response = self._pool.request("POST", self._path, body, _without_host(request.headers))
        except TransportError as exc:
            return SendResult(retry=every, error=exc.kind, detail=str(exc))
        status = response.status
        data = response.body
        if status == 200:
            return _unprocessed(batch, data)
        code = _error_code(response.headers.get("x-amzn-errortype"), data) or str(status)
        detail = f"HTTP {status} {code}"
        if status >= 500:
            return SendResult(retry=every, error="HTTPCode5XX", detail=detail)
        if status == 429 or is_retryable_code(code):
            return SendResult(retry=every, error="HTTPCode4XX", detail=detail, throttled=True)
        return SendResult(rejected={code: len(batch)}, error="HTTPCode4XX", detail=detail)

    def close(self) -> None:
        self._pool.close()


def _without_host(headers: Any) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name != "Host"}


def _error_code(header: str | None, body: bytes) -> str | None:
    if header:
        return header.split(":", 1)[0]
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict):
        for key in ("__type", "code", "Code"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value.rsplit("#", 1)[-1]
    return None


def _unprocessed(batch: list[bytes], data: bytes) -> SendResult:
    """Map UnprocessedTraceSegments (by segment id) back to positions in the batch."""
    if b"UnprocessedTraceSegments" not in data or data == _NONE_UNPROCESSED:
        return OK
    try:
        failed = json.loads(data).get("UnprocessedTraceSegments") or []
    except (ValueError, AttributeError):
        return OK
    if not failed:
        return OK
    codes: dict[str, str] = {}
    for item in failed:
        if isinstance(item, dict):
            codes[str(item.get("Id"))] = str(item.get("ErrorCode") or "Unknown")
    retry: list[int] = []
    rejected: dict[str, int] = {}
    matched = 0
    for index, doc in enumerate(batch):
        code = codes.get(_segment_id(doc) or "")
        if code is None:
            continue
        matched += 1
        if is_retryable_code(code):
            retry.append(index)
        else:
            rejected[code] = rejected.get(code, 0) + 1
    unmatched = len(failed) - matched
    if unmatched > 0:
        rejected["UnknownSegmentId"] = rejected.get("UnknownSegmentId", 0) + unmatched
    return SendResult(retry=tuple(retry), rejected=rejected, detail=f"{len(failed)} unprocessed segments")


def _segment_id(doc: bytes) -> str | None:
    try:
        value = json.loads(doc).get("id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
