"""The job page: its status JSON, what a failure says, re-running with the
same or a new seed, cancelling, and the framed photo while waiting."""

from __future__ import annotations

import pytest
from django.urls import reverse

from jobs import pipeline
from jobs.models import Job
from tests.factories import UserFactory, make_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    return UserFactory(credits=50)


@pytest.fixture
def completed(user):
    job = make_job(user, seed=0)
    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.status == Job.COMPLETED and job.seed_used
    return job


def test_a_waiting_job_shows_progress_its_photo_and_a_cancel_button(logged_in, user):
    job = make_job(user)
    html = logged_in.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert 'id="job-progress"' in html and 'for="job-progress"' in html
    assert reverse("job-image", args=[job.pk]) in html
    assert reverse("job-cancel", args=[job.pk]) in html
    image = logged_in.get(reverse("job-image", args=[job.pk]))
    assert image.status_code == 200 and image["Content-Type"] == "image/png"


def test_a_job_its_provider_cannot_stop_hides_the_cancel_button(logged_in, user):
    job = make_job(user)
    assert logged_in.get(reverse("job-status", args=[job.pk])).json()["cancellable"] is True
    Job.objects.filter(pk=job.pk).update(status=Job.RUNNING, provider_job_id="render-1")  # local can't stop
    assert logged_in.get(reverse("job-status", args=[job.pk])).json()["cancellable"] is False
    html = logged_in.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert 'id="job-cancel" hidden' in html


def test_a_waiting_job_knows_its_place_in_the_queue(logged_in, user):
    make_job(UserFactory())
    job = make_job(user)
    status = logged_in.get(reverse("job-status", args=[job.pk])).json()
    assert status["queue_position"] == 2
    assert 'id="job-queue-n">2<' in logged_in.get(reverse("job-detail", args=[job.pk])).content.decode()
    pipeline.fail(job, "render_failed", "x")
    assert logged_in.get(reverse("job-status", args=[job.pk])).json()["queue_position"] is None


def test_a_completed_job_shows_video_download_poster_and_parameters(logged_in, completed):
    html = logged_in.get(reverse("job-detail", args=[completed.pk])).content.decode()
    assert reverse("job-video", args=[completed.pk]) + "?download=1" in html
    assert f'poster="{reverse("job-poster", args=[completed.pk])}"' in html
    assert str(completed.seed_used) in html and "(picked at random)" in html
    assert "Run again" in html and "Try a new seed" in html


def test_the_status_json_tells_a_final_job_and_the_balance(logged_in, completed):
    status = logged_in.get(reverse("job-status", args=[completed.pk])).json()
    assert status["final"] is True and status["status_label"] == "Completed"
    assert status["balance"] == 49
    assert status["video_url"] == reverse("job-video", args=[completed.pk])


def test_a_failed_job_says_why_and_what_to_do(logged_in, user):
    job = make_job(user)
    pipeline.fail(job, "render_failed", "The video could not be rendered.")
    status = logged_in.get(reverse("job-status", args=[job.pk])).json()
    assert status["error_message"] == "The video could not be rendered."
    assert "not charged" in status["advice"] and "Try again" in status["advice"]
    html = logged_in.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert "The video could not be rendered." in html and "Try again" in html


def test_a_refused_photo_gets_advice_to_use_another(logged_in, user):
    job = make_job(user)
    pipeline.fail(job, "content_moderation", "The provider flagged this image.")
    status = logged_in.get(reverse("job-status", args=[job.pk])).json()
    assert "Try a different photo" in status["advice"]


def test_run_again_keeps_the_seed_that_was_used(logged_in, completed):
    response = logged_in.post(reverse("job-rerun", args=[completed.pk]), {"seed": "same"})
    new = Job.objects.exclude(pk=completed.pk).get()
    assert response["Location"] == reverse("job-detail", args=[new.pk])
    assert new.seed == completed.seed_used
    assert (new.upload_id, new.cfg_scale, new.motion_bucket_id, new.provider) == (
        completed.upload_id,
        completed.cfg_scale,
        completed.motion_bucket_id,
        completed.provider,
    )


def test_a_new_seed_asks_for_a_random_one(logged_in, completed):
    logged_in.post(reverse("job-rerun", args=[completed.pk]), {"seed": "new"})
    assert Job.objects.exclude(pk=completed.pk).get().seed == 0


def test_try_again_on_a_failed_job_is_a_retry_in_its_timeline(logged_in, user):
    job = make_job(user, seed=5)
    pipeline.fail(job, "render_failed", "It broke.")
    logged_in.post(reverse("job-rerun", args=[job.pk]), {"seed": "same"})
    new = Job.objects.exclude(pk=job.pk).get()
    assert new.seed == 5
    assert job.events.filter(message__startswith=f"Retried as job {new.pk}").exists()


def test_a_job_still_running_is_not_run_again(logged_in, user):
    job = make_job(user)
    response = logged_in.post(reverse("job-rerun", args=[job.pk]), {"seed": "same"}, follow=True)
    assert "has not finished yet" in response.content.decode()
    assert Job.objects.count() == 1


def test_run_again_without_credits_says_so(client):
    owner = UserFactory(credits=1)
    job = make_job(owner)
    pipeline.advance(job.pk)
    client.force_login(owner)
    response = client.post(reverse("job-rerun", args=[job.pk]), {"seed": "new"}, follow=True)
    assert "Not enough credits" in response.content.decode()
    assert Job.objects.count() == 1


def test_cancel_from_the_job_page(logged_in, user):
    job = make_job(user)
    response = logged_in.post(reverse("job-cancel", args=[job.pk]))
    assert response["Location"] == reverse("job-detail", args=[job.pk])
    job.refresh_from_db()
    assert job.status == Job.CANCELLED
    status = logged_in.get(reverse("job-status", args=[job.pk])).json()
    assert status["final"] and "not charged" in status["advice"]


def test_another_users_job_is_not_found_for_every_page_and_action(logged_in):
    job = make_job(UserFactory())
    for name in ("job-detail", "job-status", "job-video", "job-poster", "job-image"):
        assert logged_in.get(reverse(name, args=[job.pk])).status_code == 404
    for name in ("job-cancel", "job-rerun"):
        assert logged_in.post(reverse(name, args=[job.pk])).status_code == 404
    assert Job.objects.count() == 1


def test_actions_need_a_post(logged_in, user):
    job = make_job(user)
    assert logged_in.get(reverse("job-rerun", args=[job.pk])).status_code == 405
    assert logged_in.get(reverse("job-cancel", args=[job.pk])).status_code == 405
