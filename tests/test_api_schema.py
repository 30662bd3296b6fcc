"""Schemathesis over ``/api/schema/`` with every check on: no 5xx, every
response matches the schema, unauthenticated calls refused.

The schema is read from the running app (``GET /api/schema/``) and every
operation in it becomes one test per run below. Requests go in-process to the
real WSGI application (the same middleware, URLs, DRF settings and error
handler as production), inside the test's database transaction: ``on_commit``
hooks never fire, so the jobs created here start no background work.

Run it alone with ``pytest tests/test_api_schema.py``; a failure prints the
request as a curl command and the response.
"""

from __future__ import annotations

import socket
from urllib.parse import unquote, urlsplit

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import override_settings
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from rest_framework.test import APIClient

from i2v_site.wsgi import application
from jobs import actions
from tests.api_helpers import key_client, reset_budgets
from tests.factories import make_job

# Every check schemathesis has, every phase a per-operation test can run
# (explicit examples, coverage of each keyword, fuzzing), positive and
# negative data; fuzzing bounded so the file runs in a couple of minutes.
# Deterministic: every run draws the same cases (they change with the schema),
# so what fails in CI fails again on a developer's machine. Random drawing once
# failed a CI run inside schemathesis itself (4.32.5: "Unsupported type:
# 'Binary'" while drawing negative multipart data for POST /api/v1/jobs),
# before any request was sent.
CONFIG = """
[generation]
max-examples = {max_examples}
database = "none"
deterministic = true
with-security-parameters = {with_security_parameters}

[checks]
enabled = true

# A schema-valid job can still be refused with 400: the schema says "a file",
# "a URL", "a string", while the API needs a decodable JPEG or PNG, a URL it
# can fetch (none here: no network) and base64 of an image, and the
# parameter ranges depend on the provider. So 400 is also an acceptable
# answer to positive data here, as garbage images must get 400, never 5xx.
# 422 too: generated examples reuse an Idempotency-Key with another body,
# which the IETF draft answers with 422 (documented in the schema).
[[operations]]
include-operation-id = "jobs_create"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "422", "429", "5xx",
]

# The Stability-compatible start: 400 for positive data as for jobs_create
# (a schema-valid file is any bytes, not necessarily a decodable JPEG or PNG).
# And 200 for negative data: multipart form fields are only text, so a
# "negative" cfg_scale of "1.5" (a string), [] (no field at all) or [1.5]
# (one field) is on the wire the same request as a valid one, and a missing
# parameter takes the spec's default. Out-of-range and non-numeric values
# are refused with 400, as tests/test_compat_stability.py checks.
[[operations]]
include-operation-id = "compat_img2video_create"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx",
]
checks.negative_data_rejection.expected-statuses = [
    "200", "400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx",
]

# A webhook endpoint's URL must resolve to a public address when it is
# registered (changed), and no host name resolves here: 400 for positive data.
[[operations]]
include-operation-id = "webhooks_create"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx",
]

[[operations]]
include-operation-id = "webhooks_update"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx",
]

# The I2V-compatible start: 400 for positive data, as for jobs_create (a
# schema-valid image_id is any string, and no URL can be fetched here).
[[operations]]
include-operation-id = "compat_i2v_create"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "413", "429", "5xx",
]

# The queue-style create: 422 for positive data, as 400 for jobs_create (a
# schema-valid data_uri is any string, not base64 of a JPEG or PNG, and the
# body takes the parameters of the model's provider, which the schema cannot
# list for every model at once); 413 for a generated data_uri over the cap.
[[operations]]
include-operation-id = "queue_submit"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "413", "422", "429", "5xx",
]

# The result of a request that has not finished is 400 (fal's answer), of one
# that ended without a video 422: positive data, answered as documented.
[[operations]]
include-operation-id = "queue_result"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "410", "422", "429", "5xx",
]
"""

# With a key: every check on every operation.
schema = schemathesis.openapi.from_wsgi(
    "/api/schema/",
    application,
    config=schemathesis.Config.from_str(CONFIG.format(max_examples=25, with_security_parameters="true")),
)
# Without credentials: no key, no session cookie, not even a made-up one.
anonymous_schema = schemathesis.openapi.from_wsgi(
    "/api/schema/",
    application,
    config=schemathesis.Config.from_str(CONFIG.format(max_examples=10, with_security_parameters="false")),
)

