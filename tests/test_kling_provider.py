"""Kling through AI/ML API: the protocol, driven through the pipeline against
the fake AI/ML API over real HTTP."""

from __future__ import annotations

import base64
import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from PIL import Image

from jobs import actions, ledger, media
from jobs.models import Job, LedgerEntry
from providers.base import GenerationRequest
from providers.kling import MODELS, KlingProvider, kling_cfg_scale
from tests.factories import UserFactory, make_job, make_upload
from tests.fakes.fixtures import aiml_server_fixture  # noqa: F401 (the aiml_server fixture)
from tests.pipeline_helpers import advance, local_copy, run_until_final

pytestmark = pytest.mark.django_db


def kling_job(owner=None, **params) -> Job:
    owner = owner or UserFactory()
    params.setdefault("prompt", "waves roll in")
    return make_job(owner, upload=params.pop("upload", None) or make_upload(owner), provider="kling", **params)


def decoded_size(data_uri: str) -> tuple[int, int]:
    assert data_uri.startswith("data:image/")
    with Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))) as image:
        return image.size


def assert_failed_and_released(job: Job, code: str) -> None:
    assert job.status == Job.FAILED and job.error_code == code, (job.status, job.error_code, job.error_message)
    assert job.error_message and job.error_detail
    assert LedgerEntry.objects.filter(job=job, kind="release").exists()
    assert ledger.balance_of(job.owner) == 100


# --- end to end ------------------------------------------------------------------


def test_a_kling_job_goes_queued_generating_completed_to_a_playable_video(aiml_server, settings):
    settings.PUBLIC_BASE_URL = ""
    job = advance(kling_job(negative_prompt="blur"))
    assert (job.status, job.status_message) == (Job.SUBMITTED, "Waiting in Kling's queue")
    assert job.provider_job_id in aiml_server.generations

    job = run_until_final(job)

    assert job.status == Job.COMPLETED and job.finish_reason == "SUCCESS"
    info = media.probe_video(local_copy(job.video))
    assert info.codec == "h264" and (info.width, info.height) == (1024, 576)
    [sent] = aiml_server.submits
    assert sent.path == "/v2/video/generations"
    assert sent.headers["authorization"] == "Bearer aiml-test-key"
    body = sent.body
    assert body["model"] == "kling-video/v1/standard/image-to-video"
    assert (body["prompt"], body["negative_prompt"], body["duration"], body["cfg_scale"]) == (
        "waves roll in",
        "blur",
        5,
        0.5,
    )
    assert decoded_size(body["image_url"]) == (1024, 576), "no public address: the frame goes inline"
    assert "tail_image_url" not in body and "dynamic_masks" not in body
    assert [p.query["generation_id"] for p in aiml_server.polls] == [[job.provider_job_id]] * 3
    assert job.provider_response == {"credits_used": 420000}
    assert ledger.balance_of(job.owner) == 100 - 10


def test_the_v2_1_model_gets_an_integer_duration_and_ten_seconds_when_asked(aiml_server):
    job = run_until_final(kling_job(model="kling-video/v2.1/pro/image-to-video", extra_params={"duration": 10}))

    assert job.status == Job.COMPLETED
    assert aiml_server.submits[0].body["duration"] == 10
    assert aiml_server.submits[0].body["model"] == "kling-video/v2.1/pro/image-to-video"


def test_the_legacy_endpoint_setting_sends_both_calls_to_the_spec_files_path(aiml_server, settings):
    settings.AIMLAPI_LEGACY_ENDPOINT = True
    job = run_until_final(kling_job())

    assert job.status == Job.COMPLETED
    assert {r.path for r in aiml_server.submits + aiml_server.polls} == {"/v2/generate/video/kling/generation"}


def test_the_older_waiting_and_active_statuses_are_understood(aiml_server):
    aiml_server.script.statuses = ["waiting", "active", "completed"]
    job = advance(kling_job())
    assert job.status_message == "Waiting in Kling's queue"

    job = run_until_final(job)

    assert job.status == Job.COMPLETED
    assert any(e.to_status == Job.RUNNING for e in job.events.all())


@pytest.mark.django_db(transaction=True)
def test_with_a_public_address_kling_fetches_our_signed_links_to_the_photo_and_end_frame(
    aiml_server, settings, live_server
):
    settings.PUBLIC_BASE_URL = live_server.url
    owner = UserFactory()
    job = run_until_final(kling_job(owner, tail_upload=make_upload(owner, width=700, height=1200, framing="landscape")))

    assert job.status == Job.COMPLETED
    body = aiml_server.submits[0].body
    for field in ("image_url", "tail_image_url"):
        assert body[field].startswith(f"{live_server.url}/files/images/") and "token=" in body[field], field
    assert str(job.tail_upload_id) in body["tail_image_url"]
    assert aiml_server.generations[job.provider_job_id].images == {
        "image_url": (1024, 576),
        "tail_image_url": (1024, 576),
    }


# --- failures ---------------------------------------------------------------------


def test_a_generation_that_ends_in_error_fails_with_klings_message_and_gives_the_credits_back(aiml_server):
    aiml_server.script.failure = ("content_policy", "The image was flagged by the content policy")
    job = run_until_final(kling_job())

    assert_failed_and_released(job, "provider_failed")
    assert "The image was flagged by the content policy" in job.error_message
    assert job.finish_reason == "content_policy"
    assert '"status": "error"' in job.error_detail
    assert job.provider_response == {"credits_used": 0}


