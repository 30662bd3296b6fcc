"""The Pipelet provider class against the fake Pipelet, over real HTTP: what
it sends, how it reads each status, the result in every form, and each failure."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from jobs import media
from providers import data_uri
from providers.base import GenerationRequest, PollContext, ProviderError
from providers.params import ParamError
from providers.pipelet import PipeletProvider
from tests.fakes.fixtures import pipelet_server_fixture  # noqa: F401 (the pipelet_server fixture)
from tests.fakes.pipelet_server import padded_mp4


def png(path: Path, size=(1024, 576), colour=(200, 90, 40)) -> Path:
    Image.new("RGB", size, colour).save(path, "PNG")
    return path


@pytest.fixture
def image(tmp_path) -> Path:
    return png(tmp_path / "frame.png")


def request_for(image: Path, **fields) -> GenerationRequest:
    base = dict(
        job_id="j1",
        image_path=image,
        width=1024,
        height=576,
        seed=7,
        cfg_scale=1.8,
        motion_bucket_id=127,
        prompt="a red fox in the snow",
        extra={"duration": 5, "height": 720, "priority": 0, "higher_quality_with_more_steps": "no"},
    )
    return GenerationRequest(**{**base, **fields})


def context_in(tmp_path) -> PollContext:
    return PollContext(video_path=tmp_path / "out" / "video.mp4", poster_path=tmp_path / "out" / "poster.jpg")


def poll_until_final(provider, handle, context, limit=20):
    states = []
    for _ in range(limit):
        state = provider.poll(handle, context)
        states.append(state)
        if state.state in ("succeeded", "failed"):
            return states
    raise AssertionError(f"not final after {limit} polls: {states[-1]}")


# --- create --------------------------------------------------------------------------


def test_a_create_sends_the_prompt_the_image_as_base64_and_the_size_with_the_bearer_key(pipelet_server, image):
    handle = PipeletProvider().submit(request_for(image))

    [sent] = pipelet_server.creates
    assert sent.path == "/queue/wan22-fast-i2v" and sent.status == 200
    assert sent.headers["authorization"] == "Bearer pl-test-token"
    assert sent.headers["content-type"] == "application/json"
    assert base64.b64decode(sent.body["data_uri"]) == image.read_bytes()
    assert {k: sent.body[k] for k in ("prompt", "duration", "height")} == {
        "prompt": "a red fox in the snow",
        "duration": 5,
        "height": 720,
    }
    assert "priority" not in sent.body and "higher_quality_with_more_steps" not in sent.body
    assert "x-pipelet-webhook" not in sent.headers and "x-pipelet-output" not in sent.headers
    job = pipelet_server.jobs[handle.split(":")[1]]
    assert handle == f"wan22-fast-i2v:{job.id}" and job.image_size == (1024, 576)


def test_the_chosen_model_is_the_queue_the_job_goes_to(pipelet_server, image):
    handle = PipeletProvider().submit(request_for(image, model="wan22-fast-i2v-pro"))

    assert pipelet_server.creates[0].path == "/queue/wan22-fast-i2v-pro"
    assert handle.startswith("wan22-fast-i2v-pro:")


def test_priority_and_more_steps_are_sent_when_asked_for(pipelet_server, image):
    extra = {"duration": 7, "height": 480, "priority": 3, "higher_quality_with_more_steps": "yes"}
    PipeletProvider().submit(request_for(image, extra=extra))

    body = pipelet_server.creates[0].body
    assert (body["duration"], body["height"], body["priority"]) == (7, 480, 3)
    assert body["higher_quality_with_more_steps"] is True


def test_a_tail_image_goes_as_second_image_uri(pipelet_server, image, tmp_path):
    tail = png(tmp_path / "last.png", size=(768, 768), colour=(10, 200, 30))
    handle = PipeletProvider().submit(request_for(image, tail_image_path=tail))

    body = pipelet_server.creates[0].body
    assert base64.b64decode(body["second_image_uri"]) == tail.read_bytes()
    assert pipelet_server.jobs[handle.split(":")[1]].tail_size == (768, 768)


def test_a_webhook_url_goes_in_the_x_pipelet_webhook_header(pipelet_server, image):
    PipeletProvider().submit(request_for(image, webhook_url="https://i2v.example.com/hooks/pipelet/abc"))

    assert pipelet_server.creates[0].headers["x-pipelet-webhook"] == "https://i2v.example.com/hooks/pipelet/abc"


def test_a_model_pipelet_does_not_have_is_never_sent(pipelet_server, image):
    with pytest.raises(ProviderError) as caught:
        PipeletProvider().submit(request_for(image, model="wan22-fast-t2v"))
    assert caught.value.code == "invalid_request" and not pipelet_server.creates


def test_the_fake_refuses_what_pipelets_document_refuses(pipelet_server, image):
    # The rules the provider checks before sending (check_values) are Pipelet's own.
    for extra, said in [
        ({"duration": 6, "height": 720}, "maximum duration for 720p video is 5 seconds"),
        ({"duration": 8, "height": 480}, "maximum duration for 480p video is 7 seconds"),
        ({"duration": 5, "height": 1080}, "we only support 720, 480"),
    ]:
        with pytest.raises(ProviderError) as caught:
            PipeletProvider().submit(request_for(image, extra=extra))
        assert caught.value.code == "invalid_request" and said in caught.value.message


# --- the rules checked before anything is sent ---------------------------------------------


@pytest.mark.parametrize(("height", "duration"), [(720, 5), (720, 1), (480, 7), (480, 6)])
def test_durations_pipelet_makes_pass_the_rules(height, duration):
    PipeletProvider.check_values({"height": height, "duration": duration})


def test_more_than_five_seconds_at_720p_is_refused_naming_what_would_work():
    with pytest.raises(ParamError) as caught:
        PipeletProvider.check_values({"height": 720, "duration": 6})
    assert caught.value.name == "duration"
    assert caught.value.message == ("At 720p Pipelet makes at most 5 s; choose 5 s or less, or 480p for up to 7 s.")


def test_a_height_other_than_720_or_480_is_refused():
    with pytest.raises(ParamError) as caught:
        PipeletProvider.check_values({"height": 1080, "duration": 5})
    assert caught.value.name == "height"


# --- statuses ---------------------------------------------------------------------------


def test_queue_positions_move_then_progress_then_a_decoded_playable_video(pipelet_server, image, tmp_path):
    provider = PipeletProvider()
    handle = provider.submit(request_for(image))
    context = context_in(tmp_path)

    states = poll_until_final(provider, handle, context)

    queued = [s for s in states if s.state == "queued"]
    assert [s.queue_position for s in queued] == [3, 2, 1], "Pipelet's 0-based 2, 1, 0 as our 1-based places"
    assert queued[-1].message == "Waiting in Pipelet's queue (next)"
    running = [s for s in states if s.state == "running"]
    assert [round(s.progress, 3) for s in running] == [round(4 / 24, 3), 0.5, round(20 / 24, 3)]
    assert running[0].message == "Progress: 4/24 Tasks done"
    assert states[-1].state == "succeeded"
    info = media.probe_video(context.video_path)
    assert (info.codec, info.width, info.height) == ("h264", 1280, 720)
    assert [p.headers["authorization"] for p in pipelet_server.polls] == ["Bearer pl-test-token"] * len(states)
    assert pipelet_server.result_fetches[0].headers["authorization"] == "Bearer pl-test-token"


@pytest.mark.parametrize("prefix", [False, True], ids=["bare", "data-uri-prefix"])
@pytest.mark.parametrize("escaped", [False, True], ids=["plain", "escaped-slashes"])
def test_a_large_base64_result_is_decoded_to_the_same_bytes(pipelet_server, image, tmp_path, prefix, escaped):
    video = padded_mp4(6 * 1024 * 1024)
    pipelet_server.script.video = video
    pipelet_server.script.result_prefix = prefix
    pipelet_server.script.escape_slashes = escaped
    pipelet_server.script.queue_positions, pipelet_server.script.progress = [0], [24]
    provider = PipeletProvider()
    context = context_in(tmp_path)

    states = poll_until_final(provider, provider.submit(request_for(image)), context)

    assert states[-1].state == "succeeded"
    assert context.video_path.read_bytes() == video
    assert media.probe_video(context.video_path).frames == 14


def test_with_binary_output_the_presigned_link_is_fetched_without_our_key(pipelet_server, image, tmp_path, settings):
    settings.PIPELET_OUTPUT = "binary"
    provider = PipeletProvider()
    handle = provider.submit(request_for(image, extra={"duration": 7, "height": 480}))
    context = context_in(tmp_path)

    states = poll_until_final(provider, handle, context)

    assert pipelet_server.creates[0].headers["x-pipelet-output"] == "binary"
    assert states[-1].state == "succeeded"
    assert media.probe_video(context.video_path).height == 480
    [download] = [r for r in pipelet_server.requests if r.path.startswith("/s3/")]
    assert "authorization" not in download.headers and download.status == 200


def test_a_failed_job_keeps_pipelets_status_messages_for_staff(pipelet_server, image, tmp_path):
    pipelet_server.script.outcome = "FAILED"
    provider = PipeletProvider()

    final = poll_until_final(provider, provider.submit(request_for(image)), context_in(tmp_path))[-1]

    assert (final.state, final.error_code, final.finish_reason) == ("failed", "provider_failed", "FAILED")
    assert final.error_message.startswith("Pipelet could not make this video. Nothing was charged")
    assert "CUDA out of memory" in final.error_detail and "CUDA" not in final.error_message


def test_a_job_cancelled_at_pipelet_fails_as_cancelled(pipelet_server, image, tmp_path):
    provider = PipeletProvider()
    handle = provider.submit(request_for(image))
    pipelet_server.jobs[handle.split(":")[1]].state = "CANCELLED"

    state = provider.poll(handle, context_in(tmp_path))

    assert (state.state, state.error_code) == ("failed", "provider_cancelled")


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_while_queued_is_agreed_and_after_the_start_is_refused(pipelet_server, image, tmp_path):
    provider = PipeletProvider()
    queued = provider.submit(request_for(image))
    assert provider.poll(queued, context_in(tmp_path)).state == "queued"
    assert provider.cancel(queued) is True
    assert provider.poll(queued, context_in(tmp_path)).error_code == "provider_cancelled"

    started = provider.submit(request_for(image))
    while provider.poll(started, context_in(tmp_path)).state != "running":
        pass
    assert provider.cancel(started) is False
    assert [c.status for c in pipelet_server.cancels] == [204, 409]
    assert all(c.headers["authorization"] == "Bearer pl-test-token" for c in pipelet_server.cancels)


# --- failures -----------------------------------------------------------------------------


def test_a_refused_key_on_a_poll_is_a_failed_state_naming_the_setting(pipelet_server, image, tmp_path, settings):
    provider = PipeletProvider()
    handle = provider.submit(request_for(image))
    settings.PIPELET_API_KEY = "wrong"

    state = provider.poll(handle, context_in(tmp_path))

    assert (state.state, state.error_code) == ("failed", "provider_auth")
    assert "PIPELET_API_KEY" in state.error_message


def test_a_refused_key_on_create_is_final(pipelet_server, image, settings):
    settings.PIPELET_API_KEY = "wrong"
    with pytest.raises(ProviderError) as caught:
        PipeletProvider().submit(request_for(image))
    assert caught.value.code == "provider_auth" and not caught.value.retryable


def test_a_job_pipelet_does_not_know_is_a_failed_state(pipelet_server, tmp_path):
    state = PipeletProvider().poll("wan22-fast-i2v:999", context_in(tmp_path))
    assert (state.state, state.error_code) == ("failed", "provider_job_missing")
    assert state.error_message.startswith("Pipelet no longer knows this job")


def test_a_rate_limited_poll_is_retryable_after_the_time_pipelet_asks(pipelet_server, image, tmp_path):
    provider = PipeletProvider()
    handle = provider.submit(request_for(image))
    pipelet_server.script.fail_next(429, endpoint="status", retry_after=7)

    with pytest.raises(ProviderError) as caught:
        provider.poll(handle, context_in(tmp_path))
    assert (caught.value.code, caught.value.retryable, caught.value.retry_after) == ("rate_limited", True, 7.0)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_server_error_on_create_is_never_sent_again(pipelet_server, image, status):
    pipelet_server.script.fail_next(status, endpoint="create")
    with pytest.raises(ProviderError) as caught:
        PipeletProvider().submit(request_for(image))
    assert caught.value.code == "provider_outcome_unknown" and not caught.value.retryable
    assert len(pipelet_server.creates) == 1


def test_a_server_error_on_a_poll_is_retryable(pipelet_server, image, tmp_path):
    provider = PipeletProvider()
    handle = provider.submit(request_for(image))
    pipelet_server.script.fail_next(500, endpoint="status")
    with pytest.raises(ProviderError) as caught:
        provider.poll(handle, context_in(tmp_path))
    assert caught.value.retryable and caught.value.code == "provider_unavailable"


@pytest.mark.parametrize("endpoint", ["create", "status"])
def test_malformed_json_is_a_bad_response_with_pipelets_words_kept(pipelet_server, image, tmp_path, endpoint):
    provider = PipeletProvider()
    handle = provider.submit(request_for(image)) if endpoint == "status" else None
    pipelet_server.script.fail_next("malformed_json", endpoint=endpoint)
    with pytest.raises(ProviderError) as caught:
        provider.poll(handle, context_in(tmp_path)) if handle else provider.submit(request_for(image))
    assert caught.value.code == "provider_bad_response" and not caught.value.retryable
    assert '"status": ' in caught.value.detail


@pytest.mark.parametrize(
    ("action", "code", "retryable", "said"),
    [
        ("truncated", "bad_video", True, "we will fetch it again"),
        ("bad_base64", "bad_video", False, "could not decode"),
        ("not_mp4", "bad_video", False, "cannot be played"),
        ("malformed_json", "provider_bad_response", False, "could not understand"),
    ],
)
def test_a_broken_result_is_a_clear_error_and_leaves_no_file(
    pipelet_server, image, tmp_path, action, code, retryable, said
):
    pipelet_server.script.queue_positions, pipelet_server.script.progress = [0], [24]
    pipelet_server.script.fail_next(action, endpoint="result")
    provider = PipeletProvider()
    handle = provider.submit(request_for(image))
    context = context_in(tmp_path)
    provider.poll(handle, context), provider.poll(handle, context)

    with pytest.raises(ProviderError) as caught:
        provider.poll(handle, context)

    assert (caught.value.code, caught.value.retryable) == (code, retryable)
    assert said in caught.value.message
    assert not context.video_path.exists() and list(context.video_path.parent.iterdir()) == []
    if retryable:  # fetched again, it is whole
        assert provider.poll(handle, context).state == "succeeded"


# --- the decoder on its own: every JSON spelling of the same video ------------------------------


def test_the_decoder_reads_escapes_whitespace_and_chunks_of_any_size():
    video = bytes(range(256)) * 400
    text = base64.b64encode(video).decode()
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    bodies = [
        json.dumps({"video": {"data_uri": text}}),
        json.dumps({"id": [1, {"x": "\\"}], "video": {"n": None, "data_uri": "data:video/mp4;base64," + text}}),
        json.dumps({"video": {"data_uri": text}}).replace("/", "\\/"),
        json.dumps({"video": {"data_uri": wrapped}}),
        json.dumps({"video": {"data_uri": text}}).replace("+", "\\u002B"),
        json.dumps({"video": {"data_url": text.rstrip("=")}}),
    ]
    for body in bodies:
        raw = body.encode()
        for size in (1, 3, 4096):
            out = io.BytesIO()
            data_uri.extract((raw[i : i + size] for i in range(0, len(raw), size)), out, max_bytes=10**7)
            assert out.getvalue() == video, (body[:60], size)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"video": {"data_uri": "AAAA', "truncated"),
        (b"<html>Bad gateway</html>", "malformed"),
        (b'{"video": {"data_uri": "AA!A"}}', "bad_base64"),
        (b'{"video": {}}', "missing"),
        (b'{"video": {"data_uri": null}}', "missing"),
        (b'{"video": {"data_uri": "data:video/mp4,AAAA"}}', "bad_base64"),
    ],
)
def test_the_decoder_says_what_is_wrong_with_a_body(body, problem):
    with pytest.raises(data_uri.DataUriError) as caught:
        data_uri.extract([body], io.BytesIO(), max_bytes=1000)
    assert caught.value.problem == problem


def test_the_decoder_stops_at_the_size_cap():
    body = json.dumps({"video": {"data_uri": base64.b64encode(bytes(300_000)).decode()}}).encode()
    with pytest.raises(data_uri.DataUriError) as caught:
        data_uri.extract([body], io.BytesIO(), max_bytes=100_000)
    assert caught.value.problem == "too_large"
