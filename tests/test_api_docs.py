"""The API describes itself: OpenAPI schema, Swagger UI, ReDoc, and GET /."""

import inspect
import io
import json
from collections.abc import Iterator

import pytest
from django.utils.dateparse import parse_datetime
from jsonschema import Draft202012Validator, FormatChecker
from rest_framework.test import APIClient

from jobs import actions, pipeline
from jobs.compat.i2v_openapi import TAG as I2V_TAG
from jobs.compat.queue_openapi import TAG as QUEUE_TAG
from jobs.compat_openapi import TAG as COMPAT_TAG
from jobs.models import Job
from tests.api_helpers import image_file, key_client
from tests.factories import make_job
from tests.fakes.fixtures import stability_server_fixture  # noqa: F401

pytestmark = pytest.mark.django_db


def test_the_schema_lists_every_operation_with_bearer_auth():
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert schema["info"]["title"] == "i2v API"
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/providers", "/api/v1/credits"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    create = schema["paths"]["/api/v1/jobs"]["post"]
    assert {"201", "400", "402", "409", "413", "422"} <= set(create["responses"])


def test_the_stability_compatible_endpoints_are_in_the_schema_under_their_own_tag_with_their_own_auth():
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    compat = {
        f"{method.upper()} {path}": operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if COMPAT_TAG in operation.get("tags", [])
    }
    assert set(compat) == {
        "POST /api/img2video",
        "GET /api/img2video/result/{id}",
        "GET /processed_videos/{filename}",
    }
    assert compat["POST /api/img2video"]["security"] == [{"apiKey": []}]
    assert compat["GET /api/img2video/result/{id}"]["security"] == [{"apiKey": []}]
    assert compat["GET /processed_videos/{filename}"]["security"] == []  # the signed name is the credential
    [tag] = [tag for tag in schema["tags"] if tag["name"] == COMPAT_TAG]
    assert "Authorization: Bearer" in tag["description"] and "unchanged" in tag["description"]
    # Documented once: drf-spectacular itself leaves the DRF view of the start out.
    assert list(schema["paths"]["/api/img2video"]) == ["post"]
    assert "/api/img2video/" not in schema["paths"]
    # drf-spectacular's own enum hook still runs before ours: the native enums stay shared components.
    assert {"StatusEnum", "ProviderEnum"} <= set(schema["components"]["schemas"])


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
    """Each documented operation, native and Stability-compatible, as ("POST /api/v1/jobs", operation)."""
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield f"{method.upper()} {path}", operation


def is_compat(operation: dict) -> bool:
    return COMPAT_TAG in operation.get("tags", [])


def is_i2v_compat(operation: dict) -> bool:
    return I2V_TAG in operation.get("tags", [])


def is_queue_compat(operation: dict) -> bool:
    return QUEUE_TAG in operation.get("tags", [])


def needs_a_key(operation: dict) -> bool:
    # No security requirement, or an empty one among them, means "or no credentials at all".
    return bool(operation.get("security")) and {} not in operation["security"]


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


def is_binary(content: dict) -> bool:
    return content.get("schema", {}).get("format") == "binary"


def test_every_operation_has_examples_for_its_request_and_responses(schema):
    labels = [label for label, _ in operations(schema)]
    assert len(labels) == 31, labels
    missing = [
        f"{label} {status} {media_type}"
        for label, operation in operations(schema)
        for status, media_type, content in bodies(operation)
        if not content.get("examples") and not is_binary(content)
    ]
    assert missing == []


