"""Providers that fetch the image by URL get a signed link under PUBLIC_BASE_URL,
or the URL the image came from; with neither, the job is refused up front."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

import pytest
from PIL import Image

from jobs import links, pipeline
from jobs.creation import JobInputError, create_job, create_upload
from providers import registry
from providers.local import LocalProvider
from tests.factories import UserFactory, make_upload, photo_bytes

pytestmark = pytest.mark.django_db
SEEN: list = []


class UrlFetchingProvider(LocalProvider):
    """Registered only by these tests: records the URL it is given."""

    name = "urlfetch"
    label = "URL fetcher"
    needs_image_url = True

    def submit(self, request):
        SEEN.append(request.image_url)
        return super().submit(request)


@pytest.fixture(autouse=True)
def url_provider(monkeypatch):
    monkeypatch.setitem(registry.PROVIDERS, "urlfetch", f"{__name__}.UrlFetchingProvider")
    registry.provider_class.cache_clear()
    SEEN.clear()
    yield
    registry.provider_class.cache_clear()


def submitted_url(job) -> str:
    pipeline.advance(job.pk)
    return SEEN[-1]


def test_with_a_public_address_the_provider_gets_a_signed_link_anyone_can_fetch(client, settings):
    settings.PUBLIC_BASE_URL = "https://i2v.example.com"
    owner = UserFactory()
    job = create_job(owner=owner, upload=make_upload(owner), provider="urlfetch", enqueue=False)
    url = submitted_url(job)
    assert url.startswith("https://i2v.example.com/files/images/")
    parts = urlsplit(url)
    response = client.get(f"{parts.path}?{parts.query}")  # no login: the provider has none
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(b"".join(response.streaming_content)))
    assert image.size == (job.width, job.height)


def test_a_tampered_or_expired_link_is_404(client, settings):
    settings.PUBLIC_BASE_URL = "https://i2v.example.com"
    upload = make_upload(UserFactory())
    parts = urlsplit(links.public_image_url(upload))
    assert client.get(f"{parts.path}?{parts.query}x").status_code == 404
    assert client.get(parts.path).status_code == 404
    other = make_upload(UserFactory())
    assert client.get(f"/files/images/{other.pk}.png?{parts.query}").status_code == 404  # a link opens one image
    settings.RESULT_LINK_SECONDS = -1
    assert client.get(f"{parts.path}?{parts.query}").status_code == 404


def test_without_a_public_address_a_job_made_from_an_image_url_passes_that_url(settings):
    settings.PUBLIC_BASE_URL = ""
    owner = UserFactory()
    upload = create_upload(owner=owner, source=photo_bytes(), source_url="https://images.example.com/cat.jpg")
    job = create_job(owner=owner, upload=upload, provider="urlfetch", enqueue=False)
    assert submitted_url(job) == "https://images.example.com/cat.jpg"


def test_without_either_the_job_is_refused_before_anything_is_held(settings):
    settings.PUBLIC_BASE_URL = ""
    owner = UserFactory()
    with pytest.raises(JobInputError, match="PUBLIC_BASE_URL") as refused:
        create_job(owner=owner, upload=make_upload(owner), provider="urlfetch", enqueue=False)
    assert refused.value.field == "provider" and refused.value.code == "needs_public_url"
    assert not owner.jobs.exists()
