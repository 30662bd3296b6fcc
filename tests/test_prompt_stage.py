"""The prompt stage: a provider that needs a prompt, given none, gets one from
Replicate's CLIP interrogator (the real ``replicate`` client against a fake
Replicate over HTTP on 127.0.0.1), as a resumable stage of the job."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs import actions, ledger, pipeline, sweeper
from jobs.creation import JobInputError
from jobs.models import Job
from providers import registry
from providers.local import LocalProvider
from tests.api_helpers import key_client
from tests.factories import UserFactory, make_job
from tests.fakes.replicate_server import CLIP_VERSION, FakeReplicateServer

pytestmark = pytest.mark.django_db
PROMPTS: list[str] = []


class PromptedProvider(LocalProvider):
    """Registered only by these tests: a provider that needs a prompt (renders locally)."""

    name = "prompted"
    label = "Prompted"
    needs_prompt = True

    def submit(self, request):
        PROMPTS.append(request.prompt)
        return super().submit(request)


@pytest.fixture(autouse=True)
def prompted_provider(monkeypatch, settings):
    monkeypatch.setitem(registry.PROVIDERS, "prompted", f"{__name__}.PromptedProvider")
    registry.provider_class.cache_clear()
    settings.LOCAL_FRAMES = 6  # short renders: these tests are about the prompt
    PROMPTS.clear()
    yield
    registry.provider_class.cache_clear()


@pytest.fixture
def replicate_fake(settings, monkeypatch):
    with FakeReplicateServer(token="r8_test") as fake:
        settings.REPLICATE_API_TOKEN = "r8_test"
        settings.REPLICATE_BASE_URL = fake.base_url
        settings.REPLICATE_POLL_INTERVAL = 0.0
        settings.DEFAULT_PROMPT = ""
        monkeypatch.setattr(pipeline, "MIN_POLL_GAP", 0.0)
        fake.script.finish_after_polls = 2
        yield fake


def drive(job: Job, until=lambda job: job.is_final, timeout: float = 30.0) -> Job:
    """Run the job's steps as the sweeper would, until ``until`` holds (or fail)."""
    deadline = time.monotonic() + timeout
    while True:
        pipeline.advance(job.pk)
        job.refresh_from_db()
        if until(job):
            return job
        assert time.monotonic() < deadline, f"job stuck in {job.status}: {job.status_message}"
        Job.objects.filter(pk=job.pk).update(last_polled_at=None)  # as if the poll floor had passed


def test_a_job_that_needs_a_prompt_gets_one_written_by_clip_and_the_video_uses_it(replicate_fake):
    owner = UserFactory()
    job = make_job(owner, provider="prompted")
    assert job.prompt == "" and job.prompt_source == ""

    job = drive(job)

    assert job.status == Job.COMPLETED
    assert job.prompt == replicate_fake.script.clip_text and job.prompt_source == Job.PROMPT_CLIP
    assert PROMPTS == [replicate_fake.script.clip_text]
    [prediction] = replicate_fake.created("clip")
    assert prediction.version == CLIP_VERSION  # created by version, as the original did
    assert prediction.input["clip_model_name"] == "ViT-L-14/openai" and prediction.input["mode"] == "best"
    assert prediction.input["image"].startswith("data:image/jpeg;base64,")  # no public address: the frame itself
    [create] = replicate_fake.calls("POST", "/v1/predictions")
    assert "Prefer" not in create.headers  # nothing waits on Replicate
    statuses = [event.to_status for event in job.events.all()]
    assert statuses.index(Job.DESCRIBING) < statuses.index(Job.SUBMITTED)


def test_a_model_id_without_a_version_is_run_on_the_models_own_endpoint(replicate_fake, settings):
    settings.REPLICATE_MODEL_ID = "pharmapsychotic/clip-interrogator"
    job = drive(make_job(provider="prompted"))

    assert job.status == Job.COMPLETED and job.prompt_source == Job.PROMPT_CLIP
    assert len(replicate_fake.calls("POST", "/v1/models/pharmapsychotic/clip-interrogator/predictions")) == 1


def test_with_a_public_address_clip_is_given_a_signed_link_to_the_photo(replicate_fake, settings):
    settings.PUBLIC_BASE_URL = "https://i2v.example.com"
    job = drive(make_job(provider="prompted"), until=lambda job: job.status == Job.DESCRIBING)

    [prediction] = replicate_fake.created("clip")
    assert prediction.input["image"].startswith(f"https://i2v.example.com/files/images/{job.upload_id}")