def test_a_file_answer_has_no_example_but_says_in_its_description_what_comes_back(schema):
    # An example without a value made ReDoc fail on the whole page ("Cannot read
    # properties of undefined (reading 'toString')"), and bytes have no value worth showing.
    files = [
        (label, status, operation["responses"][status])
        for label, operation in operations(schema)
        for status, media_type, content in bodies(operation)
        if is_binary(content) and status != "request"
    ]
    assert {label for label, _, _ in files} == {"GET /api/v1/jobs/{job_id}/{kind}", "GET /processed_videos/{filename}"}
    for label, status, response in files:
        assert all("examples" not in content for content in response["content"].values()), (label, status)
        assert "Content-" in response["description"], (label, status)
    # An answer without a body has nothing to show; only the key revocation has one.
    bodiless = [
        f"{label} {status}"
        for label, operation in operations(schema)
        for status, response in operation["responses"].items()
        if "content" not in response
    ]
    assert bodiless == [
        "DELETE /api/v1/keys/{prefix} 204",
        "DELETE /api/v1/webhooks/{endpoint_id} 204",
        "PUT /queue/{modelId}/requests/{requestId}/cancel 204",  # Pipelet's answer: 204 No Content
    ]


# A plain Django view, kept lean on purpose: it has no per-key rate limit, so no 429.
UNTHROTTLED = {"GET /api/img2video/result/{id}"}


def test_every_operation_documents_a_success_and_the_errors_a_caller_can_get(schema):
    for label, operation in operations(schema):
        statuses = set(operation["responses"])
        assert any(s.startswith("2") for s in statuses), label
        assert any(s.startswith("4") for s in statuses), label
        if needs_a_key(operation):  # a signed link needs none
            assert "401" in statuses, label
            assert "429" in statuses or label in UNTHROTTLED, label


def test_every_example_has_a_value_and_every_error_example_its_own_status(schema):
    for label, operation in operations(schema):
        for status, media_type, content in bodies(operation):
            for name, example in content.get("examples", {}).items():
                assert "value" in example, f"{label} {status} {media_type} {name}"
                if status.startswith(("4", "5")) and is_i2v_compat(operation):  # FastAPI's shape
                    detail = example["value"]["detail"]
                    assert isinstance(detail, list if status == "422" else str) and detail, f"{label} {status} {name}"
                elif status.startswith(("4", "5")) and is_queue_compat(operation):  # Pipelet's and fal's shape
                    detail = example["value"]["detail"]
                    assert isinstance(detail, str) and detail, f"{label} {status} {name}"
                elif status.startswith(("4", "5")):
                    error = example["value"]["error"]
                    if is_compat(operation):  # the spec's shape: the message alone, the status is the HTTP one
                        assert isinstance(error, str) and error, f"{label} {status} {name}"
                    else:
                        assert error["status"] == int(status), f"{label} {status} {name}"


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
                checked += 1
                value = example["value"]
                if media_type == "multipart/form-data":
                    value = {**value, **file_parts(schema, content["schema"])}
                    assert "file part `image`" in example.get("description", ""), f"{label} {name}"
                problems += [
                    f"{label} {status} {media_type} {name}: {error.message} at {error.json_path}"
                    for error in validator.iter_errors(value)
                ]
    assert problems == []
    assert checked >= 80


def file_parts(schema: dict, body_schema: dict) -> dict:
    """A stand-in for each file part of a multipart body: a file cannot be written into an
    example's value, so the examples leave it out and say in their description where it goes."""
    name = body_schema["$ref"].rsplit("/", 1)[1]
    properties = schema["components"]["schemas"][name]["properties"]
    return {key: "<file>" for key, prop in properties.items() if prop.get("format") == "binary"}


def test_no_example_puts_text_where_a_file_goes(schema):
    for label, operation in operations(schema):
        for _status, media_type, content in bodies(operation):
            for name, example in content.get("examples", {}).items():
                if media_type == "multipart/form-data":
                    assert not file_parts(schema, content["schema"]).keys() & example["value"].keys(), (label, name)


def component_validator(schema: dict, name: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": to_json_schema(schema["components"])},
        format_checker=FORMATS,
    )


def test_a_wrong_example_is_caught_by_the_schema_check(schema):
    # Guards the check above: a body the API could not produce must fail it.
    validator = component_validator(schema, "JobDetailOutput")
    detail = example_value(schema, "GET /api/v1/jobs/{job_id}", "200", "Completed")
    assert not list(validator.iter_errors(detail))
    for broken in ({**detail, "id": "job-1"}, {**detail, "video": "a link"}, {**detail, "created_at": "yesterday"}):
        assert list(validator.iter_errors(broken))
    assert list(validator.iter_errors({key: value for key, value in detail.items() if key != "parameters"}))


