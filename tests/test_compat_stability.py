"""The Stability-compatible endpoints reproduce stability-img2video-api.md exactly:
its own Python example, run unchanged but for the host and a key, gets a video."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import av
import pytest
import requests
from rest_framework.test import APIClient

from jobs import pipeline
from jobs.models import Job
from jobs.sweeper import expire_results
from tests.api_helpers import image_file, key_client
from tests.factories import make_job, photo_bytes
from tests.fakes.fixtures import stability_server_fixture  # noqa: F401

EXAMPLE = Path(__file__).parent / "fixtures" / "stability_example.py"
EXAMPLE_MARKER = "# ----- example starts on the next line -----\n"
STARTED = "Video generation started. Poll for results using the returned ID."
IN_PROGRESS = {"status": "in-progress", "message": "Video generation is still in progress. Try again in a few seconds."}
pytestmark = pytest.mark.django_db

VIDEO_URL = re.compile(r"^/processed_videos/video_[A-Za-z0-9_.\-]+_(\d+)\.mp4$")


@pytest.fixture(autouse=True)
def _default_provider_choice(settings):
    settings.COMPAT_PROVIDER = ""
    settings.STABILITY_API_KEY = ""


def start(client, capture=None, **fields):
    fields.setdefault("image", image_file())
    if capture is None:
        return client.post("/api/img2video", fields, format="multipart")
    with capture(execute=True):
        return client.post("/api/img2video", fields, format="multipart")


def job_of(response) -> Job:
    return Job.objects.get(pk=response.json()["id"])


# --- the acceptance check: the spec's own client --------------------------------------------


def adapted_example(base_url: str, key: str, image_path: Path) -> str:
    """The spec's Python example with only the host, the image path and a key header changed."""
    code = EXAMPLE.read_text().split(EXAMPLE_MARKER, 1)[1]
    edits = [
        ("http://your-website.com", base_url, 3),
        ('image_path = "path/to/your/image.jpg"', f"image_path = {str(image_path)!r}", 1),
        ("import os\n", f"import os\nAUTH = {{'Authorization': 'Bearer {key}'}}\n", 1),
        (
            "requests.post(upload_url, files=files, data=params)",
            "requests.post(upload_url, files=files, data=params, headers=AUTH)",
            1,
        ),
        ("requests.get(result_url)", "requests.get(result_url, headers=AUTH)", 1),
    ]
    for old, new, count in edits:
        assert code.count(old) == count, f"the example changed: {old!r} is not there {count} time(s)"
        code = code.replace(old, new)
    return code


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_spec_python_example_run_unchanged_gets_a_video_it_can_download_and_decode(
    live_server, cluster_factory, tmp_path
):
    cluster = cluster_factory(STABILITY_API_KEY="", COMPAT_PROVIDER="")
    cluster.start("worker")
    cluster.start("sweeper")
    client = key_client()
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_bytes(1600, 900))  # 16:9
    script = tmp_path / "example.py"
    script.write_text(adapted_example(live_server.url, client.raw_key, photo))
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env)

    out = run.stdout
    assert run.returncode == 0, f"{out}\n{run.stderr}\n{cluster.log.read_text()[-3000:]}"
    assert "Video generation complete!" in out, out
    assert "Finish reason: SUCCESS" in out
    generation_id = re.search(r"Generation started with ID: ([0-9a-f]{32})$", out, re.M)[1]
    seed = re.search(r"^Seed: (\d+)$", out, re.M)[1]
    url = re.search(r"^Video URL: (\S+)$", out, re.M)[1]
    assert url.startswith(f"{live_server.url}/processed_videos/video_") and url.endswith(f"_{seed}.mp4")
    job = Job.objects.get(pk=generation_id)
    assert (job.provider, job.status, str(job.seed_used)) == ("local", Job.COMPLETED, seed)
    assert (job.cfg_scale, job.motion_bucket_id, job.seed) == (1.5, 127, 0)

    session = requests.Session()
    session.trust_env = False  # straight to 127.0.0.1, never a proxy
    video = session.get(url, timeout=30)  # no key: a <video src> sends none
    assert video.status_code == 200 and video.headers["Content-Type"] == "video/mp4"
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = list(container.decode(video=0))
    assert (frames[0].width, frames[0].height) == (1024, 576)
    assert len(frames) >= 14

    partial = session.get(url, headers={"Range": "bytes=0-99"}, timeout=30)
    assert partial.status_code == 206
    assert partial.headers["Content-Range"] == f"bytes 0-99/{len(video.content)}"
    assert partial.content == video.content[:100]


