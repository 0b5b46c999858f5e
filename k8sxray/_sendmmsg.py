"""Send many datagrams in one ``sendmmsg(2)`` call, through ctypes (Linux only).

A :class:`Batch` preallocates, once, an array of ``mmsghdr`` whose ``msg_iov`` each point at
their own ``iovec``; sending a burst only joins the datagrams into one buffer and writes each
iovec's address and length with one ``struct.pack_into``. The foreign call releases the GIL,
so the kernel's work can run while other threads hold it. :func:`batch` returns ``None``
where the call is not available; callers then send datagram by datagram.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import struct
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class _IOVec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _MsgHdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class _MMsgHdr(ctypes.Structure):
    _fields_ = (("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint))


_MMSG_SIZE = ctypes.sizeof(_MMsgHdr)
_IOV_SIZE = ctypes.sizeof(_IOVec)
_IOV_FORMAT = "PN"

_function: Callable[..., int] | None = None
_looked_up = False


def _lookup() -> Callable[..., int] | None:
    """libc's ``sendmmsg``, or ``None`` (not Linux, or no such symbol)."""
    global _function, _looked_up
    if not _looked_up:
        _looked_up = True
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                function: Any = libc.sendmmsg
            except (OSError, AttributeError):
                log.debug("k8sxray: sendmmsg is not available; sending datagram by datagram")
            else:
                function.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
                function.restype = ctypes.c_int
                _function = function
    return _function


class Batch:
    """Preallocated message headers for up to *capacity* datagrams per call."""

    def __init__(self, capacity: int, function: Callable[..., int]) -> None:
        self.capacity = capacity
        self.function = function
        self._iovs = (_IOVec * capacity)()
        self._msgs = (_MMsgHdr * capacity)()
        for i in range(capacity):
            header = self._msgs[i].msg_hdr
            header.msg_iov = ctypes.addressof(self._iovs[i])
            header.msg_iovlen = 1
        self._iov_view = memoryview(self._iovs).cast("B")
        self._msgs_address = ctypes.addressof(self._msgs)
        self._formats: dict[int, struct.Struct] = {}
        self._buffers: list[bytes] = []
        self._count = 0

    def send(self, fd: int, datagrams: list[bytes]) -> tuple[int, list[int]]:
        """Send *datagrams* (at most *capacity*) in order; ``(sent, errnos of the failed ones)``.

        A failed datagram is skipped (its errno listed) and the rest are still sent.
        """
        self.prepare(datagrams)
        return self.transmit(fd)

    def prepare(self, datagrams: list[bytes]) -> None:
        """Point the iovecs at *datagrams* (at most *capacity*), joined into one kept buffer."""
        self._count = 0
        self._buffers.clear()
        self.append(datagrams)

    def room(self) -> int:
        """How many more datagrams :meth:`append` can take."""
        return self.capacity - self._count

    def append(self, datagrams: list[bytes]) -> None:
        """Add *datagrams* (at most :meth:`room`) after those already prepared."""
        count = len(datagrams)
        if not count:
            return
        layout = self._formats.get(count)
        if layout is None:
            layout = self._formats[count] = struct.Struct("@" + _IOV_FORMAT * count)
        buffer = b"".join(datagrams)
        pointer = ctypes.c_char_p(buffer)  # points into *buffer*, kept until transmit()
        address = ctypes.cast(pointer, ctypes.c_void_p).value or 0
        fields: list[int] = []
        push = fields.append
        for datagram in datagrams:
            size = len(datagram)
            push(address)
            push(size)
            address += size
        layout.pack_into(self._iov_view, self._count * _IOV_SIZE, *fields)
        self._buffers.append(buffer)
        self._count += count

    def transmit(self, fd: int) -> tuple[int, list[int]]:
        """Send what :meth:`prepare` pointed at; ``(sent, errnos of the failed ones)``."""
        function = self.function
        base = self._msgs_address
        count = self._count
        sent = 0
        failed: list[int] = []
        done = 0
        while done < count:
            result = function(fd, base + done * _MMSG_SIZE, count - done, 0)
            if result > 0:
                sent += result
                done += result
            else:  # the datagram at *done* failed: skip it, as a send() loop would
                failed.append(ctypes.get_errno() if result < 0 else errno.EIO)
                done += 1
        self._buffers.clear()
        self._count = 0
        return sent, failed


def batch(capacity: int) -> Batch | None:
    """A :class:`Batch`, or ``None`` where ``sendmmsg`` cannot be used."""
    function = _lookup()
    if function is None:
        return None
    return Batch(capacity, function)
