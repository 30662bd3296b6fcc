"""Provider webhooks end the wait: Replicate's signed webhooks (and the
unsigned, token-addressed route other providers use) make the job look at its
prediction at once, through the usual poll, instead of at the next poll.

Here in one process: the real ``replicate`` client against the fake Replicate
(real HTTP on 127.0.0.1), webhooks posted with the test client, signed by the
``standardwebhooks`` library with the fake's secret. The end-to-end runs, with
the fake posting its own webhooks to a real gunicorn, are in
``test_provider_webhooks_process.py``.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs import ledger, pipeline
from jobs.models import Job, ProviderWebhookReceipt
from jobs.provider_hooks import links
from jobs.provider_hooks.look import prune_receipts
from providers import registry, replicate_webhooks
from tests.factories import UserFactory, make_job
from tests.fakes.replicate_server import FakeReplicateServer
from tests.test_prompt_stage import drive

pytestmark = pytest.mark.django_db
WAN = "wavespeedai/wan-2.1-i2v-480p"
PUBLIC = "https://i2v.example.com"


@pytest.fixture
def fake(settings, monkeypatch):
    with FakeReplicateServer(token="r8_hooks") as server:
        settings.REPLICATE_API_TOKEN = "r8_hooks"
        settings.REPLICATE_BASE_URL = server.base_url
        settings.REPLICATE_WEBHOOK_SECRET = ""
        settings.REPLICATE_POLL_INTERVAL = 600.0  # no poll comes in time: only a webhook can end the wait
        settings.SAFE_FETCH_ALLOW = (server.address,)
        settings.DEFAULT_PROMPT = ""
        settings.PUBLIC_BASE_URL = PUBLIC
        server.script.send_webhooks = False  # here the test posts them, with the test client
        replicate_webhooks.forget_secret()
        registry.provider_class.cache_clear()
        yield server
        replicate_webhooks.forget_secret()


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Tasks enqueued on commit run (in-process) when the block ends."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def waiting_job(fake, **params) -> Job:
    """A Replicate video job submitted and looked at once; its next look is 600 s away."""
    job = make_job(UserFactory(), provider="replicate", **params)
    pipeline.advance(job.pk)  # prepare, submit
    job.refresh_from_db()
    assert job.status == Job.SUBMITTED and job.provider_job_id
    assert job.next_poll_at > timezone.now() + timedelta(seconds=500)
    return job


def gets(fake, prediction_id: str) -> int:
    return len(fake.calls("GET", f"/v1/predictions/{prediction_id}"))


def post_signed(client, fake, body: dict | bytes, *, webhook_id=None, timestamp=None, secret=None, path=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    webhook_id = webhook_id or f"msg_{secrets.token_hex(8)}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = fake.sign(webhook_id, timestamp, raw.decode(), secret=secret)
    return client.post(
        path or reverse("provider-hook-signed", args=["replicate"]),
        raw,
        content_type="application/json",
        HTTP_WEBHOOK_ID=webhook_id,
        HTTP_WEBHOOK_TIMESTAMP=str(timestamp),
        HTTP_WEBHOOK_SIGNATURE=signature,
    )


def finished_body(fake, job: Job) -> dict:
    fake.finish(job.provider_job_id)
    return fake.body(fake.predictions[job.provider_job_id])


def snapshot(job: Job) -> tuple:
    job.refresh_from_db()
    return (job.status, job.polls, job.next_poll_at, job.last_polled_at, job.poked_at)


# --- what we send --------------------------------------------------------------------


def test_with_a_public_address_the_clip_and_the_video_predictions_ask_for_a_completed_webhook(fake, settings):
    settings.REPLICATE_VIDEO_MODEL = WAN
    settings.REPLICATE_POLL_INTERVAL = 0.0
    job = drive(make_job(provider="replicate", model=WAN))

    assert job.status == Job.COMPLETED, job.error_detail
    [clip] = fake.created("clip")
    [video] = fake.created("wan")
    assert clip.webhook == video.webhook == f"{PUBLIC}/hooks/replicate"
    assert clip.webhook_events_filter == video.webhook_events_filter == ["completed"]


def test_without_a_public_address_no_webhook_is_asked_for_and_polling_completes_the_job(fake, settings):
    settings.PUBLIC_BASE_URL = ""
    settings.REPLICATE_VIDEO_MODEL = WAN
    settings.REPLICATE_POLL_INTERVAL = 0.0
    job = drive(make_job(provider="replicate", model=WAN))

    assert job.status == Job.COMPLETED, job.error_detail
    creates = fake.calls("POST", "/v1/")
    assert len(creates) == 2
    assert all("webhook" not in call.body and "webhook_events_filter" not in call.body for call in creates)


def test_a_provider_that_cannot_call_back_is_given_no_webhook_url(fake, monkeypatch):
    from providers.local import LocalProvider

    seen = []
    monkeypatch.setattr(LocalProvider, "submit", lambda self, request: seen.append(request.webhook_url) or "local-1")
    job = make_job(provider="local")
    pipeline.advance(job.pk)
    assert seen == [""]


def test_an_unsigned_providers_webhook_url_carries_a_token_for_its_own_job_only(fake):
    job = make_job(provider="replicate")
    other = make_job(provider="replicate")
    url = links.webhook_url(job, "pipelet")
    token = url.rsplit("/", 1)[1]
    assert url.startswith(f"{PUBLIC}/hooks/pipelet/")
    assert links.job_for_token("pipelet", token) == job.pk
    assert links.job_for_token("replicate", token) is None  # bound to the provider's name
    assert links.job_for_token("pipelet", links.token("pipelet", other.pk)) == other.pk != job.pk
    assert links.job_for_token("pipelet", token[:-1] + ("A" if token[-1] != "A" else "B")) is None


# --- a signed Replicate webhook ---------------------------------------------------------


def test_a_signed_webhook_completes_a_video_job_long_before_its_next_poll(fake, client, run_on_commit):
    job = waiting_job(fake)
    body = finished_body(fake, job)

    with run_on_commit():
        response = post_signed(client, fake, body)

    assert response.status_code == 200, response.content
    job.refresh_from_db()
    assert job.status == Job.COMPLETED, job.error_detail
    assert gets(fake, job.provider_job_id) == 1 and job.polls == 1  # the webhook's look, nothing else
    assert ledger.balance_of(job.owner) == 100 - job.cost
    assert len(fake.created()) == 1
    said = [event.message for event in job.events.all() if "webhook" in event.message]
    assert said == ["Replicate's webhook said the prediction finished; looking now"]  # on the timeline staff read


def test_a_signed_webhook_ends_the_clip_prompt_stage_at_once(fake, client, settings, run_on_commit):
    settings.REPLICATE_VIDEO_MODEL = WAN
    job = make_job(provider="replicate", model=WAN)
    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.status == Job.DESCRIBING and job.next_poll_at > timezone.now() + timedelta(seconds=500)
    fake.finish(job.prompt_job_id)

    with run_on_commit():
        response = post_signed(client, fake, fake.body(fake.predictions[job.prompt_job_id]))

    assert response.status_code == 200
    job.refresh_from_db()
    assert job.status == Job.SUBMITTED and job.prompt == fake.script.clip_text
    assert job.prompt_source == Job.PROMPT_CLIP and len(fake.created("wan")) == 1
    assert gets(fake, job.prompt_job_id) == 1


def test_a_forged_signature_is_refused_and_changes_nothing(fake, client, run_on_commit):
    job = waiting_job(fake)
    body = finished_body(fake, job)
    before = snapshot(job)
    forged = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"

    with run_on_commit():
        response = post_signed(client, fake, body, secret=forged)

    assert response.status_code == 401
    assert "signature does not match" in response.json()["error"]["message"]
    assert snapshot(job) == before and gets(fake, job.provider_job_id) == 0
    assert not ProviderWebhookReceipt.objects.exists()


def test_a_body_changed_after_signing_is_refused(fake, client, run_on_commit):
    job = waiting_job(fake)
    body = finished_body(fake, job)
    raw = json.dumps(body).encode()
    webhook_id, timestamp = "msg_tampered", int(time.time())
    signature = fake.sign(webhook_id, timestamp, raw.decode())

    with run_on_commit():
        response = client.post(
            reverse("provider-hook-signed", args=["replicate"]),
            raw.replace(b'"succeeded"', b'"failed"'),
            content_type="application/json",
            HTTP_WEBHOOK_ID=webhook_id,
            HTTP_WEBHOOK_TIMESTAMP=str(timestamp),
            HTTP_WEBHOOK_SIGNATURE=signature,
        )

    assert response.status_code == 401
    assert snapshot(job)[:2] == (Job.SUBMITTED, 0)


@pytest.mark.parametrize("offset", [-301, 301], ids=["stale", "from_the_future"])
def test_a_timestamp_more_than_five_minutes_off_is_refused_and_changes_nothing(fake, client, run_on_commit, offset):
    job = waiting_job(fake)
    body = finished_body(fake, job)
    before = snapshot(job)

    with run_on_commit():
        response = post_signed(client, fake, body, timestamp=int(time.time()) + offset)

    assert response.status_code == 400
    assert "more than five minutes" in response.json()["error"]["message"]
    assert snapshot(job) == before and gets(fake, job.provider_job_id) == 0


def test_a_replayed_webhook_id_is_answered_200_and_changes_nothing(fake, client, run_on_commit):
    job = waiting_job(fake)
    body = fake.body(fake.predictions[job.provider_job_id])  # still running: the look leaves it waiting

    with run_on_commit():
        first = post_signed(client, fake, body, webhook_id="msg_once")
    assert first.status_code == 200
    after_first = snapshot(job)
    assert after_first[:2] == (Job.RUNNING, 1) and gets(fake, job.provider_job_id) == 1

    with run_on_commit():
        again = post_signed(client, fake, body, webhook_id="msg_once")  # signed afresh: only the id repeats

    assert again.status_code == 200
    assert snapshot(job) == after_first and gets(fake, job.provider_job_id) == 1


def test_a_webhook_for_a_prediction_we_do_not_know_is_answered_200_and_does_nothing(fake, client, run_on_commit):
    job = waiting_job(fake)
    before = snapshot(job)

    with run_on_commit():
        response = post_signed(client, fake, {"id": "nosuchprediction0000", "status": "succeeded"})

    assert response.status_code == 200 and response.json() == {"received": True}
    assert snapshot(job) == before and not fake.calls("GET", "/v1/predictions/")


def test_the_secret_is_fetched_from_replicate_once_and_kept(fake, client, run_on_commit):
    for _ in range(3):
        with run_on_commit():
            assert post_signed(client, fake, {"id": "nosuchprediction0000"}).status_code == 200
    [fetch] = fake.calls("GET", "/v1/webhooks/default/secret")
    assert fetch.headers["Authorization"] == "Bearer r8_hooks"


def test_a_configured_secret_is_used_without_asking_replicate(fake, client, settings, run_on_commit):
    settings.REPLICATE_WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LWZyb20tc2V0dGluZ3MtMTIzNDU2Nzg="
    job = waiting_job(fake)
    body = finished_body(fake, job)

    with run_on_commit():
        refused = post_signed(client, fake, body)  # the fake's own secret is not ours now
        accepted = post_signed(client, fake, body, secret=settings.REPLICATE_WEBHOOK_SECRET)

    assert (refused.status_code, accepted.status_code) == (401, 200)
    assert not fake.calls("GET", "/v1/webhooks/")
    job.refresh_from_db()
    assert job.status == Job.COMPLETED


def test_when_the_secret_cannot_be_fetched_the_webhook_is_answered_503_so_replicate_retries(fake, client):
    fake.token = "r8_other"  # Replicate refuses our token
    response = post_signed(client, fake, {"id": "abc"})
    assert response.status_code == 503 and response["Retry-After"]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "needs the headers"),
        ({"HTTP_WEBHOOK_ID": "m", "HTTP_WEBHOOK_TIMESTAMP": "soon", "HTTP_WEBHOOK_SIGNATURE": "v1,x"}, "whole seconds"),
        ({"HTTP_WEBHOOK_ID": "m", "HTTP_WEBHOOK_TIMESTAMP": "{now}", "HTTP_WEBHOOK_SIGNATURE": "v2,x"}, "no v1"),
    ],
    ids=["no_headers", "bad_timestamp", "no_v1_signature"],
)
def test_missing_or_malformed_signature_headers_get_a_4xx_that_says_what_is_wrong(fake, client, headers, message):
    headers = {name: value.replace("{now}", str(int(time.time()))) for name, value in headers.items()}
    response = client.post(reverse("provider-hook-signed", args=["replicate"]), b"{}", "application/json", **headers)
    assert response.status_code in (400, 401)
    assert message in response.json()["error"]["message"]


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"id": 7}', b'{"id": "../etc"}', b"[" * 100000])
def test_a_signed_but_malformed_body_is_a_400(fake, client, body):
    response = post_signed(client, fake, body)
    assert response.status_code == 400
    assert "JSON object with its string id" in response.json()["error"]["message"]


def test_an_oversized_body_is_a_413_before_it_is_read(fake, client):
    response = post_signed(client, fake, b'{"id": "' + b"a" * (1024 * 1024) + b'"}')
    assert response.status_code == 413 and "at most 1024 KB" in response.json()["error"]["message"]


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_the_hooks_take_only_post(fake, client, method):
    job = make_job(provider="replicate")
    for path in (
        reverse("provider-hook-signed", args=["replicate"]),
        reverse("provider-hook-token", args=["replicate", links.token("replicate", job.pk)]),
    ):
        response = getattr(client, method)(path)
        assert response.status_code == 405 and response["Allow"] == "POST"


def test_signed_webhooks_of_a_provider_that_does_not_sign_are_not_found(fake, client):
    response = client.post("/hooks/pipelet", b"{}", "application/json")
    assert response.status_code == 404


def test_the_hooks_need_no_csrf_token(fake, client, settings):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = post_signed(strict, fake, {"id": "nosuchprediction0000"})
    assert response.status_code == 200


def test_too_many_calls_from_one_address_are_refused_with_retry_after(fake, client, settings):
    settings.PROVIDER_WEBHOOK_RATE = "3/minute"
    answers = [client.post("/hooks/replicate/nonsense", b"{}", "application/json").status_code for _ in range(4)]
    assert answers == [404, 404, 404, 429]
    response = client.post("/hooks/replicate/nonsense", b"{}", "application/json")
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1


# --- the unsigned route ----------------------------------------------------------------


def test_an_unsigned_webhook_with_a_bad_token_is_404_and_changes_nothing(fake, client, run_on_commit):
    job = waiting_job(fake)
    before = snapshot(job)
    other = make_job(provider="replicate")
    for token in (
        "nonsense",
        f"{job.pk.hex}.{'A' * 43}",
        links.token("replicate", other.pk).replace(other.pk.hex, job.pk.hex),
        links.token("pipelet", job.pk),  # made for another provider
    ):
        with run_on_commit():
            response = client.post(reverse("provider-hook-token", args=["replicate", token]), b"{}", "application/json")
        assert response.status_code == 404, token
        assert response.json()["error"]["message"] == "No such webhook address."
    assert snapshot(job) == before and gets(fake, job.provider_job_id) == 0


def test_an_unsigned_webhook_with_a_good_token_triggers_exactly_one_poll(fake, client, run_on_commit, monkeypatch):
    monkeypatch.setattr(pipeline, "MIN_POLL_GAP", 0.0)  # the second call comes at once
    job = waiting_job(fake)
    path = reverse("provider-hook-token", args=["replicate", links.token("replicate", job.pk)])

    with run_on_commit():
        response = client.post(path, b'{"status": "succeeded", "output": "https://evil.example/x.mp4"}', "text/plain")

    assert response.status_code == 200
    job.refresh_from_db()
    assert gets(fake, job.provider_job_id) == 1 and job.polls == 1
    assert job.status == Job.RUNNING  # the body was not believed: the poll says it is still running

    fake.finish(job.provider_job_id)
    with run_on_commit():
        assert client.post(path, b"", "application/json").status_code == 200
    job.refresh_from_db()
    assert job.status == Job.COMPLETED and gets(fake, job.provider_job_id) == 2


def test_pokes_before_the_look_they_asked_for_add_no_poll(fake, client, run_on_commit):
    job = waiting_job(fake)
    path = reverse("provider-hook-token", args=["replicate", links.token("replicate", job.pk)])
    # Three calls before any worker takes the job: one look is arranged.
    for _ in range(3):
        assert client.post(path, b"{}", "application/json").status_code == 200
    job.refresh_from_db()
    assert job.poked_at is not None and job.next_poll_at > timezone.now()
    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert gets(fake, job.provider_job_id) == 1 and job.polls == 1


def test_a_webhook_for_a_finished_job_is_a_no_op(fake, client, run_on_commit):
    job = waiting_job(fake)
    body = finished_body(fake, job)
    with run_on_commit():
        post_signed(client, fake, body)
    path = reverse("provider-hook-token", args=["replicate", links.token("replicate", job.pk)])
    with run_on_commit():
        assert client.post(path, b"{}", "application/json").status_code == 200
        assert post_signed(client, fake, body).status_code == 200
    job.refresh_from_db()
    assert job.status == Job.COMPLETED and gets(fake, job.provider_job_id) == 1


# --- a webhook while the poll is in flight, without processes ----------------------------


def test_a_poke_during_a_poll_makes_the_job_due_at_release_and_skips_the_floor_once(fake):
    job = waiting_job(fake)
    claimed = pipeline.claim(job.pk)
    from jobs.provider_hooks.look import look_now

    assert look_now(job.pk) is True  # held by the claim: nothing is dispatched, the poke waits
    assert look_now(job.pk) is False  # one look is arranged already
    claimed.next_poll_at = timezone.now() + timedelta(seconds=600)
    pipeline.release(claimed, finished_cleanly=True)
    job.refresh_from_db()
    assert job.next_poll_at <= timezone.now()  # due now, not in 600 s
    assert pipeline.poked(job)


# --- housekeeping ------------------------------------------------------------------------


def test_receipts_older_than_a_day_are_pruned(fake):
    old = ProviderWebhookReceipt.objects.create(
        provider="replicate", webhook_id="msg_old", received_at=timezone.now() - timedelta(days=1, minutes=1)
    )
    new = ProviderWebhookReceipt.objects.create(provider="replicate", webhook_id="msg_new")
    assert prune_receipts() == 1
    assert list(ProviderWebhookReceipt.objects.values_list("pk", flat=True)) == [new.pk] != [old.pk]
