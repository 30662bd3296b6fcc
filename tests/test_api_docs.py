"""The API describes itself: OpenAPI schema, Swagger UI, ReDoc, and GET /."""

import pytest
from rest_framework.test import APIClient

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
