"""``--otlp ADDR``: OTLP/HTTP ``POST /v1/traces`` from OpenTelemetry SDKs and collectors.

Each request's spans become X-Ray segment documents (``k8sxray.otlp.segments``) that join the
daemon's buffer beside the UDP ones, so they go wherever the sink sends. Protobuf
(``application/x-protobuf``) and OTLP/JSON (``application/json``), gzip or not; the answer is an
``ExportTraceServiceResponse`` in the request's encoding (with ``partial_success`` when some spans
had invalid ids). Refusals: 400 with a ``google.rpc.Status`` saying why (bad payload, bad gzip),
413 over :data:`MAX_BODY` bytes (X-Ray's own limit, 5 MB, checked after decompression, which stops
there: a small gzip bomb costs nothing), 415 for other content types, 404 for other paths, 405 for
other methods, and 503 with ``Retry-After`` when the buffer cannot hold the documents (OTLP clients
retry it), so that a full buffer loses nothing an SDK still holds.
"""

from __future__ import annotations

import logging
import zlib

from k8sxray.daemon._served import QuietHandler, QuietServer, Served
from k8sxray.daemon.buffer import DOC_OVERHEAD, Buffer
from k8sxray.daemon.stats import Stats
from k8sxray.otlp import codec
from k8sxray.otlp.segments import convert

log = logging.getLogger(__name__)

MAX_BODY = 5 * 1024 * 1024
"""Largest request body taken, uncompressed (and compressed)."""
PATH = "/v1/traces"
_PROTOBUF, _JSON = "application/x-protobuf", "application/json"


