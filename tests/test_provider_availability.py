"""A provider that cannot be used here is listed as unavailable, with the reason."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.api_helpers import key_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def listed(name: str) -> dict:
    return next(row for row in key_client().get("/api/v1/providers").json() if row["name"] == name)


def test_without_its_token_pika_is_listed_unavailable_saying_which_setting_is_missing(settings):
    settings.PIKAPI_BEARER_TOKEN = ""
    pika = listed("pika")
    assert pika["available"] is False
    assert pika["unavailable_reason"] == "Pika is not configured here: an operator must set PIKAPI_BEARER_TOKEN."
    assert pika["capabilities"]["needs_image_url"] is True and pika["capabilities"]["supports_cancel"] is False
    assert listed("local")["available"] is True and listed("local")["unavailable_reason"] == ""


def test_with_its_token_pika_is_available_and_lists_its_own_parameters_and_cost(settings):
    settings.PIKAPI_BEARER_TOKEN = "tok"
    settings.PIKA_POLL_INTERVAL = 10
    pika = listed("pika")
    assert (pika["available"], pika["unavailable_reason"], pika["cost"]) == (True, "", 10)
    assert pika["min_poll_interval"] == 10.0 and pika["models"] == ["1.5"]
    params = pika["parameters"]
    assert list(params) == [
        "seed",
        "cfg_scale",
        "motion_bucket_id",
        "motion",
        "guidanceScale",
        "frameRate",
        "aspectRatio",
    ]
    assert (params["motion"]["minimum"], params["motion"]["maximum"], params["motion"]["default"]) == (1, 4, 2)
    assert (params["guidanceScale"]["minimum"], params["guidanceScale"]["maximum"]) == (5, 25)
    assert params["aspectRatio"]["choices"] == ["auto", "16:9", "9:16", "1:1", "5:2", "4:5", "4:3"]


def test_the_dashboard_shows_why_pika_cannot_take_an_upload_without_a_public_address(client, settings):
    settings.PIKAPI_BEARER_TOKEN = "tok"
    settings.PUBLIC_BASE_URL = ""
    client.force_login(UserFactory())
    html = client.get(reverse("home")).content.decode()
    assert 'id="id_provider_pika" value="pika"' in html
    radio = html[html.index('id="id_provider_pika"') - 40 : html.index('id="id_provider_pika"') + 200]
    assert "disabled" in radio
    assert "an operator must set PUBLIC_BASE_URL" in html

    settings.PUBLIC_BASE_URL = "https://i2v.example.com"
    html = client.get(reverse("home")).content.decode()
    radio = html[html.index('id="id_provider_pika"') - 40 : html.index('id="id_provider_pika"') + 200]
    assert "disabled" not in radio


def test_the_dashboard_shows_the_missing_token(client, settings):
    settings.PIKAPI_BEARER_TOKEN = ""
    client.force_login(UserFactory())
    html = client.get(reverse("home")).content.decode()
    assert "an operator must set PIKAPI_BEARER_TOKEN" in html


def test_without_a_token_replicate_is_unavailable_on_the_page_and_in_the_listing(settings, client):
    settings.REPLICATE_API_TOKEN = ""
    replicate = listed("replicate")
    assert replicate["available"] is False
    assert replicate["unavailable_reason"] == (
        "Replicate is not configured here: an operator must set REPLICATE_API_TOKEN."
    )
    client.force_login(UserFactory())
    page = client.get(reverse("home")).content.decode()
    assert "an operator must set REPLICATE_API_TOKEN" in page


def test_replicate_with_a_model_it_cannot_drive_says_which_setting_to_change(settings):
    settings.REPLICATE_API_TOKEN = "r8_test"
    settings.REPLICATE_VIDEO_MODEL = "someone/some-model"
    replicate = listed("replicate")
    assert replicate["available"] is False
    assert replicate["unavailable_reason"].startswith("REPLICATE_VIDEO_MODEL (someone/some-model) is not a model")
