"""Pipelet jobs end to end: through the native API, the pipeline and the
dashboard, against the fake Pipelet over real HTTP, ending in a decoded MP4."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from jobs import ledger, media
from jobs.models import Job, LedgerEntry, Upload
from tests.api_helpers import key_client
from tests.factories import UserFactory, make_job, photo_bytes
from tests.fakes.fixtures import pipelet_server_fixture  # noqa: F401 (the pipelet_server fixture)
from tests.pipeline_helpers import advance, local_copy, make_due, run_until_final

pytestmark = pytest.mark.django_db

PHOTO = "data:image/jpeg;base64," + base64.b64encode(photo_bytes()).decode()


def create(client, **fields):
    body = {"data_uri": PHOTO, "provider": "pipelet", "prompt": "a fox runs through snow", **fields}
    return client.post("/api/v1/jobs", body, format="json")


def seen(client, job_id) -> dict:
    response = client.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200
    return response.json()


def step(client, job_id) -> dict:
    """One look at Pipelet, as when the job falls due, then the job as the API shows it."""
    job = Job.objects.get(pk=job_id)
    make_due(job)
    advance(job)
    return seen(client, job_id)


def pipelet_job(owner=None, **params) -> Job:
    owner = owner or UserFactory()
    params.setdefault("prompt", "waves at dusk")
    return make_job(owner, provider="pipelet", **params)


def assert_failed_and_released(job: Job, code: str) -> None:
    assert job.status == Job.FAILED and job.error_code == code, (job.status, job.error_code, job.error_message)
    assert job.error_message and job.error_detail
    assert LedgerEntry.objects.filter(job=job, kind="release").exists()
    assert ledger.balance_of(job.owner) == 100


# --- the whole way --------------------------------------------------------------------------


def test_an_api_job_shows_its_queue_place_then_progress_and_ends_in_a_decoded_video(pipelet_server):
    client = key_client()
    created = create(client, duration=7, height=480)
    assert created.status_code == 201, created.json()
    job_id = created.json()["id"]
    assert created.json()["cost"] == 10 and ledger.balance_of(client.user) == 90

    first = seen(client, advance(Job.objects.get(pk=job_id)).pk)  # submitted, and looked at once
    places = [first["queue_position"]]
    views = [first]
    while views[-1]["status"] not in ("completed", "failed"):
        views.append(step(client, job_id))
        if views[-1]["status"] == "submitted":
            places.append(views[-1]["queue_position"])

    assert places == [3, 2, 1], "Pipelet's 0-based places 2, 1, 0 shown as ours (1 is next)"
    assert first["status_message"] == "Waiting in Pipelet's queue (2 ahead)"
    running = [v for v in views if v["status"] == "running"]
    assert running[0]["progress"] == pytest.approx(4 / 24, abs=0.001)
    assert running[0]["status_message"] == "Progress: 4/24 Tasks done"
    assert running[0]["queue_position"] is None
    assert running[-1]["progress"] == pytest.approx(20 / 24, abs=0.001)
    final = views[-1]
    assert final["status"] == "completed" and final["parameters"]["duration"] == 7
    job = Job.objects.get(pk=job_id)
    info = media.probe_video(local_copy(job.video))
    assert (info.codec, info.height) == ("h264", 480) and info.frames == 14
    assert ledger.balance_of(client.user) == 90
    [sent] = pipelet_server.creates
    assert sent.body["prompt"] == "a fox runs through snow" and (sent.body["duration"], sent.body["height"]) == (7, 480)
    assert job.provider_job_id == f"wan22-fast-i2v:{next(iter(pipelet_server.jobs))}"


def test_with_binary_output_the_job_ends_in_the_video_behind_pipelets_link(pipelet_server, settings):
    settings.PIPELET_OUTPUT = "binary"
    job = run_until_final(pipelet_job(), rounds=12)

    assert job.status == Job.COMPLETED
    assert pipelet_server.creates[0].headers["x-pipelet-output"] == "binary"
    assert media.probe_video(local_copy(job.video)).height == 720
    assert [r.status for r in pipelet_server.requests if r.path.startswith("/s3/")] == [200]


def test_the_dashboards_live_status_carries_pipelets_queue_place(pipelet_server, client):
    owner = UserFactory()
    client.force_login(owner)
    job = advance(pipelet_job(owner))

    status = client.get(reverse("job-status", args=[job.pk])).json()
    page = client.get(reverse("job-detail", args=[job.pk])).content.decode()

    assert (status["queue_position"], status["status_message"]) == (3, "Waiting in Pipelet's queue (2 ahead)")
    assert re.search(r'id="job-queue-n">3<', page)


def test_the_admin_shows_pipelets_queue_place_and_its_settings(pipelet_server, client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True, username="support"))
    job = advance(pipelet_job(extra_params={"duration": 7, "height": 480}))

    page = client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()

    place = re.search(r"position in queue:?</label>\s*<div[^>]*>(.*?)</div>", page, re.S | re.I)
    assert place and place[1].strip() == "3"
    assert "Duration: 7 s" in page and "Resolution (height): 480" in page


def test_a_job_without_a_prompt_gets_the_default_prompt_when_no_clip_is_configured(pipelet_server, settings):
    settings.REPLICATE_API_TOKEN = ""
    settings.DEFAULT_PROMPT = "the scene comes gently to life"
    job = run_until_final(pipelet_job(prompt=""), rounds=12)

    assert job.status == Job.COMPLETED and job.prompt_source == Job.PROMPT_DEFAULT
    assert pipelet_server.creates[0].body["prompt"] == "the scene comes gently to life"


# --- models and costs -----------------------------------------------------------------------


def test_each_model_holds_its_own_cost_and_the_providers_listing_says_them(pipelet_server):
    client = key_client()
    listed = next(p for p in client.get("/api/v1/providers").json() if p["name"] == "pipelet")
    assert listed["model_costs"] == {"wan22-fast-i2v": 10, "wan22-fast-i2v-premium": 15, "wan22-fast-i2v-pro": 25}
    assert listed["cost"] == 10 and listed["available"] is True
    assert listed["parameters"]["height"]["choices"] == [720, 480]

    created = create(client, model="wan22-fast-i2v-pro")

    assert created.status_code == 201 and created.json()["cost"] == 25
    assert ledger.balance_of(client.user) == 75
    job = advance(Job.objects.get(pk=created.json()["id"]))
    assert pipelet_server.creates[0].path == "/queue/wan22-fast-i2v-pro" and job.status == Job.SUBMITTED


def test_provider_costs_override_a_model_or_the_whole_provider(pipelet_server, settings):
    settings.PROVIDER_COSTS = {"pipelet/wan22-fast-i2v-pro": "30", "pipelet": "12"}
    client = key_client()
    listed = next(p for p in client.get("/api/v1/providers").json() if p["name"] == "pipelet")

    assert listed["model_costs"] == {"wan22-fast-i2v": 12, "wan22-fast-i2v-premium": 12, "wan22-fast-i2v-pro": 30}
    assert create(client, model="wan22-fast-i2v-pro").json()["cost"] == 30


def test_the_dashboard_shows_each_models_cost(pipelet_server, logged_in):
    html = logged_in.get(reverse("home") + "?provider=pipelet").content.decode()
    assert "10–25 credits by model" in html
    assert '"model_costs": {"wan22-fast-i2v": 10, "wan22-fast-i2v-premium": 15, "wan22-fast-i2v-pro": 25}' in html


def test_a_model_too_dear_for_the_balance_is_refused_before_the_image_is_kept(pipelet_server):
    client = key_client(credits=20)
    refused = create(client, model="wan22-fast-i2v-pro")
    assert refused.status_code == 402 and refused.json()["error"]["cost"] == 25
    assert not Upload.objects.exists() and not Job.objects.exists()


# --- the rules, before anything is kept or held -----------------------------------------------


def test_the_api_refuses_more_than_five_seconds_at_720p_naming_the_rule(pipelet_server):
    client = key_client()
    refused = create(client, duration=6, height=720)

    assert refused.status_code == 400
    message = "At 720p Pipelet makes at most 5 s; choose 5 s or less, or 480p for up to 7 s."
    assert refused.json()["error"]["fields"] == {"duration": [message]}
    assert not Job.objects.exists() and not Upload.objects.exists()
    assert ledger.balance_of(client.user) == 100
    assert not LedgerEntry.objects.filter(kind="hold").exists()
    assert not pipelet_server.requests


@pytest.mark.parametrize(
    ("fields", "field", "said"),
    [
        ({"height": 1080}, "height", "1080"),
        ({"duration": 8, "height": 480}, "duration", "from 1 to 7 s"),
        ({"duration": 4.5}, "duration", "whole number"),
    ],
)
def test_the_api_refuses_other_values_pipelet_cannot_make(pipelet_server, fields, field, said):
    refused = create(key_client(), **fields)
    assert refused.status_code == 400 and field in refused.json()["error"]["fields"]
    assert said in refused.json()["error"]["fields"][field][0]


def test_the_dashboard_refuses_the_rule_next_to_the_duration(pipelet_server, logged_in):
    body = {
        "framing": "auto",
        "provider": "pipelet",
        "model": "wan22-fast-i2v",
        "motion_bucket_id": "127",
        "cfg_scale": "1.8",
        "seed_mode": "random",
        "prompt": "a fox",
        "duration": "6",
        "height": "720",
        "image": SimpleUploadedFile("photo.jpg", photo_bytes(), content_type="image/jpeg"),
    }
    response = logged_in.post(reverse("home"), body)

    assert response.status_code == 400
    html = response.content.decode()
    match = re.search(r'<p class="error" role="alert" id="param-duration-error"\s*>(.*?)</p>', html, re.S)
    assert match and "At 720p Pipelet makes at most 5 s; choose 5 s or less, or 480p for up to 7 s." in match[1]
    assert not Job.objects.exists() and not Upload.objects.exists()


# --- cancel -----------------------------------------------------------------------------------


def test_a_job_waiting_in_pipelets_queue_is_cancelled_and_its_credits_come_back(pipelet_server):
    client = key_client()
    job_id = create(client).json()["id"]
    shown = seen(client, advance(Job.objects.get(pk=job_id)).pk)
    assert shown["status"] == "submitted" and shown["cancellable"] is True

    cancelled = client.post(f"/api/v1/jobs/{job_id}/cancel")

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert [c.status for c in pipelet_server.cancels] == [204]
    assert ledger.balance_of(client.user) == 100


def test_a_job_pipelet_has_started_cannot_be_cancelled_and_the_user_is_told_why(pipelet_server, client):
    owner = UserFactory()
    api = key_client(owner)
    job_id = create(api).json()["id"]
    while seen(api, job_id)["status"] != "running":
        step(api, job_id)
    assert seen(api, job_id)["cancellable"] is False

    refused = api.post(f"/api/v1/jobs/{job_id}/cancel")

    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == (
        "Pipelet has started this video and cannot stop it; it will finish on its own."
    )
    client.force_login(owner)
    page = client.post(reverse("job-cancel", args=[job_id]), follow=True).content.decode()
    assert "Pipelet has started this video and cannot stop it" in page
    assert not pipelet_server.cancels, "we knew it had started: Pipelet was not asked"
    assert run_until_final(Job.objects.get(pk=job_id)).status == Job.COMPLETED


def test_a_cancel_pipelet_refuses_because_it_just_started_is_reported_as_409(pipelet_server):
    client = key_client()
    job_id = create(client).json()["id"]
    job = advance(Job.objects.get(pk=job_id))
    pipelet_server.jobs[job.provider_job_id.split(":")[1]].state = "IN_PROGRESS"  # started since our last look

    refused = client.post(f"/api/v1/jobs/{job_id}/cancel")

    assert refused.status_code == 409 and "Pipelet has started this video" in refused.json()["error"]["message"]
    assert [c.status for c in pipelet_server.cancels] == [409]
    assert seen(client, job_id)["status"] == "submitted" and ledger.balance_of(client.user) == 90


# --- failures: each a clear message, detail kept, credits released ---------------------------------


def test_a_refused_key_fails_the_job_naming_the_setting(pipelet_server, settings):
    settings.PIPELET_API_KEY = "wrong-key"
    job = run_until_final(pipelet_job())

    assert_failed_and_released(job, "provider_auth")
    assert "PIPELET_API_KEY" in job.error_message and "wrong-key" not in job.error_message + job.error_detail


def test_a_job_pipelet_no_longer_knows_fails(pipelet_server):
    job = advance(pipelet_job())
    pipelet_server.jobs.clear()

    assert_failed_and_released(run_until_final(job), "provider_job_missing")


def test_a_rate_limited_create_is_sent_again_and_completes(pipelet_server):
    pipelet_server.script.fail_next(429, endpoint="create", retry_after=0)
    job = advance(pipelet_job())
    assert job.status == Job.PREPARING and "rate-limiting" in job.status_message

    job = run_until_final(job, rounds=12)

    assert job.status == Job.COMPLETED
    assert [r.status for r in pipelet_server.creates] == [429, 200]


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_server_error_on_create_fails_after_exactly_one_create(pipelet_server, status):
    pipelet_server.script.fail_next(status, endpoint="create")
    job = run_until_final(pipelet_job())

    assert_failed_and_released(job, "provider_outcome_unknown")
    assert f"Pipelet answered {status}" in job.error_message
    assert len(pipelet_server.creates) == 1


def test_server_errors_and_rate_limits_while_polling_are_retried(pipelet_server):
    pipelet_server.script.fail_next(500, endpoint="status")
    pipelet_server.script.fail_next(429, endpoint="status", retry_after=0)
    job = run_until_final(pipelet_job(), rounds=14)

    assert job.status == Job.COMPLETED
    messages = [e.message for e in job.events.all()]
    assert any("server error (500)" in m for m in messages) and any("rate-limiting" in m for m in messages)


def test_malformed_json_fails_the_job_with_pipelets_words_kept(pipelet_server):
    pipelet_server.script.fail_next("malformed_json", endpoint="status")
    job = run_until_final(pipelet_job())

    assert_failed_and_released(job, "provider_bad_response")
    assert job.error_message.startswith("Pipelet sent an answer we could not understand")
    assert '"status": ' in job.error_detail


def test_a_failed_video_keeps_pipelets_detail_for_staff_and_tells_the_user_plainly(pipelet_server):
    pipelet_server.script.outcome = "FAILED"
    job = run_until_final(pipelet_job(), rounds=12)

    assert_failed_and_released(job, "provider_failed")
    assert job.finish_reason == "FAILED" and "CUDA out of memory" in job.error_detail
    assert "CUDA" not in job.error_message


def test_a_result_cut_short_in_transit_is_fetched_again(pipelet_server):
    pipelet_server.script.fail_next("truncated", endpoint="result")
    job = run_until_final(pipelet_job(), rounds=12)

    assert job.status == Job.COMPLETED
    assert len(pipelet_server.result_fetches) == 2
    assert any("interrupted" in e.message for e in job.events.all())


@pytest.mark.parametrize(("action", "said"), [("bad_base64", "could not decode"), ("not_mp4", "cannot be played")])
def test_a_result_that_is_not_a_video_fails_the_job(pipelet_server, action, said):
    pipelet_server.script.fail_next(action, endpoint="result")
    job = run_until_final(pipelet_job(), rounds=12)

    assert_failed_and_released(job, "bad_video")
    assert said in job.error_message and not job.video


def test_a_job_pipelet_never_finishes_fails_at_max_check_time(pipelet_server, settings):
    settings.MAX_CHECK_TIME = 60
    pipelet_server.script.outcome = "never"
    job = advance(pipelet_job())
    Job.objects.filter(pk=job.pk).update(submitted_at=timezone.now() - timedelta(seconds=61))

    job = run_until_final(job)

    assert_failed_and_released(job, "timed_out")
    assert "did not finish within 60 seconds" in job.error_message
    assert [c.status for c in pipelet_server.cancels] == [204], "still queued at Pipelet: it was stopped"
