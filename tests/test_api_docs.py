"""The API describes itself: OpenAPI schema, Swagger UI, ReDoc, and GET /."""

from collections.abc import Iterator

import pytest
from django.utils.dateparse import parse_datetime
from jsonschema import Draft202012Validator, FormatChecker
from rest_framework.test import APIClient

from tests.api_helpers import image_file, key_client
from tests.factories import make_job

pytestmark = pytest.mark.django_db


def test_the_schema_lists_every_operation_with_bearer_auth():
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert schema["info"]["title"] == "i2v API"
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/providers", "/api/v1/credits"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    create = schema["paths"]["/api/v1/jobs"]["post"]
    assert {"201", "400", "402", "409", "413", "422"} <= set(create["responses"])


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_documentation_pages_load_without_any_outside_host(client, path):
    html = client.get(path).content.decode()
    assert "/api/schema/" in html
    assert "cdn" not in html.lower() and "https://" not in html.split("<body")[0].lower()


def test_get_root_with_json_accept_describes_the_api(client):
    body = client.get("/", HTTP_ACCEPT="application/json").json()
    assert body["name"] == "i2v" and body["version"]
    assert body["endpoints"]["jobs"] == "/api/v1/jobs"


def test_get_root_from_a_browser_is_the_dashboard(client):
    assert client.get("/", HTTP_ACCEPT="text/html").status_code == 302  # to the login page


# --- examples ----------------------------------------------------------------------------

HTTP_METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture
def schema() -> dict:
    return APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()


def operations(schema: dict) -> Iterator[tuple[str, dict]]:
    """Each operation of the native API as ("POST /api/v1/jobs", operation)."""
    for path, item in schema["paths"].items():
        if path.startswith("/api/v1/"):
            for method, operation in item.items():
                if method in HTTP_METHODS:
                    yield f"{method.upper()} {path}", operation


def bodies(operation: dict) -> Iterator[tuple[str, str, dict]]:
    """Each body an operation documents as (status or "request", media type, content)."""
    for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
        yield "request", media_type, content
    for status, response in operation["responses"].items():
        for media_type, content in response.get("content", {}).items():
            yield status, media_type, content


def example_value(schema: dict, label: str, status: str, name: str) -> object:
    method, path = label.split(" ", 1)
    content = schema["paths"][path][method.lower()]["responses"][status]["content"]["application/json"]
    # drf-spectacular keys an example by its name in CamelCase and keeps the name as its summary.
    return next(e["value"] for key, e in content["examples"].items() if name in (key, e.get("summary")))


