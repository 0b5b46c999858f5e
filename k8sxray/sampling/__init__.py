"""Sampling: which requests are traced.

X-Ray's default rule (1 request a second, then 5%), a fixed rate, local rules from the
SDK's JSON file, or centralized rules polled through the daemon's TCP port.
Importing this package starts nothing; :func:`make_sampler` builds a sampler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._config import Config
    from .sampler import Sampler

__all__ = ["make_sampler"]


def make_sampler(config: Config, *, origin: str | None = None) -> Sampler:
    """The sampler *config* asks for; nothing starts until its first ``decide()``.

    ``origin`` is the segment origin (``AWS::EKS::Container``) that centralized rules
    match on ``ServiceType``; when ``None`` it is asked from the configured plugins
    in the poller thread.
    """
    from .sampler import local_sampler

    local = local_sampler(config.sampling_rules, config.sampling_rate)
    if not config.sampling_central:
        return local
    from .central import CentralSampler

    daemon = config.daemon
    fixed = (config.daemon_tcp.host, config.daemon_tcp.port)

    def address() -> tuple[str, int]:
        if daemon is not None:
            try:
                host, port = daemon.tcp_sockaddr[:2]
                return str(host), int(port)
            except Exception:  # discovery not resolved (yet): let http.client resolve the name
                pass
        return fixed

    def lookup_origin() -> str | None:
        if origin is not None or not config.plugins:
            return origin
        from ..plugins import collect

        return collect(config.plugins).origin

    return CentralSampler(local, address=address, service_name=config.service_name, origin=lookup_origin)