def test_a_wrong_compat_example_is_caught_by_the_schema_check(schema):
    complete = component_validator(schema, "CompatComplete")
    good = example_value(schema, "GET /api/img2video/result/{id}", "200", "Complete")
    assert not list(complete.iter_errors(good))
    for broken in (
        {**good, "seed": 12345},  # the spec's seed is a string
        {**good, "video_url": "https://cdn.example.com/video.mp4"},
        {**good, "status": "completed"},
        {**good, "extra": True},
    ):
        assert list(complete.iter_errors(broken)), broken
    error = component_validator(schema, "CompatError")
    assert not list(error.iter_errors({"error": "No generation with this ID."}))
    assert list(error.iter_errors({"error": {"status": 404, "code": "not_found", "message": "Not found."}}))


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


START, POLL, VIDEO = "POST /api/img2video", "GET /api/img2video/result/{id}", "GET /processed_videos/{filename}"


def named_file(content: bytes) -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = "photo.jpg"
    return handle


def test_the_compat_examples_are_the_bodies_the_endpoints_really_answer(
    schema, settings, stability_server, django_capture_on_commit_callbacks
):
    settings.COMPAT_PROVIDER = "local"
    client = key_client()

    def start(client=client, **fields):
        return client.post("/api/img2video", fields, format="multipart")

    def poll(generation_id, client=client):
        return client.get(f"/api/img2video/result/{generation_id}")

    with django_capture_on_commit_callbacks(execute=True):
        started = start(image=image_file(), seed="12345")
    generation = started.json()["id"]
    complete = poll(generation)
    video_link = complete.json()["video_url"]
    failed, cancelled, expired = make_job(client.user), make_job(client.user), make_job(client.user)
    pipeline.fail(failed, "provider_failed", "Stability could not make this video (ERROR).", "detail for staff")
    actions.cancel_job(cancelled, by=client.user)
    Job.objects.filter(pk=expired.pk).update(status=Job.EXPIRED)
    wrong_key = APIClient()
    wrong_key.credentials(HTTP_AUTHORIZATION="Bearer i2v_deadbeef_nope")

    # Ids, signed links and waits differ from call to call: these need the same keys.
    same_keys = {
        (START, "200", "Started"): started,
        (POLL, "200", "Complete"): complete,
    }
    # The rest is the same every time: the examples must be these bodies exactly.
    same_body = {
        (POLL, "202", "In progress"): poll(make_job(client.user).pk.hex),
        (POLL, "404", "Unknown id"): poll("0" * 32),
        (POLL, "404", "Past retention"): poll(expired.pk.hex),
        (POLL, "500", "Failed"): poll(failed.pk.hex),
        (POLL, "500", "Cancelled"): poll(cancelled.pk.hex),
        (POLL, "401", "No key"): poll(generation, client=APIClient()),
        (POLL, "401", "Wrong or revoked key"): poll(generation, client=wrong_key),
        (START, "400", "No image"): start(seed=0),
        (START, "400", "Image sent as text"): start(image="x"),
        (START, "400", "Not a JPEG or PNG"): start(image=named_file(b"%PDF-1.4 not a photo at all")),
        (START, "400", "Image over 10 MB"): start(image=named_file(b"\xff\xd8\xff" + b"\0" * (10 * 1024 * 1024))),
        (START, "400", "Seed out of range"): start(image=image_file(), seed="-1"),
        (START, "400", "Cfg scale out of range"): start(image=image_file(), cfg_scale="11"),
        (START, "400", "Motion bucket id out of range"): start(image=image_file(), motion_bucket_id="0"),
        (START, "400", "Unknown field"): start(image=image_file(), motoin="200"),
        (START, "400", "Not multipart"): client.post("/api/img2video", {"image": "x"}, format="json"),
        (START, "401", "No key"): start(client=APIClient(), image=image_file()),
        (START, "401", "Wrong or revoked key"): start(client=wrong_key, image=image_file()),
        (START, "413", "Body too large"): client.post(
            "/api/img2video", b"x", content_type="multipart/form-data; boundary=x", CONTENT_LENGTH=str(50 * 2**20)
        ),
        (VIDEO, "404", "Wrong or expired link"): APIClient().get("/processed_videos/video_forged_12345.mp4"),
    }
    Job.objects.filter(pk=generation).update(status=Job.EXPIRED)
    same_body[VIDEO, "404", "Video gone"] = APIClient().get(video_link)

    settings.COMPAT_PROVIDER = "stability"  # 20 credits a video, from the fake Stability server
    same_body[START, "402", "Not enough credits"] = start(client=key_client(credits=5), image=image_file())
    stability_server.script.finish_reason = "CONTENT_FILTERED"
    with django_capture_on_commit_callbacks(execute=True):
        filtered = start(image=image_file())
    same_body[POLL, "500", "Content filtered"] = poll(filtered.json()["id"])
    settings.STABILITY_API_KEY = ""
    same_body[START, "500", "Not available"] = start(image=image_file())

    throttled = next(r for _ in range(1000) if (r := start(seed=0)).status_code == 429)
    same_keys[START, "429", "Throttled"] = throttled
    settings.API_AUTH_FAILURE_RATE = "1/minute"
    guesser = APIClient(REMOTE_ADDR="203.0.113.50")
    guesser.credentials(HTTP_AUTHORIZATION="Bearer i2v_deadbeef_guess")
    poll(generation, client=guesser)  # spends the address's one failure
    same_keys[POLL, "429", "Too many wrong keys"] = poll(generation, client=guesser)

    for (label, status, name), response in {**same_keys, **same_body}.items():
        assert str(response.status_code) == status, (label, name, response.json())
        example = example_value(schema, label, status, name)
        assert key_differences(example, response.json(), f"{label} {name}") == []
        if (label, status, name) in same_body:
            assert example == response.json(), (label, name)
    # And no JSON example of these endpoints went unchecked.
    documented = {
        (label, status, example["summary"])
        for label, operation in operations(schema)
        if is_compat(operation)
        for status, media_type, content in bodies(operation)
        if media_type == "application/json"
        for example in content["examples"].values()
    }
    assert documented == same_keys.keys() | same_body.keys()


