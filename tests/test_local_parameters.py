"""The local provider's duration and fps: declared once, honoured, refused out of range.

The declaration (providers/local.py) is what the API's providers listing and
create fields, the dashboard form, validation and ``manage.py animate`` read;
these tests go through each of those doors and decode the MP4 that comes out.
"""

from __future__ import annotations

import base64
import io
import json
import re

import av
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from jobs import actions, pipeline
from jobs.creation import JobInputError, validate_parameters
from jobs.forms import CreateJobForm
from jobs.models import Job
from providers import registry
from providers.local import LocalProvider
from providers.params import COMMON, Param, ParamError
from tests.api_helpers import image_file, key_client
from tests.factories import UserFactory, make_job, photo_bytes
from tests.pipeline_helpers import local_copy


def decoded(path) -> tuple[int, float, float]:
    """Frames, frame rate and duration (s) of an MP4, by decoding it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, float(stream.average_rate), container.duration / 1_000_000


@pytest.mark.django_db
def test_a_job_renders_the_duration_and_frame_rate_it_was_given():
    job = make_job(UserFactory(), extra_params={"duration": 2.5, "fps": 30})

    pipeline.advance(job.pk)

    job.refresh_from_db()
    assert job.status == Job.COMPLETED, job.error_detail
    assert job.extra_params == {"duration": 2.5, "fps": 30}
    frames, rate, seconds = decoded(local_copy(job.video))
    assert (frames, rate) == (75, 30.0)
    assert seconds == pytest.approx(2.5, abs=0.05)


@pytest.mark.django_db
def test_a_job_without_them_is_a_five_second_clip_at_24_fps():
    job = make_job(UserFactory())

    pipeline.advance(job.pk)

    job.refresh_from_db()
    assert job.extra_params == {"duration": 5.0, "fps": 24}
    frames, rate, seconds = decoded(local_copy(job.video))
    assert (frames, rate) == (120, 24.0)
    assert seconds == pytest.approx(5.0, abs=0.05)


@pytest.mark.parametrize(
    ("given", "field", "message"),
    [
        ({"duration": 0.5}, "duration", "duration must be from 1 to 10 s; got 0.5."),
        ({"duration": 60}, "duration", "duration must be from 1 to 10 s; got 60."),
        ({"fps": 60}, "fps", "fps must be from 12 to 30 fps; got 60."),
        ({"fps": 24.5}, "fps", "fps must be a whole number from 12 to 30 fps; got 24.5."),
        ({"fps": "fast"}, "fps", "fps must be a whole number from 12 to 30 fps; got 'fast'."),
    ],
)
@pytest.mark.django_db
def test_values_outside_the_declared_range_are_refused_with_the_range(given, field, message):
    with pytest.raises(JobInputError) as refused:
        validate_parameters(provider="local", extra_params=given)

    assert (refused.value.field, refused.value.message) == (field, message)


@pytest.mark.django_db
def test_a_parameter_the_provider_does_not_take_is_refused_naming_those_it_does(settings):
    settings.STABILITY_API_KEY = "sk-test"

    with pytest.raises(JobInputError) as refused:
        validate_parameters(provider="stability", extra_params={"duration": 3})

    assert refused.value.field == "duration"
    assert refused.value.message == (
        "duration is not a parameter of the stability provider; it takes seed, cfg_scale, motion_bucket_id."
    )


@pytest.mark.django_db
def test_the_providers_listing_shows_whole_numbers_as_integers_and_every_parameter():
    response = key_client().get("/api/v1/providers")

    local = next(row for row in response.json() if row["name"] == "local")
    assert local["parameters"]["motion_bucket_id"] == {
        "type": "int",
        "minimum": 1,
        "maximum": 255,
        "default": 127,
        "meaning": "How far the camera moves: 1 is almost still, 255 is a big, sweeping move.",
        "required": False,
    }
    assert local["parameters"]["duration"]["minimum"] == 1.0 and local["parameters"]["duration"]["default"] == 5.0
    assert local["parameters"]["duration"]["unit"] == "s"
    assert (local["parameters"]["fps"]["minimum"], local["parameters"]["fps"]["maximum"]) == (12, 30)
    assert local["parameters"]["fps"]["default"] == 24
    text = response.content.decode()
    assert '"default":127,' in text.replace(" ", "") and "127.0" not in text
    assert '"maximum":4294967294,' in text.replace(" ", "")
    assert list(local["parameters"]) == ["seed", "cfg_scale", "motion_bucket_id", "duration", "fps"]


@pytest.mark.django_db(transaction=True)
def test_the_api_takes_duration_and_fps_as_create_fields(django_capture_on_commit_callbacks):
    client = key_client()

    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(
            "/api/v1/jobs",
            {"image": image_file(), "provider": "local", "duration": "2", "fps": "12"},
            format="multipart",
        )

    assert created.status_code == 201, created.json()
    detail = client.get(f"/api/v1/jobs/{created.json()['id']}").json()
    assert (detail["parameters"]["duration"], detail["parameters"]["fps"]) == (2.0, 12)
    assert detail["status"] == "completed" and detail["video"]["frames"] == 24
    assert detail["video"]["duration"] == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"duration": 11}, "duration must be from 1 to 10 s; got 11."),
        ({"fps": 8}, "fps must be from 12 to 30 fps; got 8."),
        ({"fps": 24.5}, "A valid integer is required."),
        ({"duration": "long"}, "A valid number is required."),
    ],
)
@pytest.mark.django_db
def test_the_api_refuses_a_value_out_of_range_with_the_range(body, message):
    client = key_client()
    data_uri = "data:image/jpeg;base64," + base64.b64encode(photo_bytes()).decode()

    response = client.post("/api/v1/jobs", {"data_uri": data_uri, **body}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["fields"] == {next(iter(body)): [message]}
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_the_dashboard_refuses_a_duration_out_of_range_next_to_its_control(client):
    user = UserFactory()
    client.force_login(user)
    body = {"framing": "auto", "provider": "local", "motion_bucket_id": "127", "cfg_scale": "1.8"}
    body |= {"seed_mode": "random", "duration": "12", "fps": "24"}
    body["image"] = SimpleUploadedFile("photo.jpg", photo_bytes(), content_type="image/jpeg")

    response = client.post(reverse("home"), body)

    assert response.status_code == 400
    html = response.content.decode()
    shown = re.search(r'<p class="error" role="alert" id="param-duration-error"\s*>(.*?)</p>', html, re.S)
    assert shown and shown.group(1) == "duration must be from 1 to 10 s; got 12."
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_the_dashboard_shows_each_parameter_with_its_range_and_meaning(client):
    client.force_login(UserFactory())

    html = client.get(reverse("home")).content.decode()

    assert re.search(r'name="duration" id="id_duration" min="1" max="10" step="0.5"\s+value="5.0"', html)
    assert re.search(r'name="fps" id="id_fps" min="12" max="30" step="1"\s+value="24"', html)
    assert 'id="param-duration-help" class="param-meaning">How long the video lasts, in seconds.</small>' in html
    data = json.loads(re.search(r'id="provider-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    local = next(p for p in data if p["name"] == "local")
    assert [p["name"] for p in local["parameters"]] == ["duration", "fps"]


@pytest.mark.django_db
def test_a_retried_job_keeps_its_duration_and_fps():
    job = make_job(UserFactory(), extra_params={"duration": 3, "fps": 25})
    Job.objects.filter(pk=job.pk).update(status=Job.FAILED)
    job.refresh_from_db()

    again = actions.retry_job(job)

    assert again.extra_params == {"duration": 3.0, "fps": 25}


@pytest.mark.django_db(transaction=True)
def test_animate_takes_duration_and_fps(tmp_path):
    image = tmp_path / "photo.jpg"
    image.write_bytes(photo_bytes(1200, 700))
    out = tmp_path / "video.mp4"

    call_command(
        "animate",
        str(image),
        "--out",
        str(out),
        "--duration",
        "1.5",
        "--fps",
        "16",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )

    frames, rate, _ = decoded(out)
    assert (frames, rate) == (24, 16.0)


@pytest.mark.django_db(transaction=True)
def test_animate_refuses_a_duration_out_of_range(tmp_path):
    image = tmp_path / "photo.jpg"
    image.write_bytes(photo_bytes(1200, 700))

    with pytest.raises(CommandError, match=r"duration: duration must be from 1 to 10 s; got 30\."):
        call_command("animate", str(image), "--duration", "30", stdout=io.StringIO(), stderr=io.StringIO())


def test_a_choice_parameter_takes_only_its_choices():
    aspect = Param("look", "choice", "warm", "Colour grading.", choices=("warm", "cool"))

    assert aspect.parse("cool") == "cool" and aspect.parse(None) == "warm"
    assert aspect.describe()["choices"] == ["warm", "cool"]
    with pytest.raises(ParamError, match=r"look must be warm or cool; got 'hot'\."):
        aspect.parse("hot")


def test_a_declaration_whose_default_is_outside_its_range_is_refused():
    with pytest.raises(ValueError, match="range that holds its default"):
        Param("fps", "int", 60, "Frames per second.", minimum=12, maximum=30)


class DemoProvider(LocalProvider):
    """A provider with a parameter of its own, registered only by these tests."""

    name = "demo"
    label = "Demo"
    parameters = (*COMMON, Param("look", "choice", "warm", "Colour grading of the clip.", choices=("warm", "cool")))


@pytest.fixture
def demo_provider(monkeypatch):
    monkeypatch.setitem(registry.PROVIDERS, "demo", f"{__name__}.DemoProvider")
    registry.provider_class.cache_clear()
    yield
    registry.provider_class.cache_clear()


@pytest.mark.django_db
def test_a_new_provider_s_parameter_reaches_the_listing_the_form_and_validation_from_its_declaration(
    client, demo_provider
):
    listed = key_client().get("/api/v1/providers").json()
    demo = next(row for row in listed if row["name"] == "demo")
    assert demo["parameters"]["look"] == {
        "type": "choice",
        "choices": ["warm", "cool"],
        "default": "warm",
        "meaning": "Colour grading of the clip.",
        "required": False,
    }

    client.force_login(UserFactory())
    html = client.get(reverse("home")).content.decode()
    assert re.search(r'<div class="field provider-param" data-param="look"\s+hidden>', html)
    assert 'name="look" id="id_look"' in html

    assert validate_parameters(provider="demo", extra_params={"look": "cool"})["extra_params"] == {"look": "cool"}
    with pytest.raises(JobInputError, match="look must be warm or cool; got 'hot'"):
        validate_parameters(provider="demo", extra_params={"look": "hot"})


@pytest.mark.django_db
def test_the_openapi_schema_lists_duration_and_fps_as_create_fields(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    fields = schema["components"]["schemas"]["JobCreateJsonInputRequest"]["properties"]
    assert fields["duration"]["type"] == "number" and fields["fps"]["type"] == "integer"
    assert "local: from 1 to 10 s, default 5.0" in fields["duration"]["description"]


@pytest.mark.django_db
def test_a_job_whose_stored_frame_rate_is_out_of_range_fails_with_a_reason_instead_of_crashing():
    job = make_job(UserFactory())
    Job.objects.filter(pk=job.pk).update(extra_params={"duration": 5.0, "fps": 99})

    pipeline.advance(job.pk)

    job.refresh_from_db()
    assert (job.status, job.error_code) == (Job.FAILED, "bad_parameters")
    assert job.error_message == "This job's settings cannot be rendered: fps must be from 12 to 30 fps; got 99."


@pytest.mark.django_db
def test_a_form_filled_in_from_a_job_shows_its_duration_and_fps():
    # What "run again with changes" does: initial values from the job, by field name.
    form = CreateJobForm(initial={"provider": "local", "duration": 3.0, "fps": 30})

    assert {"duration", "fps"} <= set(CreateJobForm.base_fields)
    # Other providers' controls are there too, hidden (param None) while local is chosen.
    shown = {control.name: control.value for control in form.parameter_controls if control.param is not None}
    assert shown == {"duration": 3.0, "fps": 30}