class RequestError(Exception):
    """A request refused: HTTP ``status`` and the ``reason`` it is counted under."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def decompress(body: bytes, encoding: str, limit: int = MAX_BODY) -> bytes:
    """The body without its ``Content-Encoding`` (gzip, deflate or none), at most ``limit`` bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise RequestError(415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported")
    inflater = zlib.decompressobj(31 if encoding != "deflate" else 15)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestError(400, "bad_gzip", f"the body is not valid {encoding}: {exc}") from None
    if len(data) > limit:
        raise RequestError(413, "too_large", f"the body is larger than {limit} bytes uncompressed")
    if not inflater.eof:
        raise RequestError(400, "bad_gzip", f"the {encoding} body is truncated")
    return data


class OtlpReceiver(Served):
    """Serves OTLP/HTTP traces on ``bind`` in a background thread."""

    def __init__(self, bind: tuple[str, int], buffer: Buffer, stats: Stats) -> None:
        super().__init__()
        self._bind = bind
        self.buffer = buffer
        self.stats = stats

    def start(self) -> None:
        """Binds and serves; raises OSError if the address is taken."""
        if self._server is None:
            self._serve(_Server(self._bind, self), "k8sxray-otlp")
            host, port = self.address
            shown = f"[{host}]" if ":" in host else host
            log.info("receiving OTLP traces on http://%s:%d%s", shown, port, PATH)

    def close(self) -> None:
        self._stop()

    def handle(self, content_type: str, encoding: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Status, answer body and extra headers for one POST; counts what it refuses."""
        try:
            kind = _media_type(content_type)
            data = decompress(body, encoding)
            spans = codec.decode_json(data) if kind == _JSON else codec.decode_protobuf(data)
        except RequestError as exc:
            return self.refuse(exc, content_type)
        except codec.DecodeError as exc:
            return self.refuse(RequestError(400, "bad_payload", str(exc)), content_type)
        try:
            converted = convert(spans)
        except Exception:  # a bug here must not leave the client without an answer
            log.exception("cannot convert an OTLP request's spans")
            self.stats.add_otlp(refused=("internal_error", 1))
            return 500, codec.status(kind, "the daemon could not convert these spans", code=13), {}
        docs = converted.documents
        nbytes = sum(map(len, docs)) + DOC_OVERHEAD * len(docs)
        if docs and self.buffer.max_bytes - self.buffer.held_bytes < nbytes:
            self.stats.add_otlp(refused=("buffer_full", 1))
            answer = codec.status(kind, "the daemon's buffer is full; retry later", code=14)
            return 503, answer, {"Retry-After": "1"}
        dropped = self.buffer.put_many(docs, nbytes) if docs else 0
        if dropped:
            self.stats.add(dropped=("buffer_full", dropped))
        self.stats.add_otlp(
            spans=converted.spans, documents=len(docs) - dropped, rejected_spans=converted.rejected
        )
        refused = sum(converted.rejected.values())
        if refused:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(converted.rejected.items()))
            return 200, codec.response(kind, refused, f"spans refused: {reasons}"), {}
        return 200, codec.response(kind), {}

    def refuse(self, exc: RequestError, content_type: str) -> tuple[int, bytes, dict[str, str]]:
        self.stats.add_otlp(refused=(exc.reason, 1))
        log.debug("OTLP request refused (%s): %s", exc.reason, exc)
        if exc.status == 415:
            return 415, str(exc).encode(), {"Content-Type": "text/plain; charset=utf-8"}
        return exc.status, codec.status(_media_type(content_type, strict=False), str(exc)), {}


def _media_type(content_type: str, strict: bool = True) -> str:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in (_PROTOBUF, _JSON):
        return kind
    if strict:
        raise RequestError(
            415,
            "unsupported_media_type",
            f"Content-Type {content_type!r} is not supported: use {_PROTOBUF} or {_JSON}",
        )
    return _PROTOBUF


class _Server(QuietServer):
    label = "otlp"
    request_queue_size = 128

    def __init__(self, bind: tuple[str, int], receiver: OtlpReceiver) -> None:
        self.receiver = receiver
        super().__init__(bind, _Handler)


class _Handler(QuietHandler):
    server: _Server
    timeout = 30.0

    def do_POST(self) -> None:
        receiver = self.server.receiver
        if self.path.split("?", 1)[0] != PATH:
            self._drain_and_reply(404, b"not found: OTLP traces go to POST /v1/traces\n")
            return
        try:
            body = self._body()
        except RequestError as exc:
            status, answer, headers = receiver.refuse(exc, self.headers.get("Content-Type", ""))
            self._reply(status, answer, headers, self.headers.get("Content-Type", ""), close=True)
            return
        status, answer, headers = receiver.handle(
            self.headers.get("Content-Type", ""), self.headers.get("Content-Encoding", ""), body
        )
        self._reply(status, answer, headers, self.headers.get("Content-Type", ""))

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise RequestError(400, "bad_request", "bad Content-Length") from None
        if length < 0:
            raise RequestError(400, "bad_request", "bad Content-Length")
        if length > MAX_BODY:
            if length <= 4 * MAX_BODY:  # read it away, so that the client is sure to see the answer
                while length > 0:
                    length -= len(self.rfile.read(min(length, 65536)) or b"\0" * length)
            raise RequestError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
        return self.rfile.read(length)

    def _chunked(self) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise RequestError(400, "bad_request", "bad chunked encoding") from None
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY:
                raise RequestError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
            body += self.rfile.read(size)
            self.rfile.readline(16)

    def _drain_and_reply(self, status: int, text: bytes) -> None:
        self.close_connection = True
        self._reply(status, text, {"Content-Type": "text/plain; charset=utf-8"}, "", close=True)

    def _reply(
        self, status: int, body: bytes, headers: dict[str, str], request_type: str, close: bool = False
    ) -> None:
        self.send_response(status)
        content_type = headers.pop("Content-Type", None) or _media_type(request_type, strict=False)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _not_allowed(self) -> None:
        self._reply(405, b"only POST /v1/traces\n", {"Content-Type": "text/plain; charset=utf-8"}, "", True)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed
