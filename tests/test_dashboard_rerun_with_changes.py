""" "Run again with changes": the create form filled in from one of the user's
jobs, with its photo used again (the owner's own, while it is stored)."""

from __future__ import annotations

import re

import pytest
from django import forms
from django.urls import reverse

from jobs import pipeline
from jobs.creation import create_upload
from jobs.forms import CreateJobForm
from jobs.models import Job, Upload
from jobs.views import prefill
from tests.api_helpers import image_file
from tests.factories import UserFactory, make_job, make_upload, photo_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished(user, settings):
    settings.LOCAL_FRAMES = 8
    job = make_job(
        user,
        upload=make_upload(user, width=600, height=600, framing="square"),
        motion_bucket_id=40,
        cfg_scale=3.5,
        prompt="slow pan over the hills",
        negative_prompt="blur",
    )
    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.status == Job.COMPLETED and job.seed_used
    return job


def create_page(client, job) -> str:
    response = client.get(reverse("home") + f"?from={job.pk}")
    assert response.status_code == 200
    return response.content.decode()


def checked(html: str, name: str) -> str:
    return re.search(rf'<input type="radio" name="{name}" id="[^"]+" value="([^"]+)"\s+checked', html).group(1)


def test_the_job_page_links_to_the_filled_in_form(logged_in, finished):
    html = logged_in.get(reverse("job-detail", args=[finished.pk])).content.decode()
    assert f'href="{reverse("home")}?from={finished.pk}"' in html and "Run again with changes" in html


def test_the_form_is_filled_with_the_jobs_settings_and_photo(logged_in, finished):
    html = create_page(logged_in, finished)
    assert checked(html, "provider") == "local"
    assert re.search(r'<option value="camera-motion"\s+selected', html)
    assert re.search(r'id="id_framing_square" value="square"\s+checked', html)
    assert re.search(r'id="id_motion_bucket_id" min="1" max="255" step="1"\s+value="40"', html)
    assert re.search(r'id="id_cfg_scale" min="0" max="10" step="0.1"\s+value="3.5"', html)
    assert re.search(r'id="id_seed_mode_fixed" value="fixed"\s+checked', html)
    assert f'value="{finished.seed_used}"' in html
    assert ">slow pan over the hills</textarea>" in html and ">blur</textarea>" in html
    assert f'name="photo_from" id="id_photo_from" value="{finished.pk}"' in html
    assert reverse("job-image", args=[finished.pk]) in html


def test_every_extra_parameter_the_form_has_a_field_for_is_filled_in(user):
    class WithDuration(CreateJobForm):
        duration = forms.IntegerField(required=False)
        fps = forms.IntegerField(required=False)

    job = make_job(user)
    Job.objects.filter(pk=job.pk).update(extra_params={"duration": 4, "fps": 24, "not_a_field": 1, "provider": "x"})
    job.refresh_from_db()
    initial = prefill(job, WithDuration.base_fields, photo=True)
    assert initial["duration"] == 4 and initial["fps"] == 24
    assert "not_a_field" not in initial
    assert initial["provider"] == "local"  # the job's own columns win over a stray key
    assert WithDuration(initial=initial)["duration"].value() == 4


def test_sending_the_form_without_a_file_uses_the_same_upload(logged_in, finished, user):
    uploads = Upload.objects.count()
    response = logged_in.post(
        reverse("home"),
        {
            "photo_from": finished.pk,
            "framing": "square",
            "provider": "local",
            "model": "camera-motion",
            "motion_bucket_id": 200,
            "cfg_scale": 3.5,
            "seed_mode": "fixed",
            "seed": finished.seed_used,
        },
    )
    assert response.status_code == 302
    new = Job.objects.exclude(pk=finished.pk).get()
    assert response["Location"] == reverse("job-detail", args=[new.pk])
    assert new.upload_id == finished.upload_id and Upload.objects.count() == uploads
    assert (new.motion_bucket_id, new.seed) == (200, finished.seed_used)


def test_another_framing_frames_the_same_original_anew(logged_in, finished):
    response = logged_in.post(
        reverse("home"),
        {
            "photo_from": finished.pk,
            "framing": "landscape",
            "provider": "local",
            "motion_bucket_id": 127,
            "cfg_scale": 2,
        },
    )
    assert response.status_code == 302
    new = Job.objects.exclude(pk=finished.pk).get()
    assert (new.width, new.height) == (1024, 576)
    assert new.upload_id != finished.upload_id and new.upload.sha256 == finished.upload.sha256