def test_every_tag_of_an_operation_is_described():
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    used = {tag for item in schema["paths"].values() for operation in item.values() for tag in operation["tags"]}
    described = {tag["name"]: tag.get("description", "") for tag in schema["tags"]}
    assert used <= set(described)
    assert all(described[tag] for tag in used)


# --- descriptions --------------------------------------------------------------------------


def docstrings_of_the_views() -> set[str]:
    """Every docstring of a view class the URLs reach, and of their bases: comments for whoever
    maintains the code, which drf-spectacular would show as an operation's description."""
    from django.urls import get_resolver

    found: set[str] = set()

    def walk(patterns):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns)
            view = getattr(getattr(pattern, "callback", None), "view_class", None)
            for cls in getattr(view, "__mro__", ()):
                if cls.__module__.startswith("jobs.") and inspect.getdoc(cls):
                    found.add(inspect.getdoc(cls))

    walk(get_resolver().url_patterns)
    return found


def test_every_operation_has_a_description_written_for_an_integrator(schema):
    internal = docstrings_of_the_views()
    for label, operation in operations(schema):
        description = operation.get("description", "")
        assert description.strip(), f"{label} has no description"
        assert not any(doc in description or description in doc for doc in internal), label
        # Words of the implementation, not of the API.
        words = set(description.replace("'", " ").split())
        assert not {"DRF", "APIView", "drf-spectacular", "docstring"} & words, label


def test_the_base_views_docstring_no_longer_leaks_into_the_docs(schema):
    text = json.dumps(schema)
    assert "method the endpoint lacks" not in text and "DRF's view" not in text
