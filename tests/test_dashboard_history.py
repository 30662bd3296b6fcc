"""The history gallery: own videos only, filters, pages, cancel from the list,
empty states, and a fixed number of queries however many videos there are."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs import pipeline
from jobs.models import Job
from tests.factories import UserFactory, make_job, make_upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    return UserFactory(credits=1000)


def make_jobs(user, n: int, **params) -> list[Job]:
    upload = make_upload(user)
    return [make_job(user, upload=upload, **params) for _ in range(n)]


def test_it_says_what_to_do_when_there_are_no_videos(logged_in):
    html = logged_in.get(reverse("history")).content.decode()
    assert "No videos yet" in html and "Make your first video" in html


def test_it_shows_only_the_users_own_videos(logged_in, user):
    mine = make_jobs(user, 2)
    theirs = make_job(UserFactory())
    html = logged_in.get(reverse("history")).content.decode()
    assert all(str(job.pk) in html for job in mine)
    assert str(theirs.pk) not in html
    assert "2 videos" in html


def test_it_shows_poster_status_provider_and_date(logged_in, user):
    job = make_jobs(user, 1)[0]
    pipeline.advance(job.pk)
    job.refresh_from_db()
    html = logged_in.get(reverse("history")).content.decode()
    assert reverse("job-poster", args=[job.pk]) in html
    assert "Completed" in html and "Local (embedded, offline)" in html
    assert job.created_at.strftime("%b") in html


def test_it_filters_by_status_and_provider(logged_in, user):
    done, waiting = make_jobs(user, 2)
    pipeline.fail(done, "render_failed", "It broke.")
    html = logged_in.get(reverse("history"), {"status": "failed"}).content.decode()
    assert str(done.pk) in html and str(waiting.pk) not in html
    assert "Clear filters" in html

    html = logged_in.get(reverse("history"), {"provider": "stability"}).content.decode()
    assert "No videos match these filters" in html

    html = logged_in.get(reverse("history"), {"provider": "local", "status": "queued"}).content.decode()
    assert str(waiting.pk) in html and str(done.pk) not in html


def test_an_unknown_filter_value_is_ignored(logged_in, user):
    make_jobs(user, 1)
    response = logged_in.get(reverse("history"), {"status": "nonsense"})
    assert response.status_code == 200 and "1 video" in response.content.decode()


def test_pages_keep_the_filters(logged_in, user):
    make_jobs(user, 14)
    html = logged_in.get(reverse("history"), {"status": "queued"}).content.decode()
    assert "Page 1 of 2" in html
    assert "?status=queued&amp;page=2" in html
    assert "Page 2 of 2" in logged_in.get(reverse("history"), {"status": "queued", "page": 2}).content.decode()


def test_the_number_of_queries_does_not_grow_with_the_number_of_videos(logged_in, user, django_assert_max_num_queries):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert logged_in.get(reverse("history")).status_code == 200
        return len(queries)

    jobs = make_jobs(user, 5)
    pipeline.advance(jobs[0].pk)  # one with a poster
    few = count()
    make_jobs(user, 20)
    many = count()
    assert few == many
    with django_assert_max_num_queries(6):
        logged_in.get(reverse("history"), {"status": "queued", "provider": "local", "page": 2})


def test_a_waiting_video_can_be_cancelled_from_the_list(logged_in, user):
    job = make_jobs(user, 1)[0]
    html = logged_in.get(reverse("history")).content.decode()
    assert reverse("job-cancel", args=[job.pk]) in html
    back = reverse("history") + "?status=queued"
    response = logged_in.post(reverse("job-cancel", args=[job.pk]), {"next": back}, follow=True)
    assert response.redirect_chain[-1][0] == back
    assert "was cancelled" in response.content.decode()
    job.refresh_from_db()
    assert job.status == Job.CANCELLED


def test_a_video_its_provider_cannot_stop_offers_no_cancel(logged_in, user):
    job = make_jobs(user, 1)[0]
    Job.objects.filter(pk=job.pk).update(status=Job.RUNNING, provider_job_id="render-1")  # local can't stop
    html = logged_in.get(reverse("history")).content.decode()
    assert "Running" in html
    assert reverse("job-cancel", args=[job.pk]) not in html


def test_a_refused_cancel_is_said_on_the_page(logged_in, user):
    job = make_jobs(user, 1)[0]
    pipeline.advance(job.pk)
    response = logged_in.post(reverse("job-cancel", args=[job.pk]), {"next": reverse("history")}, follow=True)
    assert "already completed" in response.content.decode()
    assert 'role="alert"' in response.content.decode()


def test_cancel_does_not_redirect_to_another_site(logged_in, user):
    job = make_jobs(user, 1)[0]
    response = logged_in.post(reverse("job-cancel", args=[job.pk]), {"next": "https://example.com/"})
    assert response["Location"] == reverse("job-detail", args=[job.pk])


def test_another_users_video_cannot_be_cancelled(logged_in):
    job = make_job(UserFactory())
    assert logged_in.post(reverse("job-cancel", args=[job.pk])).status_code == 404
    assert logged_in.get(reverse("job-cancel", args=[job.pk])).status_code in (404, 405)
    job.refresh_from_db()
    assert job.status == Job.QUEUED