def test_the_prompt_and_its_origin_show_in_the_api_the_job_page_and_the_admin(replicate_fake, client):
    api = key_client()
    job = drive(make_job(api.user, provider="prompted"))

    body = api.get(reverse("api-job", args=[job.pk])).json()
    assert body["parameters"]["prompt"] == replicate_fake.script.clip_text
    assert body["parameters"]["prompt_source"] == "clip"

    client.force_login(api.user)
    page = client.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert replicate_fake.script.clip_text in page and "(written by CLIP from your photo)" in page

    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    admin_page = client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "Written by CLIP from the photo" in admin_page and job.prompt_job_id in admin_page


def test_a_redelivered_describing_step_polls_the_stored_prediction_instead_of_starting_another(replicate_fake):
    job = drive(make_job(provider="prompted"), until=lambda job: job.status == Job.DESCRIBING)
    stored = job.prompt_job_id
    assert stored

    pipeline.advance(job.pk)  # the same step delivered again, at once
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() + timedelta(minutes=5))
    pipeline.advance(job.pk)  # a worker holds it (it died mid-step): nothing happens
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    job = drive(job)  # its lease ran out: the next worker resumes it

    assert job.status == Job.COMPLETED and job.prompt_job_id == stored
    assert len(replicate_fake.created("clip")) == 1
    assert len(replicate_fake.calls("POST", "/v1/predictions")) == 1


def test_a_failed_clip_prediction_fails_the_job_with_replicates_words_for_staff_and_releases_the_credits(
    replicate_fake,
):
    replicate_fake.script.outcome = "fail"
    owner = UserFactory()
    job = drive(make_job(owner, provider="prompted"))

    assert job.status == Job.FAILED and job.error_code == "prompt_failed"
    assert "not been charged" in job.error_message and "give a prompt yourself" in job.error_message
    assert "CUDA out of memory" in job.error_detail
    assert ledger.balance_of(owner) == 100 and PROMPTS == []


def test_an_empty_description_fails_the_job_and_releases_the_credits(replicate_fake):
    replicate_fake.script.outcome = "empty"
    owner = UserFactory()
    job = drive(make_job(owner, provider="prompted"))

    assert job.status == Job.FAILED and job.error_code == "prompt_empty"
    assert "CLIP returned no description" in job.error_message
    assert ledger.balance_of(owner) == 100


def test_a_refused_token_is_reported_as_an_operator_problem(replicate_fake, settings):
    settings.REPLICATE_API_TOKEN = "r8_wrong"
    owner = UserFactory()
    job = drive(make_job(owner, provider="prompted"))

    assert job.status == Job.FAILED and job.error_code == "provider_auth"
    assert "operator problem" in job.error_message and "REPLICATE_API_TOKEN" in job.error_message
    assert "401" in job.error_detail
    assert ledger.balance_of(owner) == 100


def test_rate_limits_and_server_errors_while_describing_are_retried_until_the_prompt_arrives(replicate_fake):
    replicate_fake.script.fail_next(429, endpoint="create", retry_after=0)
    replicate_fake.script.fail_next(429, endpoint="get", retry_after=0)
    replicate_fake.script.fail_next(502, endpoint="get", count=2)
    job = drive(make_job(provider="prompted"))

    assert job.status == Job.COMPLETED and job.prompt_source == Job.PROMPT_CLIP
    assert len(replicate_fake.created("clip")) == 1
    notes = " ".join(event.message for event in job.events.all())
    assert "rate_limited" in notes and "provider_unavailable" in notes


def test_a_long_retry_after_is_kept_as_the_next_look_never_slept_in_the_worker(replicate_fake):
    job = drive(make_job(provider="prompted"), until=lambda job: job.status == Job.DESCRIBING)
    replicate_fake.script.fail_next(429, endpoint="get", retry_after=3600)

    started = time.monotonic()
    pipeline.advance(job.pk)
    job.refresh_from_db()

    assert time.monotonic() - started < 10
    assert job.status == Job.DESCRIBING
    assert job.next_poll_at > timezone.now() + timedelta(minutes=55)
    assert len(replicate_fake.calls("GET", f"/v1/predictions/{job.prompt_job_id}")) == 1  # no retry inside


def test_a_server_error_on_create_is_an_unknown_outcome_never_sent_again(replicate_fake):
    replicate_fake.script.fail_next(500, endpoint="create")
    owner = UserFactory()
    job = drive(make_job(owner, provider="prompted"))

    assert job.status == Job.FAILED and job.error_code == "provider_outcome_unknown"
    assert "not been sent again" in job.error_message
    assert len(replicate_fake.calls("POST", "/v1/predictions")) == 1
    assert ledger.balance_of(owner) == 100


