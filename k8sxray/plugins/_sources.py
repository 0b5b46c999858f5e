"""Where the Kubernetes plugin reads from: real paths by default, fixtures in tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import _env

if TYPE_CHECKING:
    from ._kubeapi import ApiSettings

SERVICE_ACCOUNT_DIR = _env.SERVICE_ACCOUNT_DIR


class Sources:
    """Where each source lives: real paths by default, fixtures in tests.

    A plain class, not a dataclass: importing this module must stay nearly free outside Kubernetes.
    """

    __slots__ = ("api", "cgroup", "hostname", "mountinfo", "service_account_dir")

    def __init__(
        self,
        *,
        cgroup: str = "/proc/self/cgroup",
        mountinfo: str = "/proc/self/mountinfo",
        service_account_dir: str = SERVICE_ACCOUNT_DIR,
        hostname: Callable[[], str | None] | None = None,
        api: ApiSettings | None = None,
    ) -> None:
        self.cgroup = cgroup
        self.mountinfo = mountinfo
        self.service_account_dir = service_account_dir
        self.hostname = hostname
        """Returns the Pod name fallback; ``None``: the real hostname."""
        self.api = api
        """API location and credentials; ``None``: from ``KUBERNETES_SERVICE_HOST`` and the account dir."""