def test_a_new_file_wins_over_the_reused_photo(logged_in, finished):
    response = logged_in.post(
        reverse("home"),
        {
            "photo_from": finished.pk,
            "image": image_file(width=800, height=450),
            "provider": "local",
            "motion_bucket_id": 127,
            "cfg_scale": 2,
        },
    )
    assert response.status_code == 302
    new = Job.objects.exclude(pk=finished.pk).get()
    assert new.upload_id != finished.upload_id and new.upload.sha256 != finished.upload.sha256


def test_another_users_photo_cannot_be_used(client, finished):
    stranger = UserFactory()
    client.force_login(stranger)
    assert client.get(reverse("home") + f"?from={finished.pk}").status_code == 404
    response = client.post(
        reverse("home"), {"photo_from": finished.pk, "provider": "local", "motion_bucket_id": 127, "cfg_scale": 2}
    )
    assert response.status_code == 400
    assert "no longer available; choose the photo again" in response.content.decode()
    assert not Job.objects.filter(owner=stranger).exists()


def test_a_photo_no_longer_stored_is_asked_for_again_with_the_settings_kept(logged_in, finished):
    finished.upload.original.storage.delete(finished.upload.original.name)
    html = create_page(logged_in, finished)
    assert 'name="photo_from"' not in html
    assert "no longer available; choose the photo again" in html
    assert ">slow pan over the hills</textarea>" in html
    response = logged_in.post(
        reverse("home"), {"photo_from": finished.pk, "provider": "local", "motion_bucket_id": 127, "cfg_scale": 2}
    )
    assert response.status_code == 400 and "choose the photo again" in response.content.decode()


def test_a_malformed_job_id_is_a_404_not_a_500(logged_in):
    assert logged_in.get(reverse("home") + "?from=not-a-job").status_code == 404


@pytest.fixture
def kling_with_end_frame(user, settings):
    settings.AIMLAPI_KEY = "aiml-key"  # nothing is sent: the jobs are only made
    settings.PUBLIC_BASE_URL = ""
    end = create_upload(owner=user, source=photo_bytes(1600, 900, seed=4), filename="dusk.jpg", framing="1024x576")
    return make_job(user, provider="kling", prompt="night falls", tail_upload=end)


def kling_form(job, **changes) -> dict:
    return {
        "photo_from": job.pk,
        "tail_from": job.pk,
        "framing": "auto",
        "provider": "kling",
        "model": job.model,
        "motion_bucket_id": job.motion_bucket_id,
        "cfg_scale": job.cfg_scale,
        "seed_mode": "random",
        "prompt": job.prompt,
        "duration": 5,
        **changes,
    }


def test_the_form_keeps_the_end_frame_of_the_earlier_video(logged_in, kling_with_end_frame):
    html = create_page(logged_in, kling_with_end_frame)
    assert f'name="tail_from" id="id_tail_from" value="{kling_with_end_frame.pk}"' in html
    assert reverse("job-tail-image", args=[kling_with_end_frame.pk]) in html
    assert "Using the end frame of" in html and "(dusk.jpg)" in html


def test_sending_the_form_without_a_new_end_frame_keeps_the_earlier_one(logged_in, kling_with_end_frame):
    response = logged_in.post(reverse("home"), kling_form(kling_with_end_frame, framing="square"))

    assert response.status_code == 302, response.content.decode()[:500]
    new = Job.objects.exclude(pk=kling_with_end_frame.pk).get()
    assert new.tail_upload.original_name == "dusk.jpg"
    # Framed again for the new photo's framing, from the same original.
    assert (new.width, new.height) == (new.tail_upload.width, new.tail_upload.height) == (768, 768)
    assert new.tail_upload.original.read() == kling_with_end_frame.tail_upload.original.read()


def test_a_new_end_frame_wins_over_the_kept_one(logged_in, kling_with_end_frame):
    other = image_file(name="sunrise.jpg")
    response = logged_in.post(reverse("home"), {**kling_form(kling_with_end_frame), "tail_image": other})

    assert response.status_code == 302
    assert Job.objects.exclude(pk=kling_with_end_frame.pk).get().tail_upload.original_name == "sunrise.jpg"


def test_the_kept_end_frame_is_dropped_for_a_provider_that_takes_none(logged_in, kling_with_end_frame):
    form = kling_form(kling_with_end_frame, provider="local", model="camera-motion")
    form.pop("duration")
    response = logged_in.post(reverse("home"), form)

    assert response.status_code == 302, response.content.decode()[:500]
    assert Job.objects.exclude(pk=kling_with_end_frame.pk).get().tail_upload is None


def test_another_users_end_frame_cannot_be_used(client, kling_with_end_frame):
    client.force_login(UserFactory())
    form = {**kling_form(kling_with_end_frame), "photo_from": "", "image": image_file()}
    response = client.post(reverse("home"), form)

    assert response.status_code == 302
    assert Job.objects.exclude(pk=kling_with_end_frame.pk).get().tail_upload is None
