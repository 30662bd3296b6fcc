"""Replicate image-to-video models as the ``replicate`` provider, end to end
against the fake Replicate (real HTTP on 127.0.0.1, the real ``replicate`` client)."""

from __future__ import annotations

from datetime import timedelta

import av
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from jobs import actions, ledger, pipeline
from jobs.models import Job
from providers import registry
from providers.replicate import ReplicateProvider
from tests.api_helpers import key_client
from tests.factories import UserFactory, make_job
from tests.fakes.replicate_server import SVD_VERSION, FakeReplicateServer
from tests.test_prompt_stage import drive

pytestmark = pytest.mark.django_db
WAN = "wavespeedai/wan-2.1-i2v-480p"


@pytest.fixture
def replicate_fake(settings, monkeypatch):
    with FakeReplicateServer(token="r8_test") as fake:
        settings.REPLICATE_API_TOKEN = "r8_test"
        settings.REPLICATE_BASE_URL = fake.base_url
        settings.REPLICATE_POLL_INTERVAL = 0.0
        settings.SAFE_FETCH_ALLOW = (fake.address,)  # the output URL is on the fake
        settings.DEFAULT_PROMPT = ""
        monkeypatch.setattr(pipeline, "MIN_POLL_GAP", 0.0)
        registry.provider_class.cache_clear()
        yield fake


def decoded_frames(job: Job) -> int:
    with default_storage.open(job.video.name) as handle, av.open(handle) as container:
        return sum(1 for _ in container.decode(video=0))


def test_a_stable_video_diffusion_job_runs_as_a_prediction_and_its_video_is_copied(replicate_fake):
    owner = UserFactory()
    job = drive(make_job(owner, provider="replicate", motion_bucket_id=200, seed=77, extra_params={"cond_aug": 0.1}))

    assert job.status == Job.COMPLETED, job.error_detail
    assert decoded_frames(job) == 14
    [prediction] = replicate_fake.created()
    assert prediction.model == "stability-ai/stable-video-diffusion" and prediction.version == SVD_VERSION
    sent = prediction.input
    assert sent["input_image"].startswith("data:image/jpeg;base64,")
    assert (sent["motion_bucket_id"], sent["seed"], sent["cond_aug"]) == (200, 77, 0.1)
    assert (sent["video_length"], sent["sizing_strategy"], sent["frames_per_second"]) == (
        "14_frames_with_svd",
        "maintain_aspect_ratio",
        6,
    )
    assert job.prompt == "" and not replicate_fake.created("clip")  # SVD needs no prompt
    assert job.provider_job_id == prediction.id
    file_fetch = replicate_fake.calls("GET", "/files/")[0]
    assert "Authorization" not in file_fetch.headers  # our token never follows an output URL
    assert ledger.balance_of(owner) == 100 - job.cost


def test_a_wan_job_without_a_prompt_gets_one_from_clip_then_runs_wan_with_it(replicate_fake, settings):
    settings.REPLICATE_VIDEO_MODEL = WAN
    assert ReplicateProvider.needs_prompt is True
    job = drive(make_job(provider="replicate", model=WAN, extra_params={"num_frames": 90}))

    assert job.status == Job.COMPLETED, job.error_detail
    assert decoded_frames(job) > 0
    [clip] = replicate_fake.created("clip")
    [wan] = replicate_fake.created("wan")
    assert wan.version == ""  # an official model: created on its model's endpoint
    assert replicate_fake.calls("POST", f"/v1/models/{WAN}/predictions")
    assert wan.input["prompt"] == replicate_fake.script.clip_text == job.prompt
    assert wan.input["image"].startswith("data:image/jpeg;base64,")
    assert (wan.input["num_frames"], wan.input["max_area"]) == (90, "832x480")
    assert job.prompt_source == Job.PROMPT_CLIP and job.prompt_job_id == clip.id


def test_a_wan_job_given_a_prompt_sends_it_and_its_negative_prompt(replicate_fake, settings):
    settings.REPLICATE_VIDEO_MODEL = WAN
    job = drive(make_job(provider="replicate", prompt="the fox blinks", negative_prompt="blur"))

    assert job.status == Job.COMPLETED
    [wan] = replicate_fake.created()
    assert (wan.input["prompt"], wan.input["negative_prompt"]) == ("the fox blinks", "blur")


def test_the_providers_listing_shows_the_configured_models_parameters(replicate_fake, settings):
    api = key_client()
    listing = {row["name"]: row for row in api.get(reverse("api-providers")).json()}

    svd = listing["replicate"]
    assert svd["models"] == ["stability-ai/stable-video-diffusion"]
    assert svd["capabilities"]["supports_cancel"] is True and svd["capabilities"]["needs_prompt"] is False
    assert set(svd["parameters"]) >= {"motion_bucket_id", "cond_aug", "video_length", "sizing_strategy"}


