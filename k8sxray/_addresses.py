"""Daemon addresses: the ``AWS_XRAY_DAEMON_ADDRESS`` format, parsed strictly."""

from __future__ import annotations

from typing import NamedTuple


class Address(NamedTuple):
    """A host (name or IP) and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(text: str) -> Address:
    """Parse ``host:port`` (``[v6]:port`` for IPv6); raise ``ValueError`` saying what is wrong."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError("an IPv6 address is written [address]:port")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError("expected host:port")
        if ":" in host:
            raise ValueError("an IPv6 address is written [address]:port")
    if not host or any(ch.isspace() for ch in host):
        raise ValueError("the host is empty or has spaces")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"the port {port_text!r} is not a number from 1 to 65535")
    return Address(host, int(port_text))


def parse_daemon_address(text: str) -> tuple[Address, Address]:
    """Parse ``host:port`` or ``tcp:host:port udp:host:port`` (either order) -> (udp, tcp)."""
    parts = text.split()
    if len(parts) == 1 and not parts[0].startswith(("tcp:", "udp:")):
        address = parse_host_port(parts[0])
        return address, address
    if len(parts) == 2:
        found: dict[str, Address] = {}
        for part in parts:
            kind, _, rest = part.partition(":")
            if kind not in ("tcp", "udp") or kind in found:
                break
            found[kind] = parse_host_port(rest)
        if len(found) == 2:
            return found["udp"], found["tcp"]
    raise ValueError("expected host:port, or tcp:host:port udp:host:port")
