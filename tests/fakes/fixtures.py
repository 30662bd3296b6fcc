"""Pytest fixtures for the fake provider servers. Import the ``*_fixture``
function into a test module; tests then ask for the fixture by its short name::

    from tests.fakes.fixtures import stability_server_fixture  # noqa: F401

    def test_something(stability_server): ...
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.aimlapi_server import FakeAimlServer
from tests.fakes.pika_server import FakePikaServer
from tests.fakes.pipelet_server import FakePipeletServer
from tests.fakes.stability_server import FakeStabilityServer


@pytest.fixture(name="stability_server")
def stability_server_fixture(settings) -> Iterator[FakeStabilityServer]:
    """A fresh fake Stability server, with the settings pointing at it and no poll floor."""
    with FakeStabilityServer(api_key="sk-test-stability") as fake:
        settings.STABILITY_BASE_URL = fake.base_url
        settings.STABILITY_API_KEY = fake.api_key
        settings.STABILITY_POLL_INTERVAL = 0.0
        yield fake


@pytest.fixture(name="pika_server")
def pika_server_fixture(settings) -> Iterator[FakePikaServer]:
    """A fresh fake Pika, with the settings pointing at it, no poll floor, and
    the safe fetch allowed to reach it (result downloads, image_url jobs)."""
    with FakePikaServer(token="pika-test-token") as fake:
        settings.PIKAPI_BASE_URL = fake.base_url
        settings.PIKAPI_BEARER_TOKEN = fake.token
        settings.PIKA_POLL_INTERVAL = 0.0
        settings.SAFE_FETCH_ALLOW = (fake.address,)
        yield fake


@pytest.fixture(name="pipelet_server")
def pipelet_server_fixture(settings) -> Iterator[FakePipeletServer]:
    """A fresh fake Pipelet, with the settings pointing at it, no poll floor,
    the base64 output, and the safe fetch allowed to reach it (binary results)."""
    with FakePipeletServer(token="pl-test-token") as fake:
        settings.PIPELET_BASE_URL = fake.base_url
        settings.PIPELET_API_KEY = fake.token
        settings.PIPELET_POLL_INTERVAL = 0.0
        settings.PIPELET_OUTPUT = "base64"
        settings.SAFE_FETCH_ALLOW = (fake.address,)
        yield fake


@pytest.fixture(name="aiml_server")
def aiml_server_fixture(settings) -> Iterator[FakeAimlServer]:
    """A fresh fake AI/ML API (Kling), with the settings pointing at it, no poll
    floor, the current endpoint, and the safe fetch allowed to reach it (result downloads)."""
    with FakeAimlServer(key="aiml-test-key") as fake:
        settings.AIMLAPI_BASE_URL = fake.base_url
        settings.AIMLAPI_KEY = fake.key
        settings.AIMLAPI_POLL_INTERVAL = 0.0
        settings.AIMLAPI_LEGACY_ENDPOINT = False
        settings.SAFE_FETCH_ALLOW = (fake.address,)
        yield fake
