"""A field an endpoint does not know is refused and named, never silently
dropped (and the job charged with the default in its place); a length limit is
the one the schema states."""

from __future__ import annotations

import pytest
from rest_framework import serializers
from rest_framework.test import APIClient

from jobs.api.serializers import JobCreateJsonInput
from jobs.ledger import balance_of
from jobs.models import ApiKey, IdempotencyRecord, Job, LedgerEntry, Upload
from tests.api_helpers import image_file, key_client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_compat_provider(settings):
    settings.COMPAT_PROVIDER = "local"


def assert_nothing_was_made_or_held(client) -> None:
    assert not Job.objects.exists() and not Upload.objects.exists()
    assert not LedgerEntry.objects.filter(user=client.user).exclude(kind=LedgerEntry.GRANT).exists()
    assert balance_of(client.user) == 100


def test_a_misspelt_multipart_field_is_refused_by_name_and_nothing_is_charged():
    client = key_client()
    response = client.post("/api/v1/jobs", {"image": image_file(), "motoin": "200"}, format="multipart")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid" and list(error["fields"]) == ["motoin"]
    assert error["message"].startswith("motoin: Unknown field.")
    assert "motion_bucket_id" in error["fields"]["motoin"][0]  # it says what the request takes
    assert_nothing_was_made_or_held(client)


def test_misspelt_json_fields_are_all_named_with_what_was_probably_meant():
    client = key_client()
    body = {"image_url": "https://example.com/a.jpg", "motoin_bucket_id": 200, "cfg": 5}
    response = client.post("/api/v1/jobs", body, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"motoin_bucket_id", "cfg"}
    assert "Did you mean motion_bucket_id?" in fields["motoin_bucket_id"][0]
    assert_nothing_was_made_or_held(client)


def test_a_json_body_cannot_carry_an_image_file_field():
    client = key_client()
    response = client.post("/api/v1/jobs", {"image": "aGVsbG8=", "provider": "local"}, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert list(fields) == ["image"] and "image_url, data_uri" in fields["image"][0]


def test_a_json_body_without_an_image_is_told_the_two_ways_json_can_carry_one():
    response = key_client().post("/api/v1/jobs", {"provider": "local"}, format="json")
    assert response.json()["error"]["fields"]["image"] == ["Send exactly one of image_url or data_uri."]


def test_every_known_field_is_still_accepted():
    client = key_client()
    fields = {
        "image": image_file(),
        "framing": "square",
        "provider": "local",
        "model": "camera-motion",
        "seed": "7",
        "cfg_scale": "2.5",
        "motion_bucket_id": "180",
        "prompt": "a harbour",
        "negative_prompt": "blur",
        "request_id": "order-7",
    }
    response = client.post("/api/v1/jobs", fields, format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["parameters"]["motion_bucket_id"] == 180


def test_a_field_declared_on_the_serializer_later_is_accepted_without_other_changes():
    class WithLoop(JobCreateJsonInput):
        loop = serializers.IntegerField(required=False)

    body = {"image_url": "https://example.com/a.jpg", "loop": 4}
    assert WithLoop(data=body).is_valid(), WithLoop(data=body).errors
    refused = JobCreateJsonInput(data=body)
    assert not refused.is_valid() and list(refused.errors) == ["loop"]


def test_a_providers_declared_parameter_is_a_known_field():
    body = {"image_url": "https://example.com/a.jpg", "duration": 4, "fps": 30}
    assert JobCreateJsonInput(data=body).is_valid(), JobCreateJsonInput(data=body).errors


def test_a_refused_create_leaves_its_idempotency_key_free_for_the_corrected_request():
    client = key_client()
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-9"}
    refused = client.post("/api/v1/jobs", {"image": image_file(), "motoin": "1"}, format="multipart", **headers)
    assert refused.status_code == 400
    assert not IdempotencyRecord.objects.exists()
    fixed = client.post("/api/v1/jobs", {"image": image_file(), "motion_bucket_id": "1"}, format="multipart", **headers)
    assert fixed.status_code == 201


def test_an_unknown_field_of_a_new_key_is_refused_and_no_key_is_made():
    client = key_client()
    response = client.post("/api/v1/keys", {"name": "CI", "label": "CI server"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"label": ["Unknown field. This request takes name."]}
    assert ApiKey.objects.filter(user=client.user).count() == 1  # the client's own


def test_a_key_name_over_100_characters_is_refused_even_when_it_starts_with_whitespace():
    client = key_client()
    response = client.post("/api/v1/keys", {"name": "\f" + "k" * 100}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["name"] == ["Ensure this field has no more than 100 characters."]
    # At the limit it is taken, trimmed.
    created = client.post("/api/v1/keys", {"name": " " + "k" * 99}, format="json")
    assert created.status_code == 201 and created.json()["name"] == "k" * 99


def test_a_job_text_field_counts_its_length_before_trimming_too():
    response = key_client().post(
        "/api/v1/jobs", {"image": image_file(), "request_id": "\t" + "r" * 128}, format="multipart"
    )
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["request_id"]


def test_the_schema_says_which_bodies_refuse_other_properties():
    components = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()["components"]["schemas"]
    strict = {name for name, schema in components.items() if schema.get("additionalProperties") is False}
    requests = {"JobCreateInputRequest", "JobCreateJsonInputRequest", "ApiKeyInputRequest"}
    assert requests | {"CompatImageToVideoRequest"} <= strict
    # An answer may grow new keys: a client must not be told they can never come.
    assert "JobOutput" not in strict and "ApiKeyOutput" not in strict
    # The name may be blank, or text without NUL of at most 100 characters, counted as sent.
    name = components["ApiKeyInputRequest"]["properties"]["name"]["oneOf"]
    assert {"type": "string", "pattern": "^[^\\x00]+$", "maxLength": 100} in name


# --- the Stability-compatible start: the spec's fields, in its own error shape -------------


def test_the_compat_start_takes_exactly_what_the_specs_clients_send(django_capture_on_commit_callbacks):
    # The spec's Python and browser examples both send image, seed, cfg_scale and motion_bucket_id.
    client = key_client()
    fields = {"image": image_file(), "seed": "0", "cfg_scale": "1.5", "motion_bucket_id": "127"}
    response = client.post("/api/img2video", fields, format="multipart")
    assert response.status_code == 200, response.json()


def test_the_compat_start_refuses_an_unknown_field_in_its_own_error_shape():
    client = key_client()
    response = client.post(
        "/api/img2video", {"image": image_file(), "motoin": "200", "steps": "30"}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "Unknown fields motoin, steps: this endpoint takes image, seed, cfg_scale and motion_bucket_id."
    }
    assert_nothing_was_made_or_held(client)
