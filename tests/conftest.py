"""Shared test fixtures: every test starts from an unconfigured k8sxray."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from k8sxray import _config

# Property tests check behaviour, not speed: on a loaded two-core machine generating examples (or
# one example's real socket round trip) can take seconds, which must not fail a test.
settings.register_profile("k8sxray", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("k8sxray")


@pytest.fixture(autouse=True)
def _fresh_config() -> Iterator[None]:
    _config.reset()
    yield
    _config.reset()


@pytest.fixture(autouse=True, scope="session")
def _close_sdk_emitter() -> Iterator[None]:
    """The official SDK opens its global recorder's UDP socket when ``aws_xray_sdk.core`` is
    imported (by moto's X-Ray backend, or by the SDK tests) and never closes it."""
    yield
    core = sys.modules.get("aws_xray_sdk.core")
    if core is not None:
        core.xray_recorder.emitter._socket.close()