# --- POST /api/img2video ---------------------------------------------------------------------


def test_a_start_answers_exactly_the_spec_success_shape(django_capture_on_commit_callbacks):
    client = key_client()
    response = start(client, django_capture_on_commit_callbacks)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"success", "id", "message"}
    assert body["success"] is True and body["message"] == STARTED
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"])
    assert Job.objects.get(pk=body["id"]).owner == client.user


def test_the_defaults_are_the_specs_and_a_random_seed_comes_back_as_a_string(django_capture_on_commit_callbacks):
    client = key_client()
    job = job_of(start(client, django_capture_on_commit_callbacks))
    assert (job.cfg_scale, job.motion_bucket_id, job.seed, job.provider) == (1.5, 127, 0, "local")

    response = client.get(f"/api/img2video/result/{job.pk.hex}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "video_url", "finish_reason", "seed"}
    assert body["status"] == "complete" and body["finish_reason"] == "SUCCESS"
    job.refresh_from_db()
    assert isinstance(body["seed"], str) and body["seed"] == str(job.seed_used) and job.seed_used > 0
    assert VIDEO_URL.match(body["video_url"])[1] == body["seed"]


def test_the_spec_parameters_are_used_as_sent(django_capture_on_commit_callbacks):
    client = key_client()
    fields = {"seed": "12345", "cfg_scale": "2.5", "motion_bucket_id": "200"}
    job = job_of(start(client, django_capture_on_commit_callbacks, **fields))
    assert (job.seed, job.seed_used, job.cfg_scale, job.motion_bucket_id) == (12345, 12345, 2.5, 200)
    body = client.get(f"/api/img2video/result/{job.pk}").json()  # the dashed UUID works too
    assert body["seed"] == "12345"
    assert body["video_url"].endswith("_12345.mp4")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"cfg_scale": "11"}, "cfg_scale must be from 0 to 10"),
        ({"cfg_scale": "-0.5"}, "cfg_scale must be from 0 to 10"),
        ({"cfg_scale": "lots"}, "cfg_scale must be a number from 0 to 10"),
        ({"cfg_scale": "nan"}, "cfg_scale must be from 0 to 10"),
        ({"motion_bucket_id": "0"}, "motion_bucket_id must be from 1 to 255"),
        ({"motion_bucket_id": "256"}, "motion_bucket_id must be from 1 to 255"),
        ({"motion_bucket_id": "12.5"}, "motion_bucket_id must be a whole number from 1 to 255"),
        ({"seed": "-1"}, "seed must be from 0 to 4294967294"),
        ({"seed": "4294967295"}, "seed must be from 0 to 4294967294"),
        ({"seed": "x"}, "seed must be a whole number from 0 to 4294967294"),
    ],
)
def test_out_of_range_parameters_are_a_400_naming_the_parameter_and_its_range(fields, words):
    client = key_client()
    response = start(client, **fields)
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    assert words in response.json()["error"]
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (io.BytesIO(b"%PDF-1.4 not a photo at all"), "not a JPEG or PNG"),
        (io.BytesIO(photo_bytes(800, 600, fmt="GIF")), "JPEG or PNG"),
        (io.BytesIO(b"\xff\xd8\xff" + b"\0" * (10 * 1024 * 1024)), "10 MB or smaller"),
    ],
    ids=["pdf", "gif", "over-10-MB"],
)
def test_an_image_that_is_not_a_jpeg_or_png_of_at_most_10_mb_is_a_400(image, words):
    image.name = "photo.jpg"  # the name does not matter: the content does
    response = start(key_client(), image=image)
    assert response.status_code == 400
    assert words in response.json()["error"]
    assert Job.objects.count() == 0


def test_a_start_without_an_image_is_a_400():
    client = key_client()
    response = client.post("/api/img2video", {"seed": 0}, format="multipart")
    assert response.status_code == 400
    assert "image is required" in response.json()["error"]
    response = client.post("/api/img2video", {"image": "x"}, format="json")
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]