def test_a_refused_key_fails_the_job_naming_the_setting(aiml_server, settings):
    settings.AIMLAPI_KEY = "wrong-key"
    job = run_until_final(kling_job())

    assert_failed_and_released(job, "provider_auth")
    assert "an operator must check AIMLAPI_KEY" in job.error_message
    assert "wrong-key" not in job.error_message + job.error_detail
    assert len(aiml_server.submits) == 1


def test_a_rate_limited_submit_is_sent_again_and_completes(aiml_server):
    aiml_server.script.fail_next(429, endpoint="create", retry_after=0)
    job = run_until_final(kling_job())

    assert job.status == Job.COMPLETED
    assert [r.status for r in aiml_server.submits] == [429, 200]


def test_a_server_error_on_submit_fails_after_exactly_one_submit(aiml_server):
    aiml_server.script.fail_next(500, endpoint="create")
    job = run_until_final(kling_job())

    assert_failed_and_released(job, "provider_outcome_unknown")
    assert len(aiml_server.submits) == 1


def test_a_server_error_while_polling_is_retried(aiml_server):
    aiml_server.script.fail_next(500, endpoint="poll")
    job = run_until_final(kling_job())

    assert job.status == Job.COMPLETED
    assert any("server error (500)" in e.message for e in job.events.all())


@pytest.mark.parametrize("endpoint", ["create", "poll"])
def test_malformed_json_fails_the_job_with_the_answer_kept_for_staff(aiml_server, endpoint):
    aiml_server.script.fail_next("malformed_json", endpoint=endpoint)
    job = run_until_final(kling_job())

    assert_failed_and_released(job, "provider_bad_response")
    assert job.error_message.startswith("Kling (AI/ML API) sent an answer we could not understand")
    assert '{"id": "x", "status": ' in job.error_detail


def test_a_value_the_api_refuses_fails_the_job_with_its_words(aiml_server, monkeypatch):
    monkeypatch.setattr("providers.kling.kling_cfg_scale", lambda request: 3.0)
    job = run_until_final(kling_job())

    assert_failed_and_released(job, "invalid_request")
    assert "cfg_scale must be a number from 0 to 1" in job.error_message


def test_a_generation_that_never_finishes_fails_at_max_check_time(aiml_server, settings):
    settings.MAX_CHECK_TIME = 60
    aiml_server.script.never_finish = True
    job = advance(kling_job())
    Job.objects.filter(pk=job.pk).update(submitted_at=timezone.now() - timedelta(seconds=61))

    job = run_until_final(job)

    assert_failed_and_released(job, "timed_out")


def test_a_poll_404_says_kling_no_longer_knows_the_job(aiml_server):
    job = advance(kling_job())
    aiml_server.generations.clear()

    job = run_until_final(job)

    assert_failed_and_released(job, "provider_job_missing")


def test_a_job_with_kling_cannot_be_cancelled_and_says_why(aiml_server):
    job = advance(kling_job())
    assert job.status == Job.SUBMITTED and not actions.can_cancel(job)

    with pytest.raises(actions.ActionRefused, match="Kling \\(AI/ML API\\), which cannot stop it"):
        actions.cancel_job(job)


def test_kling_takes_uploads_without_a_public_address_and_needs_only_its_key(settings):
    settings.PUBLIC_BASE_URL = ""
    settings.AIMLAPI_KEY = ""
    assert "an operator must set AIMLAPI_KEY" in KlingProvider.unavailable_reason()
    settings.AIMLAPI_KEY = "k"
    assert KlingProvider.is_enabled() and KlingProvider.upload_unavailable_reason() == ""


# --- parameters -------------------------------------------------------------------


def request_with(**fields) -> GenerationRequest:
    base = dict(
        job_id="j", image_path=Path("x.png"), width=1024, height=576, seed=7, cfg_scale=1.8, motion_bucket_id=127
    )
    return GenerationRequest(**{**base, **fields})


@pytest.mark.parametrize(("cfg", "kling"), [(1.8, 0.5), (0.0, 0.0), (5.0, 0.5), (7.5, 0.75), (10.0, 1.0)])
def test_the_common_fidelity_is_mapped_onto_klings_zero_to_one_scale(cfg, kling):
    assert kling_cfg_scale(request_with(cfg_scale=cfg)) == kling


def test_klings_own_cfg_scale_wins_over_the_mapped_common_one():
    assert kling_cfg_scale(request_with(cfg_scale=10.0, extra={"kling_cfg_scale": 0.2})) == 0.2


def test_every_model_in_the_table_is_a_model_jobs_may_choose():
    assert KlingProvider.models == tuple(MODELS)
    assert MODELS["kling-video/v1/standard/image-to-video"].static_mask == "static_mask_url"
    assert MODELS["kling-video/v2.1/standard/image-to-video"].dynamic_mask == "mask"


def test_klings_duration_is_five_or_ten_however_a_form_or_json_writes_the_number():
    from providers.kling import DURATION
    from providers.params import ParamError

    assert [DURATION.parse(v) for v in ("10", 5.0, 10, "5")] == [10, 5, 10, 5]
    with pytest.raises(ParamError, match="duration must be 5 or 10 s; got 7"):
        DURATION.parse(7)


def test_a_duration_shared_with_the_local_providers_slider_is_one_number_field():
    from providers.kling import DURATION
    from providers.local import DURATION as LOCAL_DURATION
    from providers.params import shared_kind

    assert shared_kind([LOCAL_DURATION, DURATION]) == "float"
