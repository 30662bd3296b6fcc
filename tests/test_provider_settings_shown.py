"""A job's own provider settings (the local provider's duration and frame rate)
are shown on its page and in the admin, labelled from the provider's declaration."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import UserFactory, make_job

pytestmark = pytest.mark.django_db


def test_the_job_page_shows_the_duration_and_frame_rate_asked_for(client):
    owner = UserFactory()
    job = make_job(owner, extra_params={"duration": 2.5, "fps": 30})
    client.force_login(owner)
    html = client.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert "<dt>Duration</dt><dd>2.5 s</dd>" in html
    assert "<dt>Frame rate</dt><dd>30 fps</dd>" in html


def test_the_admin_shows_them_by_label_not_as_raw_json(admin_client):
    job = make_job(extra_params={"duration": 4})
    html = admin_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "Duration: 4 s<br>Frame rate: 24 fps" in html
    assert "{&quot;duration&quot;" not in html