def test_an_oversized_body_is_a_413_in_the_spec_error_shape():
    response = key_client().post(
        "/api/img2video", b"x", content_type="multipart/form-data; boundary=x", CONTENT_LENGTH=str(50 * 2**20)
    )
    assert response.status_code == 413
    assert set(response.json()) == {"error"} and "10 MB" in response.json()["error"]


def test_without_a_key_or_with_a_wrong_one_both_endpoints_answer_401_with_an_error():
    job = make_job()
    anonymous = APIClient()
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Bearer i2v_deadbeef_nope")
    for client, words in [(anonymous, "Authorization: Bearer"), (wrong, "wrong or revoked")]:
        created = client.post("/api/img2video", {"image": image_file()}, format="multipart")
        polled = client.get(f"/api/img2video/result/{job.pk.hex}")
        for response in (created, polled):
            assert response.status_code == 401
            assert set(response.json()) == {"error"} and words in response.json()["error"]
            assert response["WWW-Authenticate"].startswith("Bearer")
    assert Job.objects.count() == 1


def test_a_caller_who_cannot_pay_gets_a_402(stability_server, settings):
    settings.COMPAT_PROVIDER = "stability"  # 20 credits a video
    response = start(key_client(credits=5))
    assert response.status_code == 402
    assert "Not enough credits" in response.json()["error"]
    assert Job.objects.count() == 0


def test_a_provider_that_is_not_configured_is_the_servers_500_not_the_callers_400(settings):
    settings.COMPAT_PROVIDER = "stability"  # but no STABILITY_API_KEY
    response = start(key_client())
    assert response.status_code == 500
    assert "not available" in response.json()["error"]
    assert Job.objects.count() == 0


def test_a_trailing_slash_works_too(django_capture_on_commit_callbacks):
    client = key_client()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/img2video/", {"image": image_file()}, format="multipart")
    assert response.status_code == 200
    assert client.get(f"/api/img2video/result/{response.json()['id']}/").status_code == 200


# --- the provider setting -------------------------------------------------------------------


def test_compat_provider_stability_hands_the_job_to_stability(
    stability_server, settings, django_capture_on_commit_callbacks
):
    settings.COMPAT_PROVIDER = "stability"
    client = key_client()
    job = job_of(start(client, django_capture_on_commit_callbacks, cfg_scale="0.5"))
    assert (job.provider, job.cost, job.status) == ("stability", 20, Job.COMPLETED)
    submitted = stability_server.jobs[0]
    assert (submitted.cfg_scale, submitted.motion_bucket_id) == (0.5, 127)
    body = client.get(f"/api/img2video/result/{job.pk.hex}").json()
    assert body["status"] == "complete" and body["seed"] == str(submitted.seed)


@pytest.mark.parametrize(
    ("setting", "key", "expected"), [("", "", "local"), ("", "sk-x", "stability"), ("local", "sk-x", "local")]
)
def test_an_empty_compat_provider_means_stability_when_its_key_is_set(settings, setting, key, expected):
    from jobs.compat_stability import compat_provider

    settings.COMPAT_PROVIDER, settings.STABILITY_API_KEY = setting, key
    assert compat_provider() == expected


# --- GET /api/img2video/result/{id} ---------------------------------------------------------


def test_a_job_not_yet_final_answers_202_in_progress():
    client = key_client()
    job = job_of(start(client))  # no worker ran it
    for status in (Job.QUEUED, Job.SUBMITTED, Job.RUNNING, Job.FINALIZING):
        Job.objects.filter(pk=job.pk).update(status=status)
        response = client.get(f"/api/img2video/result/{job.pk.hex}")
        assert response.status_code == 202
        assert response.json() == IN_PROGRESS


def test_the_poll_is_lean_one_key_lookup_and_one_job_query(
    django_capture_on_commit_callbacks, django_assert_num_queries
):
    client = key_client()
    job_id = start(client, django_capture_on_commit_callbacks).json()["id"]
    client.get(f"/api/img2video/result/{job_id}")  # the key's last use was just written
    with django_assert_num_queries(2):
        assert client.get(f"/api/img2video/result/{job_id}").status_code == 200


