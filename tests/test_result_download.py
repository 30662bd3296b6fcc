"""results.download_video: a provider's result URL saved through the safe fetch,
capped, checked, and never left half-written."""

from __future__ import annotations

import socket

import pytest

from jobs.creation import create_upload
from providers import results
from providers.base import ProviderError
from tests.factories import UserFactory, make_job, photo_bytes
from tests.fakes.fixtures import pika_server_fixture  # noqa: F401 (the pika_server fixture)
from tests.pipeline_helpers import advance

pytestmark = pytest.mark.django_db


@pytest.fixture
def result_url(pika_server) -> str:
    owner = UserFactory()
    upload = create_upload(owner=owner, source=photo_bytes(), source_url=f"{pika_server.base_url}/images/photo.png")
    job = advance(make_job(owner, upload=upload, provider="pika", prompt="x"))
    return f"{pika_server.base_url}/results/{job.provider_job_id}.mp4"


def test_a_result_is_saved_whole_and_playable_with_nothing_left_beside_it(result_url, tmp_path):
    path = tmp_path / "out" / "video.mp4"
    size = results.download_video(result_url, path, max_bytes=10_000_000, deadline=30)
    assert size == path.stat().st_size > 1000
    assert results.video_problem(path) == ""
    assert sorted(p.name for p in path.parent.iterdir()) == ["video.mp4"]


def test_a_result_over_the_cap_is_refused_and_leaves_no_file(result_url, tmp_path):
    folder = tmp_path / "downloads"
    with pytest.raises(ProviderError) as caught:
        results.download_video(result_url, folder / "video.mp4", max_bytes=1000, deadline=30, label="Pika")
    assert (caught.value.code, caught.value.retryable) == ("result_unavailable", False)
    assert "larger than" in caught.value.message
    assert list(folder.iterdir()) == []


def test_a_result_host_that_is_down_is_worth_another_try(settings, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.SAFE_FETCH_ALLOW = (f"127.0.0.1:{port}",)
    with pytest.raises(ProviderError) as caught:
        results.download_video(f"http://127.0.0.1:{port}/v.mp4", tmp_path / "downloads" / "v.mp4", deadline=5)
    assert (caught.value.code, caught.value.retryable) == ("result_unreachable", True)
    assert list((tmp_path / "downloads").iterdir()) == []