def test_an_answer_that_is_not_json_fails_the_job_with_a_readable_message(replicate_fake):
    job = drive(make_job(provider="prompted"), until=lambda job: job.status == Job.DESCRIBING)
    replicate_fake.script.fail_next("malformed_json", endpoint="get")
    job = drive(job)

    assert job.status == Job.FAILED and job.error_code == "provider_bad_response"
    assert job.error_message == "Replicate sent an answer we could not understand."
    assert '{"id": "abc"' in job.error_detail


def test_a_description_that_never_finishes_times_out_and_its_prediction_is_cancelled(replicate_fake, settings):
    replicate_fake.script.outcome = "never"
    owner = UserFactory()
    job = drive(make_job(owner, provider="prompted"), until=lambda job: job.status == Job.DESCRIBING)
    pipeline.advance(job.pk)
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(seconds=settings.MAX_CHECK_TIME + 1))
    job = drive(job)

    assert job.status == Job.FAILED and job.error_code == "timed_out"
    assert "did not write a prompt in time" in job.error_message
    [prediction] = replicate_fake.created("clip")
    assert prediction.cancelled
    assert ledger.balance_of(owner) == 100


def test_cancelling_a_describing_job_stops_the_clip_prediction_and_releases_the_credits(replicate_fake):
    owner = UserFactory()
    job = drive(make_job(owner, provider="prompted"), until=lambda job: job.status == Job.DESCRIBING)
    assert actions.can_cancel(job)

    actions.cancel_job(job, by=owner)

    job.refresh_from_db()
    assert job.status == Job.CANCELLED
    [prediction] = replicate_fake.created("clip")
    assert prediction.cancelled and prediction.status == "canceled"
    assert ledger.balance_of(owner) == 100
    pipeline.advance(job.pk)  # a late delivery changes nothing
    assert PROMPTS == [] and len(replicate_fake.created()) == 1


def test_due_describing_jobs_are_polled_in_batches(replicate_fake, monkeypatch):
    batches, singles = [], []
    monkeypatch.setattr(sweeper, "enqueue_batch", lambda ids: batches.append(list(ids)))
    monkeypatch.setattr(sweeper, "enqueue_advance", lambda job_id: singles.append(job_id))
    jobs = [drive(make_job(provider="prompted"), until=lambda job: job.status == Job.DESCRIBING) for _ in range(3)]
    Job.objects.filter(pk__in=[job.pk for job in jobs]).update(next_poll_at=timezone.now())

    sweeper.sweep()

    handed = [str(job_id) for batch in batches for job_id in batch]
    assert sorted(handed) == sorted(str(job.pk) for job in jobs) and singles == []


# --- without a Replicate token ------------------------------------------------


@pytest.fixture
def no_token(settings):
    settings.REPLICATE_API_TOKEN = ""
    settings.DEFAULT_PROMPT = ""


def test_without_a_token_the_users_prompt_is_used(no_token):
    job = drive(make_job(provider="prompted", prompt="a fox turns its head"))

    assert job.status == Job.COMPLETED and job.prompt_source == Job.PROMPT_USER
    assert PROMPTS == ["a fox turns its head"]


def test_without_a_token_or_a_prompt_default_prompt_is_used(no_token, settings):
    settings.DEFAULT_PROMPT = "gentle camera drift"
    job = drive(make_job(provider="prompted"))

    assert job.status == Job.COMPLETED
    assert (job.prompt, job.prompt_source) == ("gentle camera drift", Job.PROMPT_DEFAULT)


def test_without_a_token_a_prompt_or_a_default_the_job_is_refused_saying_what_to_set(no_token):
    owner = UserFactory()
    with pytest.raises(JobInputError) as refused:
        make_job(owner, provider="prompted")

    assert refused.value.field == "prompt" and refused.value.code == "prompt_required"
    assert "REPLICATE_API_TOKEN" in refused.value.message and "DEFAULT_PROMPT" in refused.value.message
    assert not owner.jobs.exists() and ledger.balance_of(owner) == 100


def test_the_api_refuses_such_a_job_with_a_400_that_says_what_to_set(no_token, settings):
    from tests.api_helpers import image_file

    # A real provider that needs a prompt: the API's provider choices are fixed when it is
    # imported, so a provider registered by a test is not among them.
    settings.PIKAPI_BEARER_TOKEN = "pika-key"
    settings.PUBLIC_BASE_URL = "https://i2v.example.com"
    api = key_client()
    response = api.post(reverse("api-jobs"), {"image": image_file(), "provider": "pika"}, format="multipart")

    assert response.status_code == 400, response.content
    assert "DEFAULT_PROMPT" in response.content.decode()
    assert not api.user.jobs.exists()


def test_a_job_given_a_prompt_never_asks_clip(replicate_fake):
    job = drive(make_job(provider="prompted", prompt="waves roll in"))

    assert job.status == Job.COMPLETED and job.prompt_source == Job.PROMPT_USER
    assert replicate_fake.requests == []
