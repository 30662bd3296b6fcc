"""No 500 from a request body or a path: deeply nested JSON and a NUL in a path
are refused with 4xx in the error shape, on SQLite and on PostgreSQL."""

from __future__ import annotations

import logging

import pytest
from rest_framework.test import APIClient

from jobs.api.parsers import MAX_DEPTH, depth_of
from jobs.models import ApiKey, Job
from tests.api_helpers import key_client
from tests.factories import make_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def caller():
    client = key_client()
    client.job = make_job(client.user)
    return client


def nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


# Every POST of the native API that reads a JSON body.
JSON_ENDPOINTS = ["/api/v1/jobs", "/api/v1/keys"]


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        nested(1000),
        nested(100_000),
        b'{"name": ' + nested(1000) + b"}",
        b'{"a":' * 1000 + b"1" + b"}" * 1000,
        b'{"name": ' + nested(MAX_DEPTH) + b"}",
    ],
    ids=["array-1000", "array-100000", "inside-a-field", "objects-1000", "just-past-the-bound"],
)
def test_deeply_nested_json_is_a_400_parse_error_not_a_500(caller, caplog, path, body):
    with caplog.at_level(logging.ERROR):
        response = caller.post(path, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "parse_error" and f"more than {MAX_DEPTH} levels" in error["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback in the log
    assert not ApiKey.objects.filter(user=caller.user).exclude(name="tests").exists()


def test_json_within_the_bound_is_parsed_as_before(caller):
    # One level under the bound: the body parses, and the field is then refused for what it is.
    response = caller.post("/api/v1/keys", b'{"name": ' + nested(MAX_DEPTH - 1) + b"}", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid" and "name" in response.json()["error"]["fields"]


def test_nested_json_to_a_post_without_a_body_is_harmless(caller):
    response = caller.post(f"/api/v1/jobs/{caller.job.pk}/cancel", nested(1000), content_type="application/json")
    assert response.status_code == 200


def test_nested_json_to_the_compat_start_is_its_own_400(caller):
    response = caller.post("/api/img2video", nested(1000), content_type="application/json")
    assert response.status_code == 400
    assert set(response.json()) == {"error"} and "multipart/form-data" in response.json()["error"]


def test_nesting_depth_is_measured_without_recursion():
    assert depth_of(1) == 0 and depth_of([]) == 1 and depth_of({"a": [1, {"b": []}]}) == 4
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert depth_of(deep) > MAX_DEPTH  # stops early, and never recurses


@pytest.mark.parametrize("prefix", ["%00", "abc%00def", "%00" * 20, "x" * 17, "caf%C3%A9", "a%20b"])
def test_revoking_a_key_that_cannot_exist_is_a_404(caller, prefix):
    response = caller.delete(f"/api/v1/keys/{prefix}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_revoking_a_real_key_by_its_prefix_still_works(caller):
    prefix = ApiKey.objects.get(user=caller.user).prefix
    other = key_client()
    assert other.delete(f"/api/v1/keys/{prefix}").status_code == 404  # another user's key
    assert caller.delete(f"/api/v1/keys/{prefix}").status_code == 204
    assert caller.get("/api/v1/credits").status_code == 401  # it was the caller's own key


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs/%00",
        "/api/v1/jobs/{job}/%00",
        "/api/v1/jobs?status=%00",
        "/api/v1/jobs?provider=%00",
        "/api/v1/jobs/{job}/video?token=%00",
        "/api/img2video/result/%00",
        "/processed_videos/video_%00_1.mp4",
    ],
)
def test_a_nul_anywhere_else_in_a_path_or_query_is_a_4xx(caller, path):
    response = caller.get(path.format(job=caller.job.pk))
    assert 400 <= response.status_code < 500, response.content[:300]
    assert "error" in response.json()


def test_an_anonymous_nul_is_refused_before_any_query():
    assert APIClient().get("/api/v1/jobs/%00/video?token=%00").status_code == 404
    assert Job.objects.count() == 0


@pytest.mark.parametrize("path", ["/api/v1/credits", "/api/img2video/result/" + "0" * 32])
def test_a_nul_in_the_bearer_key_is_a_401(path):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer i2v_ab\x00cd_secret")
    response = client.get(path)
    assert response.status_code == 401
    assert "error" in response.json()
