"""The X-Ray daemon's UDP wire format, shared by the library's emitter and the daemon.

Each datagram is one header line followed by one segment document (JSON)::

    {"format": "json", "version": 1}\\n{"name": "...", "id": "...", ...}

This module is the only thing the daemon imports from the library.
"""

from __future__ import annotations

HEADER = b'{"format": "json", "version": 1}\n'
"""The exact header line SDKs put in front of every document."""

MAX_DATAGRAM = 65507
"""Largest UDP payload over IPv4 (65,535 - 8 UDP - 20 IP bytes)."""

MAX_DOCUMENT = MAX_DATAGRAM - len(HEADER)
"""Largest document that fits into one datagram behind the header."""

DEFAULT_PORT = 2000
"""The daemon's default UDP (segments) and TCP (sampling proxy) port."""

__all__ = ["DEFAULT_PORT", "HEADER", "MAX_DATAGRAM", "MAX_DOCUMENT"]
