"""AWS plumbing for the daemon: a botocore session, its region, credentials and an assumed role."""

from __future__ import annotations

import logging
from typing import Any

import botocore.session
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    DeferredRefreshableCredentials,
)

log = logging.getLogger(__name__)


class _AssumedRole(CredentialProvider):  # type: ignore[misc]
    """Credentials of ``role_arn``, assumed with the default chain and refreshed before expiry."""

    METHOD = "k8sxray-assume-role"
    CANONICAL_NAME = "k8sxray-assume-role"

    def __init__(self, role_arn: str, region: str | None) -> None:
        super().__init__()
        self._role_arn = role_arn
        self._region = region

    def load(self) -> Any:
        plain = botocore.session.Session()  # the default chain, without this provider
        source = plain.get_credentials()
        if source is None:
            return None

        def client_creator(service: str, **kwargs: Any) -> Any:
            kwargs.setdefault("region_name", self._region)
            return plain.create_client(service, **kwargs)

        fetcher = AssumeRoleCredentialFetcher(
            client_creator=client_creator,
            source_credentials=source,
            role_arn=self._role_arn,
            extra_args={"RoleSessionName": "k8sxray-daemon"},
        )
        return DeferredRefreshableCredentials(method=self.METHOD, refresh_using=fetcher.fetch_credentials)


def make_session(role_arn: str | None, region: str | None) -> botocore.session.Session:
    """A botocore session using the default chain, or the assumed role when one is named."""
    session = botocore.session.Session()
    if region:
        session.set_config_variable("region", region)
    if role_arn:
        resolver = session.get_component("credential_provider")
        resolver.providers.insert(0, _AssumedRole(role_arn, region))
    return session


def metadata_region(session: botocore.session.Session, timeout: float = 1.0) -> str | None:
    """The region of the EC2 instance (or EKS node) from instance metadata (IMDSv2), or None.

    botocore's settings apply, e.g. ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` and
    ``AWS_EC2_METADATA_DISABLED``.
    """
    config = {}
    for name in ("ec2_metadata_service_endpoint", "ec2_metadata_service_endpoint_mode"):
        value = session.get_config_variable(name)
        if value:
            config[name] = value
    try:
        from botocore.utils import InstanceMetadataRegionFetcher

        fetcher = InstanceMetadataRegionFetcher(timeout=timeout, num_attempts=1, config=config)
        region = fetcher.retrieve_region()
    except Exception as exc:
        log.debug("no region from instance metadata: %s", exc)
        return None
    return region if isinstance(region, str) and region else None
