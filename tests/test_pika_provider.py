"""Pika jobs end to end through the pipeline, against the fake Pika over real HTTP."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from jobs import ledger, media, pipeline
from jobs.creation import create_upload
from jobs.models import Job, LedgerEntry
from providers.base import GenerationRequest
from providers.pika import PikaProvider, pika_options
from tests.api_helpers import key_client
from tests.factories import UserFactory, make_job, make_upload, photo_bytes
from tests.fakes.fixtures import pika_server_fixture  # noqa: F401 (the pika_server fixture)
from tests.pipeline_helpers import advance, local_copy, run_until_final

pytestmark = pytest.mark.django_db


def url_job(fake, owner=None, *, image_path: str = "/images/photo.png", **params) -> Job:
    """A Pika job made from an image URL on the fake (no PUBLIC_BASE_URL needed)."""
    owner = owner or UserFactory()
    upload = create_upload(owner=owner, source=photo_bytes(), source_url=f"{fake.base_url}{image_path}")
    return make_job(owner, upload=upload, provider="pika", prompt=params.pop("prompt", "a red fox"), **params)


def assert_failed_and_released(job: Job, code: str) -> None:
    assert job.status == Job.FAILED and job.error_code == code, (job.status, job.error_code, job.error_message)
    assert job.error_message and job.error_detail
    assert LedgerEntry.objects.filter(job=job, kind="release").exists()
    assert ledger.balance_of(job.owner) == 100  # the starting credits, all given back


# --- end to end ------------------------------------------------------------------


def test_a_job_made_from_an_image_url_goes_through_pika_to_a_playable_video(pika_server, settings):
    settings.PUBLIC_BASE_URL = ""
    job = advance(url_job(pika_server))
    assert (job.status, job.status_message) == (Job.SUBMITTED, "Waiting in Pika's queue")
    assert job.provider_job_id in pika_server.jobs

    job = run_until_final(job)

    assert job.status == Job.COMPLETED and job.finish_reason == "SUCCESS"
    info = media.probe_video(local_copy(job.video))
    assert info.codec == "h264" and info.frames >= 14
    [sent] = pika_server.submits
    assert sent.headers["authorization"] == "Bearer pika-test-token"
    assert sent.body["image"] == f"{pika_server.base_url}/images/photo.png"
    assert sent.body["promptText"] == "a red fox" and sent.body["model"] == "1.5"
    assert sent.body["options"]["frameRate"] == 24
    assert sent.body["options"]["parameters"] == {"motion": 2, "guidanceScale": 16}
    assert pika_server.jobs[job.provider_job_id].image["ok"], "the fake fetched the image as Pika would"
    assert [p.status for p in pika_server.polls] == [200, 200, 200]
    assert ledger.balance_of(job.owner) == 100 - 10


@pytest.mark.django_db(transaction=True)
def test_with_a_public_address_pika_fetches_our_signed_link_to_the_normalised_image(pika_server, settings, live_server):
    settings.PUBLIC_BASE_URL = live_server.url
    owner = UserFactory()
    job = make_job(owner, upload=make_upload(owner, width=1200, height=700), provider="pika", prompt="waves")

    job = run_until_final(job)

    assert job.status == Job.COMPLETED
    [sent] = pika_server.submits
    assert sent.body["image"].startswith(f"{live_server.url}/files/images/") and "token=" in sent.body["image"]
    fetched = pika_server.jobs[job.provider_job_id].image
    assert fetched["ok"] and fetched["content_type"] == "image/png" and fetched["size"] == (1024, 576)
    assert sent.body["options"]["aspectRatio"] == "16:9"


def test_a_worker_that_dies_after_submitting_never_makes_pika_submit_twice(pika_server, monkeypatch):
    job = url_job(pika_server)
    real_poll = PikaProvider.poll
    deaths = []

    def dies_once(self, provider_job_id, context):
        if not deaths:
            deaths.append(provider_job_id)
            raise SystemExit("worker killed")  # not an Exception: nothing is cleaned up
        return real_poll(self, provider_job_id, context)

    monkeypatch.setattr(PikaProvider, "poll", dies_once)
    with pytest.raises(SystemExit):
        pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.provider_job_id == deaths[0], "the id was stored before the first poll"

    job = run_until_final(job)

    assert job.status == Job.COMPLETED
    assert len(pika_server.submits) == 1 and len(pika_server.jobs) == 1


# --- failures: each a failed job with a readable message, detail kept, credits released ----


def test_a_refused_token_fails_the_job_telling_the_operator_which_setting(pika_server, settings):
    settings.PIKAPI_BEARER_TOKEN = "wrong-token"
    job = run_until_final(url_job(pika_server))

    assert_failed_and_released(job, "provider_auth")
    assert "an operator must check PIKAPI_BEARER_TOKEN" in job.error_message
    assert "Unauthorized" in job.error_detail and "wrong-token" not in job.error_message + job.error_detail
    assert len(pika_server.submits) == 1


def test_a_rate_limited_submit_is_sent_again_and_completes(pika_server):
    pika_server.script.fail_next(429, endpoint="generate", retry_after=0)
    job = advance(url_job(pika_server))
    assert job.status == Job.PREPARING and "rate-limiting" in job.status_message

    job = run_until_final(job)

    assert job.status == Job.COMPLETED
    assert [r.status for r in pika_server.submits] == [429, 200]


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_server_error_on_submit_fails_the_job_after_exactly_one_submit(pika_server, status):
    pika_server.script.fail_next(status, endpoint="generate")
    job = run_until_final(url_job(pika_server))

    assert_failed_and_released(job, "provider_outcome_unknown")
    assert f"Pika answered {status}" in job.error_message
    assert len(pika_server.submits) == 1


def test_a_server_error_while_polling_is_retried(pika_server):
    pika_server.script.fail_next(500, endpoint="jobs")
    job = run_until_final(url_job(pika_server))

    assert job.status == Job.COMPLETED
    assert any("server error (500)" in e.message for e in job.events.all())


@pytest.mark.parametrize("endpoint", ["generate", "jobs"])
def test_malformed_json_fails_the_job_with_pikas_words_kept(pika_server, endpoint):
    pika_server.script.fail_next("malformed_json", endpoint=endpoint)
    job = run_until_final(url_job(pika_server))

    assert_failed_and_released(job, "provider_bad_response")
    assert job.error_message.startswith("Pika sent an answer we could not understand")
    assert '{"job": {"id": ' in job.error_detail


def test_a_failing_video_status_fails_the_job_and_keeps_the_status_as_finish_reason(pika_server):
    pika_server.script.statuses = ["queued", "error"]
    job = run_until_final(url_job(pika_server))

    assert_failed_and_released(job, "provider_failed")
    assert job.finish_reason == "ERROR"
    assert "it reported 'error'" in job.error_message
    assert '"status": "error"' in job.error_detail


def test_an_image_pika_cannot_fetch_fails_the_job_with_pikas_reason(pika_server):
    job = run_until_final(url_job(pika_server, image_path="/images/missing.png"))

    assert_failed_and_released(job, "provider_failed")
    assert job.finish_reason == "FAILED"
    assert "could not fetch the image" in job.error_detail


def test_a_job_pika_never_finishes_fails_at_max_check_time(pika_server, settings):
    settings.MAX_CHECK_TIME = 60
    pika_server.script.never_finish = True
    job = advance(url_job(pika_server))
    Job.objects.filter(pk=job.pk).update(submitted_at=timezone.now() - timedelta(seconds=61))

    job = run_until_final(job)

    assert_failed_and_released(job, "timed_out")
    assert "did not finish within 60 seconds" in job.error_message


@pytest.mark.parametrize(
    ("result", "code", "said"),
    [("dead", "result_unavailable", "could not be downloaded"), ("html", "bad_video", "was not a video")],
)
def test_a_result_url_that_is_dead_or_not_a_video_fails_the_job(pika_server, result, code, said):
    pika_server.script.result = result
    job = run_until_final(url_job(pika_server))

    assert_failed_and_released(job, code)
    assert said in job.error_message
    assert "/results/" in job.error_detail
    assert not job.video


def test_a_result_url_on_a_private_address_is_never_fetched(pika_server, settings):
    settings.SAFE_FETCH_ALLOW = ()  # the fake is on 127.0.0.1: not public
    job = run_until_final(url_job(pika_server, image_path="/images/photo.png"))

    assert_failed_and_released(job, "result_unavailable")
    assert not any(r.path.startswith("/results/") for r in pika_server.requests)


def test_a_poll_404_says_pika_no_longer_knows_the_job(pika_server):
    job = advance(url_job(pika_server))
    pika_server.jobs.clear()  # as after a key change: the job is someone else's now

    job = run_until_final(job)

    assert_failed_and_released(job, "provider_job_missing")
    assert job.error_message.startswith("Pika no longer knows this job")


# --- parameters ----------------------------------------------------------------------


def request_with(**fields) -> GenerationRequest:
    base = dict(
        job_id="j", image_path=Path("x.png"), width=1024, height=576, seed=7, cfg_scale=1.8, motion_bucket_id=127
    )
    return GenerationRequest(**{**base, **fields})


def test_with_nothing_given_pika_gets_the_originals_values_and_the_framings_aspect():
    options = pika_options(request_with(width=576, height=1024))
    assert options == {
        "frameRate": 24,
        "parameters": {"motion": 2, "guidanceScale": 16},
        "aspectRatio": "9:16",
        "seed": 7,
    }


@pytest.mark.parametrize(("bucket", "motion"), [(1, 1), (86, 2), (170, 3), (255, 4)])
def test_the_common_motion_is_mapped_onto_pikas_scale(bucket, motion):
    assert pika_options(request_with(motion_bucket_id=bucket))["parameters"]["motion"] == motion


@pytest.mark.parametrize(("cfg", "guidance"), [(0.0, 5), (2.5, 10), (10.0, 25)])
def test_the_common_fidelity_is_mapped_onto_pikas_guidance_scale(cfg, guidance):
    assert pika_options(request_with(cfg_scale=cfg))["parameters"]["guidanceScale"] == guidance


def test_pikas_own_values_win_over_the_mapped_common_ones():
    options = pika_options(
        request_with(
            motion_bucket_id=255,
            cfg_scale=10.0,
            negative_prompt="blur",
            extra={"motion": 1, "guidanceScale": 20, "frameRate": 12, "aspectRatio": "4:5"},
        )
    )
    assert options["parameters"] == {"motion": 1, "guidanceScale": 20}
    assert (options["frameRate"], options["aspectRatio"], options["negativePrompt"]) == (12, "4:5", "blur")


def test_the_api_takes_pikas_parameters_checks_their_ranges_and_sends_them(pika_server, settings):
    settings.PUBLIC_BASE_URL = ""
    client = key_client()
    image_url = f"{pika_server.base_url}/images/photo.png"
    refused = client.post(
        "/api/v1/jobs", {"image_url": image_url, "provider": "pika", "motion": 5, "prompt": "x"}, format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {"motion": ["motion must be from 1 to 4; got 5."]}

    created = client.post(
        "/api/v1/jobs",
        {"image_url": image_url, "provider": "pika", "motion": 3, "guidanceScale": 9, "prompt": "a fox"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    job = advance(Job.objects.get(pk=created.json()["id"]))

    assert pika_server.submits[-1].body["options"]["parameters"] == {"motion": 3, "guidanceScale": 9}
    assert job.status in (Job.SUBMITTED, Job.RUNNING)


def test_the_terminal_command_takes_pikas_motion_without_clashing_with_its_own_motion_option():
    from jobs.management.commands.animate import Command

    parser = Command().create_parser("manage.py", "animate")
    opts = vars(parser.parse_args(["photo.png", "--motion", "200", "--provider-motion", "3", "--guidanceScale", "9"]))
    assert (opts["motion"], opts["param_motion"], opts["param_guidanceScale"]) == (200, 3, 9)