# Answer 404, not 401, without a valid token: a <video> tag sends no key,
# so the download takes a signed link instead, and whether a job exists is
# not told to a caller who may not see it. The Stability-compatible video's
# signed file name is its credential in the same way.
OPEN_TO_ANYONE = {"GET /api/v1/jobs/{job_id}/{kind}", "GET /processed_videos/{filename}"}
# Plain Django views, not DRF ones: they have no OPTIONS (DRF's description
# of a view), so it is 405 like any other method they lack.
PLAIN_VIEWS = {
    "GET /api/img2video/result/{id}",
    "GET /processed_videos/{filename}",
    "GET /queue/{modelId}/requests/{requestId}/status",
}

LOOPBACK = {"localhost", "127.0.0.1", "::1"}


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    # The WSGI handler closes the database connection when a request ends,
    # which would end the test's transaction; Django's test client does this too.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # A generated image_url never leaves the machine: every host name outside
    # loopback is "not found", as it would be without a network.
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if str(host) not in LOOPBACK:
            raise socket.gaierror(socket.EAI_NONAME, "no network in tests")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(autouse=True)
def _local_compat_provider():
    # The Stability-compatible start hands jobs to COMPAT_PROVIDER, or to
    # Stability when its key is set: a developer's environment must not
    # change what is tested here.
    with override_settings(COMPAT_PROVIDER="local"):
        yield


@pytest.fixture
def api_key(db):
    return key_client(credits=1_000_000).raw_key


def _routes(response) -> bool:
    """Whether the path sent reaches an endpoint (a negative path parameter may
    land on the API's JSON 404 for unknown paths instead)."""
    try:
        match = resolve(unquote(urlsplit(response.request.url).path))
    except Resolver404:
        return False
    return match.url_name != "api-not-found"


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation_with_a_key_passes_every_check(case, api_key):
    reset_budgets()  # the request budget: every example starts with a full one
    # The coverage phase also sends each operation without its Authorization
    # header on purpose; the key is added to every other request.
    headers = None if schema.is_security_param_negated(case) else {"Authorization": f"Bearer {api_key}"}
    case.call_and_validate(headers=headers)


@anonymous_schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation_refuses_a_call_without_credentials(case, db):
    reset_budgets()
    response = case.call()
    case.validate_response(response)
    method = response.request.method
    label = case.operation.label
    methods = {case.operation.method.upper()} | (set() if label in PLAIN_VIEWS else {"OPTIONS"})
    if not _routes(response):
        assert response.status_code == 404, response.text
    elif method not in methods:
        # A method the endpoint does not have is 405 before any key is asked
        # for: nothing about the caller is needed to say so.
        assert response.status_code == 405, response.text
    elif label in OPEN_TO_ANYONE:
        assert response.status_code == {"GET": 404, "OPTIONS": 200}[method], response.text
    else:
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"][0].startswith("Bearer")


class Workflows(schema.as_state_machine()):
    """Sequences linked by the schema's links (create a job, then read, cancel,
    retry or download it; start a Stability-compatible generation, then poll
    it): where use_after_free and ensure_resource_availability get something
    to look at."""

    api_key: str

    def setup(self):
        # Each example starts from the same database: jobs made by an earlier
        # example would change what later draws see, and hypothesis reports
        # that as flaky data generation.
        self._example = transaction.atomic()
        self._example.__enter__()

    def teardown(self):
        transaction.set_rollback(True)
        self._example.__exit__(None, None, None)

    def before_call(self, case):
        reset_budgets()

    def get_call_kwargs(self, case):
        return {"headers": {"Authorization": f"Bearer {self.api_key}"}}

    def validate_response(self, response, case, additional_checks=None, **kwargs):
        case.validate_response(
            response,
            additional_checks=additional_checks,
            headers=kwargs.get("headers"),
            transport_kwargs=kwargs,
            recorder=self.recorder,
        )


@pytest.fixture
def caller_with_jobs(db):
    """A key whose owner already has a queued job and a cancelled one, so the
    workflows have jobs to read, cancel, retry and download from the start."""
    client = key_client(credits=1_000_000)
    make_job(client.user)
    actions.cancel_job(make_job(client.user), by=client.user)
    return client.raw_key


def test_workflows_with_a_key_pass_every_check(caller_with_jobs):
    run_state_machine_as_test(
        type("KeyWorkflows", (Workflows,), {"api_key": caller_with_jobs}),
        settings=settings(
            max_examples=25,
            stateful_step_count=8,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_the_fuzzing_covers_every_documented_operation_with_every_check(db):
    documented = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    labels = {f"{method.upper()} {path}" for path, item in documented.items() for method in item}
    for fuzzed in (schema, anonymous_schema):
        assert {result.ok().label for result in fuzzed.get_all_operations()} == labels
    # Every check on, none switched off for any operation; only expected statuses are widened.
    assert "[checks]\nenabled = true" in CONFIG and "enabled = false" not in CONFIG
    assert "exclude" not in CONFIG and "skip" not in CONFIG
