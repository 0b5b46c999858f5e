"""Shared test fixtures: every test starts from an unconfigured k8sxray."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from k8sxray import _config


@pytest.fixture(autouse=True)
def _fresh_config() -> Iterator[None]:
    _config.reset()
    yield
    _config.reset()
