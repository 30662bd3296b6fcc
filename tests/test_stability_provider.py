"""The Stability client against the fake Stability server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import av
import pytest
from PIL import Image

from providers.base import GenerationRequest, PollContext, ProviderError
from providers.stability import StabilityProvider
from tests.fakes.fixtures import stability_server_fixture  # noqa: F401 (the stability_server fixture)
from tests.fakes.stability_server import FakeStabilityServer


def make_png(path: Path, size: tuple[int, int] = (1024, 576)) -> Path:
    Image.new("RGB", size, (30, 120, 200)).save(path, "PNG")
    return path


@pytest.fixture
def generation(tmp_path) -> GenerationRequest:
    return GenerationRequest(
        job_id="job-1",
        image_path=make_png(tmp_path / "input.png"),
        width=1024,
        height=576,
        seed=4242,
        cfg_scale=2.5,
        motion_bucket_id=90,
    )


@pytest.fixture
def context(tmp_path) -> PollContext:
    return PollContext(video_path=tmp_path / "out" / "video.mp4", poster_path=tmp_path / "out" / "poster.jpg")


def leftovers(context: PollContext) -> list[Path]:
    folder = context.video_path.parent
    return sorted(folder.iterdir()) if folder.exists() else []


def test_submit_sends_multipart_with_the_documented_fields_and_the_bearer_key(stability_server, generation):
    StabilityProvider().submit(generation)

    [sent] = stability_server.submits
    assert sent.path == "/v2beta/image-to-video"
    assert sent.header("authorization") == "Bearer sk-test-stability"
    assert sent.header("content-type").startswith("multipart/form-data; boundary=")
    assert sent.form == {"seed": "4242", "cfg_scale": "2.5", "motion_bucket_id": "90"}
    image = sent.files["image"]
    assert (image["width"], image["height"], image["format"]) == (1024, 576, "PNG")
    assert image["content_type"] == "image/png"
    assert image["size"] == generation.image_path.stat().st_size


def test_submit_returns_the_provider_id(stability_server, generation):
    provider_id = StabilityProvider().submit(generation)

    assert len(provider_id) == 64
    assert stability_server.job(provider_id).seed == 4242


def test_submit_refuses_an_image_of_an_unsupported_size_without_calling_stability(
    stability_server, generation, tmp_path
):
    odd = make_png(tmp_path / "odd.png", (800, 600))
    request = GenerationRequest(**{**generation.__dict__, "image_path": odd})

    with pytest.raises(ProviderError) as caught:
        StabilityProvider().submit(request)

    assert caught.value.code == "invalid_request" and not caught.value.retryable
    assert stability_server.requests == []


def test_a_400_from_stability_is_a_non_retryable_invalid_request_carrying_its_errors(stability_server, generation):
    request = GenerationRequest(**{**generation.__dict__, "motion_bucket_id": 300})

    with pytest.raises(ProviderError) as caught:
        StabilityProvider().submit(request)

    error = caught.value
    assert (error.code, error.retryable, error.status) == ("invalid_request", False, 400)
    assert "motion_bucket_id: must be between 1 and 255" in error.message
    assert '"errors"' in error.detail


def test_poll_of_a_job_still_running_is_running(stability_server, generation, context):
    stability_server.script.never_finish = True
    provider = StabilityProvider()
    provider_id = provider.submit(generation)

    state = provider.poll(provider_id, context)

    assert state.state == "running"
    assert state.progress is None
    assert state.message.startswith("Generating…")
    assert "in-progress" in state.message
    assert not context.video_path.exists()


def test_poll_of_a_finished_job_writes_a_decodable_mp4_and_reports_seed_and_finish_reason(
    stability_server, generation, context
):
    stability_server.script.finish_after_polls = 1
    provider = StabilityProvider()
    provider_id = provider.submit(generation)

    assert provider.poll(provider_id, context).state == "running"
    state = provider.poll(provider_id, context)

    assert state.state == "succeeded"
    assert state.finish_reason == "SUCCESS"
    assert state.seed == 4242
    with av.open(str(context.video_path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (1024, 576)
        assert next(container.decode(stream)) is not None
    assert leftovers(context) == [context.video_path]
    [_, fetch] = stability_server.polls
    assert fetch.header("accept") == "video/*"
    assert fetch.header("authorization") == "Bearer sk-test-stability"


def test_polling_a_finished_job_again_rewrites_the_same_video(stability_server, generation, context):
    provider = StabilityProvider()
    provider_id = provider.submit(generation)

    first = provider.poll(provider_id, context)
    size = context.video_path.stat().st_size
    second = provider.poll(provider_id, context)

    assert first.state == second.state == "succeeded"
    assert context.video_path.stat().st_size == size
    assert leftovers(context) == [context.video_path]


def test_a_429_on_submit_is_retryable_with_the_retry_after(stability_server, generation):
    stability_server.script.fail_next(429, endpoint="submit", retry_after=7)

    with pytest.raises(ProviderError) as caught:
        StabilityProvider().submit(generation)

    error = caught.value
    assert (error.code, error.retryable, error.retry_after) == ("rate_limited", True, 7.0)
    assert len(stability_server.submits) == 1, "the client must not sleep and retry by itself"


def test_a_429_on_poll_is_retryable_with_the_retry_after(stability_server, generation, context):
    provider = StabilityProvider()
    provider_id = provider.submit(generation)
    stability_server.script.fail_next(429, endpoint="result", retry_after=3)

    with pytest.raises(ProviderError) as caught:
        provider.poll(provider_id, context)

    assert (caught.value.code, caught.value.retryable, caught.value.retry_after) == ("rate_limited", True, 3.0)
    assert provider.poll(provider_id, context).state == "succeeded"


def test_polling_faster_than_the_floor_is_answered_429_with_the_time_left(stability_server, generation, context):
    stability_server.script.never_finish = True
    stability_server.script.min_interval = 5
    provider = StabilityProvider()
    provider_id = provider.submit(generation)

    assert provider.poll(provider_id, context).state == "running"
    with pytest.raises(ProviderError) as caught:
        provider.poll(provider_id, context)

    assert caught.value.code == "rate_limited"
    assert 4 < caught.value.retry_after <= 5
    assert stability_server.job(provider_id).floor_violations == 1


def test_a_500_on_submit_is_an_unknown_outcome_never_sent_again(stability_server, generation):
    stability_server.script.fail_next(500, endpoint="submit")
    with pytest.raises(ProviderError) as on_submit:
        StabilityProvider().submit(generation)

    assert (on_submit.value.code, on_submit.value.retryable, on_submit.value.status) == (
        "provider_outcome_unknown",
        False,
        500,
    )
    assert len(stability_server.submits) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_on_poll_is_retryable(stability_server, generation, context, status):
    provider = StabilityProvider()
    provider_id = provider.submit(generation)
    stability_server.script.fail_next(status, endpoint="result")
    with pytest.raises(ProviderError) as on_poll:
        provider.poll(provider_id, context)

    assert (on_poll.value.code, on_poll.value.retryable, on_poll.value.status) == ("provider_unavailable", True, status)


def test_content_moderation_is_not_retryable_and_tells_the_user_why(stability_server, generation):
    stability_server.script.content_moderation = True

    with pytest.raises(ProviderError) as caught:
        StabilityProvider().submit(generation)

    error = caught.value
    assert (error.code, error.retryable, error.status) == ("content_moderation", False, 403)
    assert error.message == (
        "Stability refused this image under its content policy; no credits were charged. Try a different image."
    )


def test_a_content_filtered_result_is_a_failed_state_and_no_video(stability_server, generation, context):
    stability_server.script.finish_reason = "CONTENT_FILTERED"
    provider = StabilityProvider()
    provider_id = provider.submit(generation)

    state = provider.poll(provider_id, context)

    assert state.state == "failed"
    assert state.error_code == "content_filtered"
    assert state.finish_reason == "CONTENT_FILTERED"
    assert "content filter" in state.error_message
    assert leftovers(context) == []


@pytest.mark.parametrize(
    ("fault", "faststart", "detail"),
    [
        pytest.param("truncate", False, "", id="mp4-without-its-end"),
        # The index comes first, so the cut copy still opens.
        pytest.param("truncate", True, "cut short", id="mp4-cut-after-its-index"),
        pytest.param("cut", False, "interrupted", id="connection-cut"),
    ],
)
def test_a_video_that_arrives_incomplete_is_a_retryable_bad_video_and_leaves_no_file(
    stability_server, generation, context, fault, faststart, detail
):
    stability_server.script.faststart = faststart
    provider = StabilityProvider()
    provider_id = provider.submit(generation)
    stability_server.script.fail_next(fault, endpoint="result")

    with pytest.raises(ProviderError) as caught:
        provider.poll(provider_id, context)

    assert (caught.value.code, caught.value.retryable) == ("bad_video", True)
    assert detail in caught.value.detail
    assert leftovers(context) == []
    assert provider.poll(provider_id, context).state == "succeeded", "fetching again cures it"


def test_an_unknown_id_is_a_failed_state_saying_the_generation_is_gone(stability_server, context):
    state = StabilityProvider().poll("0" * 64, context)

    assert state.state == "failed"
    assert state.error_code == "provider_job_missing"
    assert state.error_message.startswith("Stability no longer knows this job")


def test_another_keys_job_is_not_found(stability_server, context):
    job = stability_server.add_job(key="sk-someone-else")

    state = StabilityProvider().poll(job.id, context)

    assert (state.state, state.error_code) == ("failed", "provider_job_missing")


def test_a_wrong_key_is_a_non_retryable_provider_auth_error(stability_server, generation, settings):
    settings.STABILITY_API_KEY = "sk-wrong"

    with pytest.raises(ProviderError) as caught:
        StabilityProvider().submit(generation)

    error = caught.value
    assert (error.code, error.retryable, error.status) == ("provider_auth", False, 401)
    assert "an operator must check STABILITY_API_KEY" in error.message
    assert "sk-wrong" not in error.message + error.detail


def test_malformed_json_on_submit_is_a_provider_bad_response(stability_server, generation):
    stability_server.script.fail_next("malformed_json", endpoint="submit")

    with pytest.raises(ProviderError) as caught:
        StabilityProvider().submit(generation)

    assert (caught.value.code, caught.value.retryable) == ("provider_bad_response", False)


def test_an_unreachable_server_is_a_retryable_provider_unreachable(settings, generation, context):
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.STABILITY_BASE_URL = f"http://127.0.0.1:{port}"
    settings.STABILITY_API_KEY = "sk-test"
    provider = StabilityProvider()

    with pytest.raises(ProviderError) as on_submit:
        provider.submit(generation)
    with pytest.raises(ProviderError) as on_poll:
        provider.poll("a" * 64, context)

    assert (on_submit.value.code, on_submit.value.retryable) == ("provider_unreachable", True)
    assert (on_poll.value.code, on_poll.value.retryable) == ("provider_unreachable", True)


def test_the_poll_floor_and_enabled_flag_follow_the_settings(settings):
    settings.STABILITY_POLL_INTERVAL = 10.0
    settings.STABILITY_API_KEY = ""
    assert StabilityProvider().min_poll_interval == 10.0
    assert StabilityProvider.min_poll_interval == 10.0
    assert not StabilityProvider.is_enabled()

    settings.STABILITY_POLL_INTERVAL = 0.5
    settings.STABILITY_API_KEY = "sk-x"
    assert StabilityProvider().min_poll_interval == 0.5
    assert StabilityProvider.is_enabled()


def test_the_fake_records_when_each_job_finished_and_was_first_fetched(generation, context, settings):
    start = time.time()
    with FakeStabilityServer(api_key="sk-bench") as fake:
        settings.STABILITY_BASE_URL, settings.STABILITY_API_KEY = fake.base_url, fake.api_key
        fake.script.finish_at = lambda index: start + 0.2 * index
        provider = StabilityProvider()
        ids = [provider.submit(generation) for _ in range(2)]
        time.sleep(max(0.0, start + 0.25 - time.time()))
        states = [provider.poll(provider_id, context).state for provider_id in ids]

        timings = fake.timings()

    assert states == ["succeeded", "succeeded"]
    assert [t["finished_at"] for t in timings] == [start, start + 0.2]
    assert all(t["first_fetched_at"] >= t["finished_at"] for t in timings)
    assert all(t["fetch_latency"] >= 0 for t in timings)


def test_the_fake_serves_many_concurrent_jobs(stability_server):
    import concurrent.futures

    import requests

    from tests.fakes.stability_server import sample_mp4

    sample_mp4(768, 768)  # warm the cache outside the timing
    jobs = [stability_server.add_job(width=768, height=768) for _ in range(200)]
    headers = {"authorization": f"Bearer {stability_server.api_key}", "accept": "video/*"}

    def fetch(job_id: str) -> int:
        with requests.get(f"{stability_server.base_url}/v2beta/image-to-video/result/{job_id}", headers=headers) as r:
            return r.status_code

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        statuses = list(pool.map(fetch, [job.id for job in jobs]))

    assert statuses == [200] * 200
    assert all(job.first_fetched_at is not None for job in jobs)
