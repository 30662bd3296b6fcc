"""The queue position is one number: the API tells what the job page tells."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs import actions
from jobs.models import Job
from jobs.queue_position import queue_position
from tests.api_helpers import key_client
from tests.factories import UserFactory, make_job

pytestmark = pytest.mark.django_db


def shown(client, api, job: Job) -> dict:
    """The position as each surface shows it: the API's detail and list, the page and its live status."""
    listed = {row["id"]: row["queue_position"] for row in api.get("/api/v1/jobs").json()["results"]}
    page = client.get(reverse("job-detail", args=[job.pk])).content.decode()
    position = queue_position(job)
    return {
        "api detail": api.get(f"/api/v1/jobs/{job.pk}").json()["queue_position"],
        "api list": listed[str(job.pk)],
        "page status": client.get(reverse("job-status", args=[job.pk])).json()["queue_position"],
        "page": f'id="job-queue-n">{"" if position is None else position}<' in page,
    }


def test_two_queued_jobs_are_first_and_second_in_the_api_and_on_the_page(client):
    user = UserFactory()
    client.force_login(user)
    api = key_client(user)
    first, second = make_job(user), make_job(user)
    assert shown(client, api, first) == {"api detail": 1, "api list": 1, "page status": 1, "page": True}
    assert shown(client, api, second) == {"api detail": 2, "api list": 2, "page status": 2, "page": True}

    actions.cancel_job(first, by=user)  # the line moves up
    assert shown(client, api, second) == {"api detail": 1, "api list": 1, "page status": 1, "page": True}
    assert shown(client, api, first) == {"api detail": None, "api list": None, "page status": None, "page": True}


def test_the_line_counts_everyones_jobs_and_breaks_a_tie_in_time_by_id():
    someone, me = UserFactory(), UserFactory()
    theirs, mine = make_job(someone), make_job(me)
    at = timezone.now()
    Job.objects.filter(pk__in=[theirs.pk, mine.pk]).update(created_at=at)
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert sorted([queue_position(theirs), queue_position(mine)]) == [1, 2]  # never both 1
    api = key_client(me)
    assert api.get(f"/api/v1/jobs/{mine.pk}").json()["queue_position"] == queue_position(mine)


def test_once_the_provider_has_the_job_its_own_queue_position_is_shown(client):
    user = UserFactory()
    client.force_login(user)
    api = key_client(user)
    make_job(UserFactory())  # ahead in our queue, but the job below has left it
    job = make_job(user)
    Job.objects.filter(pk=job.pk).update(status=Job.SUBMITTED, queue_position=5)
    job.refresh_from_db()
    assert shown(client, api, job) == {"api detail": 5, "api list": 5, "page status": 5, "page": True}


def test_the_admin_shows_the_same_position_as_the_page(admin_client):
    user = UserFactory()
    make_job(user)
    second = make_job(user)
    html = admin_client.get(reverse("admin:jobs_job_change", args=[second.pk])).content.decode()
    assert "position in queue" in html.lower()
    assert '<div class="readonly">2</div>' in html