def test_a_worker_killed_after_every_step_resumes_the_two_stage_pipeline_without_a_second_prediction(
    replicate_fake, settings, monkeypatch
):
    """Each step does its work and the worker dies before giving up its lease;
    the next worker claims the job once the lease runs out."""
    settings.REPLICATE_VIDEO_MODEL = WAN
    settings.JOB_MAX_ATTEMPTS = 100
    settings.JOB_LEASE_SECONDS = 5

    class Killed(BaseException):
        pass

    def die(job, *, finished_cleanly):
        raise Killed

    job = make_job(provider="replicate")
    for _ in range(40):
        with monkeypatch.context() as patch:
            patch.setattr(pipeline, "release", die)
            try:
                pipeline.advance(job.pk)
            except Killed:
                pass
        job.refresh_from_db()
        if job.is_final:
            break
        Job.objects.filter(pk=job.pk).update(lease_until=None, last_polled_at=None)  # the lease ran out

    assert job.status == Job.COMPLETED, job.error_detail
    assert len(replicate_fake.created("clip")) == 1 and len(replicate_fake.created("wan")) == 1


def test_a_failed_video_prediction_fails_the_job_keeping_replicates_error_for_staff(replicate_fake):
    replicate_fake.script.outcome = "fail"
    owner = UserFactory()
    job = drive(make_job(owner, provider="replicate"))

    assert job.status == Job.FAILED and job.error_code == "provider_failed"
    assert "not been charged" in job.error_message
    assert "CUDA out of memory" in job.error_detail
    assert ledger.balance_of(owner) == 100


def test_an_aborted_prediction_which_the_client_cannot_parse_still_fails_the_job_readably(replicate_fake):
    replicate_fake.script.outcome = "aborted"
    owner = UserFactory()
    job = drive(make_job(owner, provider="replicate"))

    assert job.status == Job.FAILED and job.error_code == "provider_failed"
    assert "deadline exceeded" in job.error_detail
    assert ledger.balance_of(owner) == 100


def test_a_video_prediction_that_never_finishes_times_out_and_is_cancelled(replicate_fake, settings):
    replicate_fake.script.outcome = "never"
    owner = UserFactory()
    job = drive(make_job(owner, provider="replicate"), until=lambda job: job.status == Job.RUNNING)
    Job.objects.filter(pk=job.pk).update(submitted_at=timezone.now() - timedelta(seconds=settings.MAX_CHECK_TIME + 1))
    job = drive(job)

    assert job.status == Job.FAILED and job.error_code == "timed_out"
    [prediction] = replicate_fake.created()
    assert prediction.cancelled
    assert ledger.balance_of(owner) == 100


def test_an_output_that_could_not_be_fetched_is_fetched_again_on_the_next_poll(replicate_fake):
    replicate_fake.script.fail_next(502, endpoint="file")
    job = drive(make_job(provider="replicate"))

    assert job.status == Job.COMPLETED
    assert len(replicate_fake.calls("GET", "/files/")) == 2
    assert "result_unreachable" in " ".join(event.message for event in job.events.all())


def test_a_bad_token_fails_the_video_job_as_an_operator_problem(replicate_fake, settings):
    settings.REPLICATE_API_TOKEN = "r8_wrong"
    job = drive(make_job(provider="replicate"))

    assert job.status == Job.FAILED and job.error_code == "provider_auth"
    assert "operator problem" in job.error_message


def test_polls_of_a_video_prediction_keep_to_replicate_poll_interval(replicate_fake, settings):
    settings.REPLICATE_POLL_INTERVAL = 30.0
    job = drive(make_job(provider="replicate"), until=lambda job: job.status == Job.SUBMITTED)
    assert (job.next_poll_at - job.submitted_at).total_seconds() >= 30
    pipeline.advance(job.pk)  # the first look
    polls = len(replicate_fake.calls("GET", "/v1/predictions/"))
    assert polls == 1

    pipeline.advance(job.pk)  # delivered again at once: the floor holds
    job.refresh_from_db()

    assert len(replicate_fake.calls("GET", "/v1/predictions/")) == polls
    assert (job.next_poll_at - job.last_polled_at).total_seconds() >= 30


def test_cancelling_a_running_replicate_job_cancels_its_prediction(replicate_fake):
    replicate_fake.script.outcome = "never"
    owner = UserFactory()
    job = drive(make_job(owner, provider="replicate"), until=lambda job: job.status == Job.RUNNING)
    assert job.progress > 0  # read from the model's progress bar in the logs
    assert actions.can_cancel(job)

    actions.cancel_job(job, by=owner)

    job.refresh_from_db()
    [prediction] = replicate_fake.created()
    assert job.status == Job.CANCELLED and prediction.cancelled
    assert replicate_fake.calls("POST", f"/v1/predictions/{prediction.id}/cancel")
    assert ledger.balance_of(owner) == 100


def test_an_unmapped_model_leaves_the_provider_disabled(settings):
    settings.REPLICATE_API_TOKEN = "r8_test"
    settings.REPLICATE_VIDEO_MODEL = "someone/unknown-model"

    assert not ReplicateProvider.is_enabled()
