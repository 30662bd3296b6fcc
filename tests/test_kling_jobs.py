"""Kling jobs end to end through the native API: what an integrator sends, what
reaches AI/ML API (the fake, over real HTTP), and what comes back."""

from __future__ import annotations

import base64
import io
import json

import av
import pytest
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from jobs.ledger import balance_of
from jobs.models import Job, JobMask, LedgerEntry, Upload
from tests.api_helpers import image_file, key_client
from tests.factories import UserFactory
from tests.fakes.fixtures import aiml_server_fixture  # noqa: F401 (the aiml_server fixture)
from tests.pipeline_helpers import run_until_final

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_public_address(settings):
    settings.PUBLIC_BASE_URL = ""  # images go inline: nothing but the fake is reached


def mask_file(name: str, size=(1200, 700)) -> io.BytesIO:
    image = Image.new("L", size, 0)
    image.paste(255, (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    handle = io.BytesIO()
    image.save(handle, "PNG")
    handle.seek(0)
    handle.name = name
    return handle


def mask_data_uri() -> str:
    return "data:image/png;base64," + base64.b64encode(mask_file("m.png").getvalue()).decode()


def trajectory(*points: tuple[int, int]) -> list[dict]:
    return [{"x": x, "y": y} for x, y in points]


def create(client, **fields):
    return client.post("/api/v1/jobs", {"image": image_file(), "provider": "kling", **fields}, format="multipart")


def run(client, response) -> dict:
    assert response.status_code == 201, response.json()
    run_until_final(Job.objects.get(pk=response.json()["id"]))
    return client.get(f"/api/v1/jobs/{response.json()['id']}").json()


def test_a_kling_job_made_through_the_api_completes_with_a_video_that_decodes(aiml_server):
    client = key_client()
    detail = run(client, create(client, prompt="The tide comes in", duration=10, negative_prompt="blur"))

    assert detail["status"] == "completed" and detail["provider"] == "kling" and detail["cost"] == 10
    assert detail["parameters"]["duration"] == 10 and detail["parameters"]["prompt"] == "The tide comes in"
    assert detail["cancellable"] is False
    video = APIClient().get(detail["video"]["url"])
    with av.open(io.BytesIO(b"".join(video.streaming_content))) as container:
        assert sum(1 for _ in container.decode(video=0)) == detail["video"]["frames"] >= 14
    sent = aiml_server.submits[0].body
    assert (sent["prompt"], sent["duration"], sent["negative_prompt"]) == ("The tide comes in", 10, "blur")
    assert balance_of(client.user) == 90


def test_the_api_says_a_kling_job_cannot_be_cancelled_once_sent(aiml_server):
    aiml_server.script.never_finish = True
    client = key_client()
    response = create(client, prompt="x")
    run_until_final(Job.objects.get(pk=response.json()["id"]), rounds=1)

    job = client.get(f"/api/v1/jobs/{response.json()['id']}").json()
    assert job["status"] == "running" and job["cancellable"] is False
    refused = client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert refused.status_code == 409
    assert "Kling (AI/ML API), which cannot stop it; it will finish on its own" in refused.json()["error"]["message"]
    providers = {p["name"]: p for p in client.get("/api/v1/providers").json()}
    assert providers["kling"]["capabilities"]["supports_cancel"] is False


def test_a_failing_kling_job_shows_klings_message_through_the_api_and_gives_the_credits_back(aiml_server):
    aiml_server.script.failure = ("content_policy", "The prompt was flagged by the content policy")
    client = key_client()
    detail = run(client, create(client, prompt="A storm"))

    assert detail["status"] == "failed"
    assert detail["error"]["code"] == "provider_failed"
    assert "The prompt was flagged by the content policy" in detail["error"]["message"]
    assert balance_of(client.user) == 100


def test_a_tail_image_and_masks_reach_the_v1_model_under_its_own_field_names(aiml_server):
    client = key_client()
    masks = [{"mask": "dynamic_mask_1", "trajectories": trajectory((100, 100), (500, 300), (900, 500))}]
    response = create(
        client,
        prompt="The boat sails away",
        tail_image=image_file("end.jpg", seed=2),
        static_mask=mask_file("still.png"),
        dynamic_mask_1=mask_file("boat.png"),
        dynamic_masks=json.dumps(masks),
    )
    detail = run(client, response)

    assert detail["status"] == "completed", detail["error"]
    sent = aiml_server.submits[0].body
    seen = aiml_server.generations[Job.objects.get(pk=detail["id"]).provider_job_id].images
    assert seen["tail_image_url"] == (1024, 576), "the end frame was fitted to the photo's framing"
    assert seen["static_mask_url"] == (1024, 576) and seen["dynamic_masks[0].mask_url"] == (1024, 576)
    assert sent["dynamic_masks"][0]["trajectories"] == masks[0]["trajectories"]
    assert "static_mask" not in sent and "mask" not in sent["dynamic_masks"][0]
    assert detail["parameters"]["tail_image"] is True and detail["parameters"]["static_mask"] is True
    assert detail["parameters"]["dynamic_masks"] == [{"trajectories": masks[0]["trajectories"]}]


def test_masks_given_by_data_uri_in_json_reach_the_v2_1_model_as_static_mask_and_mask(aiml_server):
    client = key_client()
    photo = "data:image/jpeg;base64," + base64.b64encode(image_file().getvalue()).decode()
    body = {
        "data_uri": photo,
        "provider": "kling",
        "model": "kling-video/v2.1/standard/image-to-video",
        "prompt": "Leaves drift",
        "static_mask_url": mask_data_uri(),
        "dynamic_masks": [
            {"mask_url": mask_data_uri(), "trajectories": trajectory((10, 10), (20, 20))},
            {"mask_url": mask_data_uri(), "trajectories": trajectory((1023, 575), (0, 0))},
        ],
    }
    detail = run(client, client.post("/api/v1/jobs", body, format="json"))

    assert detail["status"] == "completed", detail["error"]
    sent = aiml_server.submits[0].body
    assert sent["duration"] == 5 and "static_mask" in sent and "static_mask_url" not in sent
    assert [sorted(mask) for mask in sent["dynamic_masks"]] == [["mask", "trajectories"]] * 2


@pytest.mark.parametrize(
    ("masks", "words"),
    [
        ([{"mask_url": "MASK", "trajectories": trajectory((1, 1))}], "dynamic_masks[0].trajectories must have from 2"),
        ([{"mask_url": "MASK", "trajectories": trajectory(*[(1, 1)] * 78)}], "from 2 to 77 points; it has 78"),
        ([{"mask_url": "MASK", "trajectories": trajectory((1, 1), (2, 2))}] * 7, "at most 6 dynamic masks; 7"),
        (
            [
                {"mask_url": "MASK", "trajectories": trajectory((1, 1), (2, 2))},
                {"mask_url": "MASK", "trajectories": trajectory((5, 5), (1024, 300))},
            ],
            "dynamic_masks[1].trajectories[1] is (1024, 300), outside the 1024x576 frame",
        ),
        ([{"mask_url": "MASK", "trajectories": trajectory((1.5, 1), (2, 2))}], "trajectories[0] must be whole"),
    ],
)
def test_mask_refusals_name_the_mask_and_point_before_anything_is_sent_or_held(aiml_server, masks, words):
    client = key_client()
    for mask in masks:
        mask["mask_url"] = mask_data_uri()
    body = {
        "data_uri": base64.b64encode(image_file().getvalue()).decode(),
        "provider": "kling",
        "prompt": "x",
        "dynamic_masks": masks,
    }
    response = client.post("/api/v1/jobs", body, format="json")

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert list(error["fields"]) == ["dynamic_masks"] and words in error["message"]
    assert not Job.objects.exists() and not Upload.objects.exists() and not JobMask.objects.exists()
    assert not LedgerEntry.objects.filter(user=client.user).exclude(kind="grant").exists()
    assert aiml_server.requests == []


def test_a_mask_that_is_not_an_image_is_refused_naming_it_and_nothing_is_kept(aiml_server):
    client = key_client()
    masks = [{"mask": "dynamic_mask_1", "trajectories": trajectory((1, 1), (2, 2))}]
    not_png = io.BytesIO(b"hello, I am text")
    not_png.name = "mask.png"
    response = create(client, prompt="x", dynamic_mask_1=not_png, dynamic_masks=json.dumps(masks))

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["dynamic_mask_1"]
    assert "not a JPEG or PNG" in response.json()["error"]["message"]
    assert not Upload.objects.exists() and not Job.objects.exists()
    assert aiml_server.requests == []


def test_a_mask_file_part_no_mask_names_is_refused(aiml_server):
    client = key_client()
    response = create(client, prompt="x", dynamic_mask_2=mask_file("m.png"))

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["dynamic_mask_2"]


def test_masks_for_a_provider_without_a_motion_brush_are_refused_naming_the_field(aiml_server):
    client = key_client()
    body = {"image": image_file(), "provider": "local", "static_mask": mask_file("m.png")}
    response = client.post("/api/v1/jobs", body, format="multipart")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "not_supported" and list(error["fields"]) == ["static_mask"]
    assert "providers that do: kling" in error["message"]
    assert not Upload.objects.exists()


def test_a_retried_kling_job_keeps_its_end_frame_and_masks(aiml_server):
    aiml_server.script.failure = ("busy", "Try again later")
    client = key_client()
    masks = [{"mask": "dynamic_mask_1", "trajectories": trajectory((100, 100), (200, 200))}]
    detail = run(
        client,
        create(
            client,
            prompt="x",
            tail_image=image_file("end.jpg"),
            dynamic_mask_1=mask_file("b.png"),
            dynamic_masks=json.dumps(masks),
        ),
    )
    assert detail["status"] == "failed"
    aiml_server.script.failure = None

    retried = client.post(f"/api/v1/jobs/{detail['id']}/retry")
    again = run(client, retried)

    assert again["status"] == "completed"
    assert again["parameters"]["tail_image"] is True
    assert "tail_image_url" in aiml_server.submits[-1].body
    assert aiml_server.submits[-1].body["dynamic_masks"][0]["trajectories"] == masks[0]["trajectories"]


def test_staff_see_the_credits_kling_used_the_end_frame_and_the_masks_in_the_admin(aiml_server, client):
    staff = UserFactory(is_staff=True, is_superuser=True, username="support")
    owner = key_client()
    masks = [{"mask": "dynamic_mask_1", "trajectories": trajectory((100, 100), (200, 220))}]
    detail = run(
        owner,
        create(
            owner,
            prompt="x",
            tail_image=image_file("end.jpg"),
            static_mask=mask_file("still.png"),
            dynamic_mask_1=mask_file("b.png"),
            dynamic_masks=json.dumps(masks),
        ),
    )
    client.force_login(staff)

    html = client.get(reverse("admin:jobs_job_change", args=[detail["id"]])).content.decode()

    credits = html[html.index("Provider credits used") :][:400]
    assert "420,000" in credits
    assert "End frame" in html and "static mask" in html
    assert "dynamic mask 1" in html and "(100, 100) → (200, 220) (2 points)" in html