def test_unknown_malformed_and_other_users_ids_are_404(django_capture_on_commit_callbacks):
    owner = key_client()
    job_id = start(owner, django_capture_on_commit_callbacks).json()["id"]
    stranger = key_client()
    for client, generation_id in [
        (stranger, job_id),
        (owner, "0" * 32),
        (owner, "not-an-id"),
    ]:
        response = client.get(f"/api/img2video/result/{generation_id}")
        assert response.status_code == 404, generation_id
        assert set(response.json()) == {"error"}
    assert owner.get(f"/api/img2video/result/{job_id}").status_code == 200


def test_a_failed_job_is_a_500_with_its_message():
    client = key_client()
    job = make_job(client.user)
    pipeline.fail(job, "provider_failed", "Stability could not make this video (ERROR).", "detail for staff")
    response = client.get(f"/api/img2video/result/{job.pk.hex}")
    assert response.status_code == 500
    assert response.json() == {"error": "Stability could not make this video (ERROR)."}


def test_a_content_filtered_result_is_a_500_that_says_so(
    stability_server, settings, django_capture_on_commit_callbacks
):
    settings.COMPAT_PROVIDER = "stability"
    stability_server.script.finish_reason = "CONTENT_FILTERED"
    client = key_client()
    job = job_of(start(client, django_capture_on_commit_callbacks))
    assert job.status == Job.FAILED
    response = client.get(f"/api/img2video/result/{job.pk.hex}")
    assert response.status_code == 500
    body = response.json()
    assert body["finish_reason"] == "CONTENT_FILTERED" and "content filter" in body["error"]


def test_a_result_past_retention_is_404(django_capture_on_commit_callbacks):
    client = key_client()
    job = job_of(start(client, django_capture_on_commit_callbacks))
    url = client.get(f"/api/img2video/result/{job.pk.hex}").json()["video_url"]
    Job.objects.filter(pk=job.pk).update(expires_at=job.created_at)
    assert expire_results() == 1
    response = client.get(f"/api/img2video/result/{job.pk.hex}")
    assert response.status_code == 404 and "deleted" in response.json()["error"]
    assert APIClient().get(url).status_code == 404


# --- the video link ----------------------------------------------------------------------


def test_the_video_link_works_without_a_key_and_answers_ranges(django_capture_on_commit_callbacks):
    client = key_client()
    job = job_of(start(client, django_capture_on_commit_callbacks))
    url = client.get(f"/api/img2video/result/{job.pk.hex}").json()["video_url"]
    anonymous = APIClient()
    video = anonymous.get(url)
    assert video.status_code == 200 and video["Content-Type"] == "video/mp4"
    content = b"".join(video.streaming_content)
    with av.open(io.BytesIO(content)) as container:
        assert sum(1 for _ in container.decode(video=0)) == job.video_frames
    partial = anonymous.get(url, HTTP_RANGE="bytes=100-199")
    assert partial.status_code == 206 and partial["Content-Range"] == f"bytes 100-199/{len(content)}"


def test_an_expired_forged_or_altered_video_link_is_404(django_capture_on_commit_callbacks, settings, monkeypatch):
    client = key_client()
    job = job_of(start(client, django_capture_on_commit_callbacks))
    other = job_of(start(client, django_capture_on_commit_callbacks))
    url = client.get(f"/api/img2video/result/{job.pk.hex}").json()["video_url"]
    seed = VIDEO_URL.match(url)[1]
    cut = len(url) - len(f"_{seed}.mp4")  # the signature ends here
    anonymous = APIClient()
    assert anonymous.get(url).status_code == 200

    forged = [
        url.replace(job.pk.hex, other.pk.hex),  # someone else's job under this signature
        url.replace(f"_{seed}.mp4", f"_{int(seed) + 1}.mp4"),  # another seed
        f"{url[: cut - 1]}{'A' if url[cut - 1] != 'A' else 'B'}{url[cut:]}",  # a changed signature
        f"/processed_videos/video_{job.pk.hex}_{seed}.mp4",  # no token at all
        "/processed_videos/../../etc/passwd",
    ]
    for bad in forged:
        assert bad != url
        response = anonymous.get(bad)
        assert response.status_code == 404, bad

    settings.RESULT_LINK_SECONDS = 60
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + timedelta(minutes=5).total_seconds())
    response = anonymous.get(url)
    assert response.status_code == 404 and "expired" in response.json()["error"]
    # Polling again gives a fresh link that works.
    fresh = client.get(f"/api/img2video/result/{job.pk.hex}").json()["video_url"]
    assert anonymous.get(fresh).status_code == 200
