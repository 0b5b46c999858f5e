"""The daemon's TCP port: the SDKs' two sampling calls, forwarded to X-Ray or answered locally.

The SDKs' centralized samplers send ``POST /GetSamplingRules`` and ``POST /SamplingTargets`` unsigned to
the daemon's TCP port. :class:`SamplingProxy` forwards exactly those two calls, signed with SigV4
(service ``xray``) using the daemon's credentials, and refuses everything else: unlike AWS's daemon, it
never lends the node's credentials to an arbitrary X-Ray API path. :class:`LocalSamplingServer` serves
the same two calls from :mod:`k8sxray.daemon.local_sampling` when no X-Ray is behind the daemon.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
import urllib.request
from http import HTTPStatus
from typing import Any

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.httpsession import get_cert_path

from ._served import QuietHandler, QuietServer, Served
from .local_sampling import LocalSampling

log = logging.getLogger(__name__)

ALLOWED_PATHS = frozenset({"/GetSamplingRules", "/SamplingTargets"})
"""The only paths served: what the SDKs' centralized samplers call (botocore's X-Ray model)."""

MAX_BODY = 1 << 20
"""Largest request body accepted (bytes); sampling calls are a few KiB at most."""

MAX_RESPONSE = 8 << 20
"""Largest upstream answer relayed back (bytes)."""

MAX_CONNECTIONS = 64
"""Concurrent client connections served; more are closed at once."""

_CLIENT_TIMEOUT = 15.0  # seconds a client connection may sit idle or half-sent
_CREDENTIALS_RETRY = 5.0  # seconds between attempts to find credentials after none were found
_LOG_EVERY = 60.0  # seconds between two warnings about the same kind of failure
_RELAYED_HEADERS = ("Content-Type", "x-amzn-RequestId", "x-amzn-ErrorType")


class _Warner:
    """Logs a warning per kind at most once per interval (a sampler retries every few seconds)."""

    def __init__(self, every: float = _LOG_EVERY) -> None:
        self._every = every
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def warn(self, kind: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._every:
                return
            self._last[kind] = now
        log.warning(msg, *args)


def _proxy_url(endpoint: str, proxy_address: str | None) -> str | None:
    """The proxy to use for ``endpoint``: the explicit one, else HTTPS_PROXY/HTTP_PROXY unless NO_PROXY."""
    if proxy_address:
        return proxy_address if "://" in proxy_address else f"http://{proxy_address}"
    parts = urllib.parse.urlsplit(endpoint)
    proxies = urllib.request.getproxies_environment()
    chosen = proxies.get(parts.scheme)
    if not chosen or urllib.request.proxy_bypass(parts.netloc):
        return None
    return chosen


def _pool(endpoint: str, proxy_address: str | None, verify: bool | str) -> urllib3.PoolManager:
    common: dict[str, Any] = {"num_pools": 2, "maxsize": 4}
    if verify is False:
        common["cert_reqs"] = "CERT_NONE"
    else:
        common["ca_certs"] = verify if isinstance(verify, str) else get_cert_path(True)
    proxy = _proxy_url(endpoint, proxy_address)
    if proxy is None:
        return urllib3.PoolManager(**common)
    parsed = urllib3.util.parse_url(proxy)
    headers = None
    if parsed.auth:
        headers = urllib3.make_headers(proxy_basic_auth=urllib.parse.unquote(parsed.auth))
        proxy = parsed._replace(auth=None).url
    return urllib3.ProxyManager(proxy, proxy_headers=headers, **common)


def _error_body(message: str) -> bytes:
    return json.dumps({"message": message}).encode()


class _Reply:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {"Content-Type": "application/json"}


class SamplingProxy(Served):
    """Serves the sampling proxy on ``bind`` (TCP) in a background thread.

    ``endpoint_url`` defaults to ``https://xray.<region>.amazonaws.com``; ``proxy_address`` (an HTTP
    proxy, as the official daemon's ``ProxyAddress``) wins over ``HTTPS_PROXY``/``NO_PROXY``.
    ``timeout`` bounds each upstream call; past it the client gets a 504. ``verify_ssl=False`` skips
    certificate checks (the official daemon's ``NoVerifySSL``); otherwise the CA bundle is the session's
    (``AWS_CA_BUNDLE``/``ca_bundle``) or botocore's.
    """

    def __init__(
        self,
        bind: tuple[str, int],
        session: Any,
        region: str,
        endpoint_url: str | None = None,
        proxy_address: str | None = None,
        *,
        timeout: float = 10.0,
        verify_ssl: bool = True,
    ) -> None:
        super().__init__()
        self._bind = bind
        self._session = session
        self._region = region
        self._endpoint = (endpoint_url or f"https://xray.{region}.amazonaws.com").rstrip("/")
        self._proxy_address = proxy_address
        self._verify_ssl = verify_ssl
        self._timeout = urllib3.Timeout(connect=min(timeout, 3.0), read=timeout)
        self._http: urllib3.PoolManager | None = None
        self._creds: Credentials | None = None
        self._creds_checked = float("-inf")
        self._creds_lock = threading.Lock()
        self._warner = _Warner()

    def start(self) -> None:
        """Binds the TCP port and serves in a daemon thread; raises OSError if the port is taken."""
        if self._server is not None:
            return
        verify: bool | str = False
        if self._verify_ssl:
            verify = self._session.get_config_variable("ca_bundle") or True
        else:
            # asked for explicitly (NoVerifySSL); warn once here rather than on every call
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            log.warning("sampling proxy: TLS certificates of %s are not verified", self._endpoint)
        self._http = _pool(self._endpoint, self._proxy_address, verify)
        self._serve(_Server(self._bind, self), "k8sxray-sampling-proxy")
        log.info("sampling proxy listening on %s:%d, forwarding to %s", *self.address, self._endpoint)

    def close(self) -> None:
        """Stops serving and closes the listening socket and upstream connections."""
        if self._stop() and self._http is not None:
            self._http.clear()

    # -- forwarding ---------------------------------------------------------------------------------

    def _credentials(self) -> ReadOnlyCredentials | None:
        with self._creds_lock:
            if self._creds is None:
                now = time.monotonic()
                if now - self._creds_checked < _CREDENTIALS_RETRY:
                    return None
                self._creds_checked = now
                self._creds = self._session.get_credentials()
            if self._creds is None:
                return None
        frozen: ReadOnlyCredentials = self._creds.get_frozen_credentials()
        return frozen

    def forward(self, path: str, body: bytes, content_type: str | None) -> _Reply:
        """Signs and sends one allowed call upstream; never raises."""
        try:
            creds = self._credentials()
        except Exception as exc:  # botocore's chain can raise many things (bad profile, STS errors)
            self._warner.warn("credentials", "sampling proxy: cannot load AWS credentials: %s", exc)
            return _Reply(502, _error_body("the daemon could not load AWS credentials"))
        if creds is None:
            self._warner.warn("credentials", "sampling proxy: no AWS credentials found; answering 502")
            return _Reply(502, _error_body("the daemon has no AWS credentials"))
        url = self._endpoint + path
        request = AWSRequest(
            method="POST", url=url, data=body, headers={"Content-Type": content_type or "application/json"}
        )
        SigV4Auth(creds, "xray", self._region).add_auth(request)
        headers = {str(k): str(v) for k, v in request.headers.items()}
        assert self._http is not None
        try:
            response = self._http.request(
                "POST",
                url,
                body=body,
                headers=headers,
                retries=False,
                redirect=False,
                timeout=self._timeout,
                preload_content=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:  # a subclass of ConnectTimeoutError
            self._warner.warn("upstream", "sampling proxy: cannot reach X-Ray at %s: %s", self._endpoint, exc)
            return _Reply(502, _error_body("the daemon cannot reach X-Ray"))
        except urllib3.exceptions.TimeoutError:
            self._warner.warn("timeout", "sampling proxy: X-Ray did not answer %s in time", path)
            return _Reply(504, _error_body("X-Ray did not answer in time"))
        except urllib3.exceptions.HTTPError as exc:
            self._warner.warn("upstream", "sampling proxy: cannot reach X-Ray at %s: %s", self._endpoint, exc)
            return _Reply(502, _error_body("the daemon cannot reach X-Ray"))
        return self._relay(response, path)

    def _relay(self, response: urllib3.BaseHTTPResponse, path: str) -> _Reply:
        try:
            data = response.read(MAX_RESPONSE + 1)
        except urllib3.exceptions.TimeoutError:
            response.close()
            self._warner.warn("timeout", "sampling proxy: X-Ray did not answer %s in time", path)
            return _Reply(504, _error_body("X-Ray did not answer in time"))
        except urllib3.exceptions.HTTPError as exc:
            response.close()
            self._warner.warn("upstream", "sampling proxy: broken answer from X-Ray: %s", exc)
            return _Reply(502, _error_body("broken answer from X-Ray"))
        if len(data) > MAX_RESPONSE:
            response.close()
            return _Reply(502, _error_body("answer from X-Ray too large"))
        response.release_conn()
        if response.status >= 400:
            self._warner.warn(
                f"status{response.status}",
                "sampling proxy: X-Ray answered %s with HTTP %d: %s",
                path,
                response.status,
                response.headers.get("x-amzn-ErrorType", ""),
            )
        headers = {h: v for h in _RELAYED_HEADERS if (v := response.headers.get(h)) is not None}
        return _Reply(response.status, data, headers)


class LocalSamplingServer(Served):
    """Serves the two sampling calls on ``bind`` (TCP) from ``sampling``, with no X-Ray behind it."""

    def __init__(self, bind: tuple[str, int], sampling: LocalSampling) -> None:
        super().__init__()
        self._bind = bind
        self.sampling = sampling

    def start(self) -> None:
        """Binds the TCP port and serves in a daemon thread; raises OSError if the port is taken."""
        if self._server is not None:
            return
        self._serve(_Server(self._bind, self), "k8sxray-local-sampling")
        names = ", ".join(rule["RuleName"] for rule in self.sampling.rules)
        log.info("answering sampling calls on %s:%d from local rules: %s", *self.address, names)

    def close(self) -> None:
        """Stops serving and closes the listening socket."""
        self._stop()

    def forward(self, path: str, body: bytes, content_type: str | None) -> _Reply:
        """The local answer to one allowed call; never raises."""
        status, answer, error_type = self.sampling.answer(path, body)
        headers = {"Content-Type": "application/json"}
        if error_type:
            headers["x-amzn-ErrorType"] = error_type
        return _Reply(status, json.dumps(answer).encode(), headers)


class _Server(QuietServer):
    label = "sampling proxy"

    def __init__(self, bind: tuple[str, int], proxy: SamplingProxy | LocalSamplingServer) -> None:
        self.proxy = proxy
        self._active = 0
        self._active_lock = threading.Lock()
        super().__init__(bind, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            if self._active >= MAX_CONNECTIONS:
                self.shutdown_request(request)
                return
            self._active += 1
        try:
            super().process_request(request, client_address)
        except Exception:
            self._done()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self) -> None:
        with self._active_lock:
            self._active -= 1


class _Handler(QuietHandler):
    server: _Server
    server_version = "k8sxray-sampling-proxy"
    timeout = _CLIENT_TIMEOUT

    def _send(self, reply: _Reply, close: bool = False) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _refuse(self, status: int, message: str, **headers: str) -> None:
        reply = _Reply(status, _error_body(message))
        reply.headers.update(headers)
        self._send(reply, close=True)  # the request body, if any, is left unread

    def _body_length(self) -> int | None:
        """The declared body length, or None after answering an error."""
        if self.headers.get("Transfer-Encoding"):
            self._refuse(411, "send the body with a Content-Length")
            return None
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return 0
        if len(set(values)) != 1 or not values[0].strip().isdigit():
            self._refuse(400, "bad Content-Length")
            return None
        length = int(values[0])
        if length > MAX_BODY:
            self._refuse(413, f"body larger than {MAX_BODY} bytes")
            return None
        return length

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "HTTP/0.9 is not supported")
            return False
        return True

    def do_POST(self) -> None:
        if self.path not in ALLOWED_PATHS:
            self._refuse(404, "only POST /GetSamplingRules and POST /SamplingTargets are served here")
            return
        length = self._body_length()
        if length is None:
            return
        body = self.rfile.read(length)
        if len(body) < length:  # the client went away mid-body
            self.close_connection = True
            return
        try:
            reply = self.server.proxy.forward(self.path, body, self.headers.get("Content-Type"))
        except Exception:
            log.exception("sampling proxy: unexpected error forwarding %s", self.path)
            reply = _Reply(500, _error_body("internal error in the sampling proxy"))
        self._send(reply)

    def _not_allowed(self) -> None:
        if self.path in ALLOWED_PATHS:
            self._refuse(405, "only POST is allowed here", Allow="POST")
        else:
            self._refuse(404, "only POST /GetSamplingRules and POST /SamplingTargets are served here")

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = _not_allowed

    def do_CONNECT(self) -> None:
        self._refuse(403, "this is not a general-purpose proxy")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests (answered by the base class) get the same short JSON and a closed socket."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self.log_error("code %d, message %s", code, message)
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # answer with a status line even to an unparsable request
        self._send(_Reply(code, _error_body(message or phrase)), close=True)


__all__ = ["ALLOWED_PATHS", "MAX_BODY", "LocalSamplingServer", "SamplingProxy"]