def to_json_schema(node: object) -> object:
    """OpenAPI 3.0's ``nullable`` spelled as JSON Schema; the rest already is JSON Schema."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: to_json_schema(value) for key, value in node.items() if key != "nullable"}
    return {"anyOf": [converted, {"type": "null"}]} if node.get("nullable") else converted


FORMATS = FormatChecker()


@FORMATS.checks("date-time")
def _is_datetime(value: object) -> bool:
    # jsonschema checks date-time only with an optional package; Django's parser is strict enough.
    return not isinstance(value, str) or parse_datetime(value) is not None


def key_differences(example: object, real: object, where: str = "") -> list[str]:
    """Where an example's keys differ from a real body's, all the way down. A null on either
    side matches anything: a queued job's `video` is null where a completed one's is an object."""
    if isinstance(example, dict) and isinstance(real, dict):
        differences = []
        if example.keys() != real.keys():
            differences.append(f"{where or 'body'}: {sorted(example.keys() ^ real.keys())} in only one of them")
        for key in example.keys() & real.keys():
            differences += key_differences(example[key], real[key], f"{where}.{key}")
        return differences
    if isinstance(example, list) and isinstance(real, list) and example and real:
        return key_differences(example[0], real[0], f"{where}[0]")
    if example is not None and real is not None and isinstance(example, dict | list) != isinstance(real, dict | list):
        return [f"{where}: {type(example).__name__} in the example, {type(real).__name__} in the real body"]
    return []


def test_every_operation_has_examples_for_its_request_and_responses(schema):
    labels = [label for label, _ in operations(schema)]
    assert len(labels) == 12, labels
    missing = [
        f"{label} {status} {media_type}"
        for label, operation in operations(schema)
        for status, media_type, content in bodies(operation)
        if not content.get("examples")
    ]
    assert missing == []
    # An answer without a body has nothing to show; only the key revocation has one.
    bodiless = [
        f"{label} {status}"
        for label, operation in operations(schema)
        for status, response in operation["responses"].items()
        if "content" not in response
    ]
    assert bodiless == ["DELETE /api/v1/keys/{prefix} 204"]


def test_every_operation_documents_a_success_and_the_errors_a_caller_can_get(schema):
    for label, operation in operations(schema):
        statuses = set(operation["responses"])
        assert any(s.startswith("2") for s in statuses), label
        assert any(s.startswith("4") for s in statuses), label
        if label != "GET /api/v1/jobs/{job_id}/{kind}":  # a signed link needs no key
            assert {"401", "429"} <= statuses, label


def test_every_json_example_has_a_value_and_every_error_example_its_own_status(schema):
    for label, operation in operations(schema):
        for status, media_type, content in bodies(operation):
            for name, example in content.get("examples", {}).items():
                if media_type in ("application/json", "multipart/form-data"):
                    assert "value" in example, f"{label} {status} {name}"
                if status.startswith(("4", "5")):
                    assert example["value"]["error"]["status"] == int(status), f"{label} {status} {name}"


def test_every_example_matches_its_own_schema(schema):
    components = to_json_schema(schema["components"])
    checked, problems = 0, []
    for label, operation in operations(schema):
        for status, media_type, content in bodies(operation):
            # The `$ref`s point into the document's components: carry them along.
            validator = Draft202012Validator(
                {**to_json_schema(content["schema"]), "components": components}, format_checker=FORMATS
            )
            for name, example in content.get("examples", {}).items():
                if "value" in example:
                    checked += 1
                    problems += [
                        f"{label} {status} {media_type} {name}: {error.message} at {error.json_path}"
                        for error in validator.iter_errors(example["value"])
                    ]
    assert problems == []
    assert checked >= 50


def test_a_wrong_example_is_caught_by_the_schema_check(schema):
    # Guards the check above: a body the API could not produce must fail it.
    validator = Draft202012Validator(
        {"$ref": "#/components/schemas/JobDetailOutput", "components": to_json_schema(schema["components"])},
        format_checker=FORMATS,
    )
    detail = example_value(schema, "GET /api/v1/jobs/{job_id}", "200", "Completed")
    assert not list(validator.iter_errors(detail))
    for broken in ({**detail, "id": "job-1"}, {**detail, "video": "a link"}, {**detail, "created_at": "yesterday"}):
        assert list(validator.iter_errors(broken))
    assert list(validator.iter_errors({key: value for key, value in detail.items() if key != "parameters"}))


def test_the_job_detail_example_has_the_keys_of_a_real_completed_job(schema, django_capture_on_commit_callbacks):
    client = key_client()
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/api/v1/jobs", {"image": image_file(), "provider": "local"}, format="multipart")
    real = client.get(f"/api/v1/jobs/{created.json()['id']}").json()
    assert real["status"] == "completed" and real["video"] and real["timeline"]

    example = example_value(schema, "GET /api/v1/jobs/{job_id}", "200", "Completed")
    assert example.keys() == real.keys()
    assert key_differences(example, real) == []


def test_the_other_success_examples_have_the_keys_of_real_answers(schema, django_capture_on_commit_callbacks):
    client = key_client()
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/api/v1/jobs", {"image": image_file(), "provider": "local"}, format="multipart")
    queued = make_job(client.user)
    real = {
        ("POST /api/v1/jobs", "201", "Queued"): created,
        ("GET /api/v1/jobs", "200", "A page of jobs"): client.get("/api/v1/jobs"),
        ("POST /api/v1/jobs/{job_id}/cancel", "200", "Cancelled"): client.post(f"/api/v1/jobs/{queued.pk}/cancel"),
        ("POST /api/v1/jobs/{job_id}/retry", "201", "Queued again as a new job"): client.post(
            f"/api/v1/jobs/{queued.pk}/retry"
        ),
        ("GET /api/v1/providers", "200", "The local renderer"): client.get("/api/v1/providers"),
        ("GET /api/v1/credits", "200", "Balance"): client.get("/api/v1/credits"),
        ("GET /api/v1/credits/ledger", "200", "A page of entries"): client.get("/api/v1/credits/ledger"),
        ("GET /api/v1/keys", "200", "One key"): client.get("/api/v1/keys"),
        ("POST /api/v1/keys", "201", "Created"): client.post("/api/v1/keys", {"name": "CI"}, format="json"),
    }
    for (label, status, name), response in real.items():
        assert str(response.status_code) == status, (label, response.json())
        assert key_differences(example_value(schema, label, status, name), response.json(), label) == []
