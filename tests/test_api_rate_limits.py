"""Request budgets: one per user across their keys, counted atomically across
web processes, and wrong keys throttled per client address."""

from __future__ import annotations

import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from jobs.api import ratelimit
from jobs.api.auth import PerUserThrottle
from jobs.apikeys import create_api_key
from jobs.models import ApiKey
from tests.api_helpers import key_client
from tests.factories import UserFactory
from tests.live_web import LiveWeb

pytestmark = pytest.mark.django_db


@pytest.fixture
def rate(monkeypatch):
    def set_rate(value: str) -> None:
        monkeypatch.setattr(PerUserThrottle, "THROTTLE_RATES", {"api": value})

    return set_rate


def wrong_key_client(address: str = "203.0.113.7", **extra) -> APIClient:
    api = APIClient(REMOTE_ADDR=address, **extra)
    api.credentials(HTTP_AUTHORIZATION="Bearer i2v_deadbeef_not-a-real-key")
    return api


def test_a_user_over_the_budget_is_answered_429_with_retry_after(rate):
    rate("3/minute")
    api, other = key_client(), key_client()
    codes = [api.get("/api/v1/credits").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = api.get("/api/v1/credits")
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "throttled" in refused.json()["error"]["message"].lower()
    assert other.get("/api/v1/credits").status_code == 200  # another user has a budget of their own


def test_five_keys_of_one_user_share_one_budget(rate):
    rate("10/minute")
    user = UserFactory()
    clients = []
    for n in range(5):
        clients.append(APIClient())
        clients[-1].credentials(HTTP_AUTHORIZATION=f"Bearer {create_api_key(user=user, name=f'k{n}')[1]}")
    codes = [clients[n % 5].get("/api/v1/credits").status_code for n in range(15)]
    assert codes == [200] * 10 + [429] * 5


def test_the_signed_in_session_spends_the_same_budget_as_the_keys(rate, client):
    rate("4/minute")
    api = key_client()
    client.force_login(api.user)
    assert [api.get("/api/v1/credits").status_code for _ in range(2)] == [200, 200]
    assert [client.get("/api/v1/credits").status_code for _ in range(3)] == [200, 200, 429]
    assert api.get("/api/v1/credits").status_code == 429


def test_wrong_keys_from_one_address_get_429_after_the_limit(settings):
    settings.API_AUTH_FAILURE_RATE = "5/minute"
    guesser = wrong_key_client("203.0.113.7")
    codes = [guesser.get("/api/v1/credits").status_code for _ in range(8)]
    assert codes == [401] * 5 + [429] * 3
    refused = guesser.get("/api/v1/credits")
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "wrong API keys" in refused.json()["error"]["message"]
    # A right key from that address is refused too: otherwise the guesser would learn which guess was right.
    right = key_client()
    right.defaults["REMOTE_ADDR"] = "203.0.113.7"
    assert right.get("/api/v1/credits").status_code == 429
    # Other addresses are not affected.
    assert wrong_key_client("198.51.100.9").get("/api/v1/credits").status_code == 401
    assert key_client().get("/api/v1/credits").status_code == 200


def test_a_right_key_refused_for_its_address_spends_nothing_and_is_not_noted_as_used(settings, rate):
    rate("2/minute")
    settings.API_AUTH_FAILURE_RATE = "1/minute"
    assert wrong_key_client("203.0.113.9").get("/api/v1/credits").status_code == 401
    right = key_client()
    right.defaults["REMOTE_ADDR"] = "203.0.113.9"
    assert [right.get("/api/v1/credits").status_code for _ in range(3)] == [429] * 3
    assert ApiKey.objects.get(user=right.user).last_used_at is None
    right.defaults["REMOTE_ADDR"] = "198.51.100.10"
    assert [right.get("/api/v1/credits").status_code for _ in range(3)] == [200, 200, 429]  # the whole budget


def counters(settings, tmp_path):
    """Each kind of counter this machine can run: files, a cache's add and incr, and Redis when configured."""
    settings.CACHES = {**settings.CACHES, "counting": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    found = [ratelimit.FileCounter(tmp_path), ratelimit.CacheCounter(caches["counting"])]
    if os.environ.get("CACHE_URL", "").startswith("redis"):
        found.append(ratelimit.RedisCounter(caches["default"]))
    return found


def test_every_counter_counts_a_bucket_only_while_its_guard_has_room(settings, tmp_path):
    for counter in counters(settings, tmp_path):
        counter.hit("guard", 60)
        first = counter.hit_unless_spent("guard", 60, 2, "user:1", 60)
        assert (first.spent, first.counted.count) == (None, 1), counter
        counter.hit("guard", 60)
        refused = counter.hit_unless_spent("guard", 60, 2, "user:1", 60)
        assert (refused.spent.count, refused.counted) == (2, None), counter
        assert 0 < refused.spent.resets_in <= 60
        assert counter.peek("user:1", 60).count == 1, counter  # the refused one was not counted


@pytest.mark.skipif(not os.environ.get("CACHE_URL", "").startswith("redis"), reason="runs with CACHE_URL=redis://…")
def test_a_keyed_api_request_costs_one_redis_round_trip_for_both_budgets(monkeypatch):
    api = key_client()
    api.get("/api/v1/credits")  # the key's first use, and the script loaded
    client = ratelimit.counter()._redis()
    sent = []
    real = type(client).execute_command

    def counting(self, *args, **options):
        sent.append(args[0])
        return real(self, *args, **options)

    monkeypatch.setattr(type(client), "execute_command", counting)
    assert api.get("/api/v1/credits").status_code == 200
    assert sent == ["EVALSHA"]


def test_revoked_and_unknown_keys_count_as_failures(settings):
    settings.API_AUTH_FAILURE_RATE = "2/minute"
    api = key_client()
    api.defaults["REMOTE_ADDR"] = "203.0.113.8"
    api.delete(f"/api/v1/keys/{api.raw_key.split('_')[1]}")
    assert [api.get("/api/v1/credits").status_code for _ in range(3)] == [401, 401, 429]


def test_x_forwarded_for_is_ignored_unless_proxies_are_trusted(settings):
    settings.API_AUTH_FAILURE_RATE = "3/minute"
    codes = [
        wrong_key_client("203.0.113.7", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").get("/api/v1/credits").status_code
        for n in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]  # a made-up X-Forwarded-For does not buy new guesses


def test_behind_a_trusted_proxy_the_address_it_saw_is_counted(settings):
    settings.API_AUTH_FAILURE_RATE = "2/minute"
    settings.API_TRUSTED_PROXIES = 1
    proxy = "10.0.0.1"
    # The client may prepend anything; the proxy appends the address it saw, which is what counts.
    guesses = [
        wrong_key_client(proxy, HTTP_X_FORWARDED_FOR=f"1.1.1.{n}, 203.0.113.7").get("/api/v1/credits").status_code
        for n in range(3)
    ]
    assert guesses == [401, 401, 429]
    other = wrong_key_client(proxy, HTTP_X_FORWARDED_FOR="198.51.100.9").get("/api/v1/credits")
    assert other.status_code == 401  # another client behind the same proxy


def test_ipv6_clients_are_counted_per_64_block(settings):
    settings.API_AUTH_FAILURE_RATE = "2/minute"
    codes = [wrong_key_client(f"2001:db8:1:2::{n}").get("/api/v1/credits").status_code for n in range(1, 4)]
    assert codes == [401, 401, 429]
    assert wrong_key_client("2001:db8:1:3::1").get("/api/v1/credits").status_code == 401


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("Token i2v_deadbeef_secret", "uses the 'Token' scheme"),
        ("i2v_deadbeef_secret", "bare value without the 'Bearer' scheme"),
        ("Basic dXNlcjpwYXNz", "uses the 'Basic' scheme"),
        ("Bearer", "no key after 'Bearer'"),
    ],
)
def test_a_wrong_authorization_header_says_how_to_send_the_key(header, problem):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=header)
    response = api.get("/api/v1/credits")
    assert response.status_code == 401
    message = response.json()["error"]["message"]
    assert problem in message
    assert "Authorization: Bearer <key>" in message
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "secret" not in message


def test_a_signed_in_page_behind_a_proxy_that_sends_its_own_authorization_still_works(client, user):
    client.force_login(user)
    assert client.get("/api/v1/credits", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz").status_code == 200


# --- counting: atomic, across processes ------------------------------------------------


EPOCH = 10**9  # seconds: a window no burst crosses


def hits_in_parallel(count, bucket: str, n: int, threads: int = 20) -> list[int]:
    barrier = threading.Barrier(threads)

    def hit(i):
        if i < threads:
            barrier.wait()
        return count.hit(bucket, EPOCH).count

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(hit, range(n)))


def test_the_file_counter_never_hands_out_a_count_twice(tmp_path):
    counts = hits_in_parallel(ratelimit.FileCounter(tmp_path), "user:1", 400)
    assert sorted(counts) == list(range(1, 401))


def test_the_cache_counter_never_hands_out_a_count_twice(settings):
    # Redis and Memcached increment atomically; the local-memory cache does so under a lock, which is
    # enough to check the counter's own logic (add, then incr, per window) here.
    settings.CACHES = {**settings.CACHES, "counting": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    counts = hits_in_parallel(ratelimit.CacheCounter(caches["counting"]), "user:1", 400)
    assert sorted(counts) == list(range(1, 401))


@pytest.mark.skipif(not os.environ.get("CACHE_URL", "").startswith("redis"), reason="runs with CACHE_URL=redis://…")
def test_the_redis_counter_never_hands_out_a_count_twice_and_counts_the_caches_own_buckets():
    cache = caches["default"]
    counts = hits_in_parallel(ratelimit.RedisCounter(cache), "user:1", 400)
    assert sorted(counts) == list(range(1, 401))
    # The same keys and values as through the cache's API, and each expires with its window.
    assert ratelimit.CacheCounter(cache).hit("user:1", EPOCH).count == 401
    assert ratelimit.RedisCounter(cache).peek("user:1", EPOCH).count == 401
    key = cache.make_and_validate_key(f"rl:user:1:{int(time.time() // EPOCH)}")
    assert 0 < cache._cache.get_client(write=True).ttl(key) <= EPOCH + 1
    assert ratelimit.RedisCounter(cache).peek("user:2", EPOCH).count == 0


def test_stale_counter_files_are_pruned_and_live_ones_kept(tmp_path):
    counter = ratelimit.FileCounter(tmp_path)
    counter.hit("ip:old", 60)
    counter.hit("ip:live", 60)
    old = Path(counter._path("ip:old"))
    with old.open("r+b") as handle:  # its last count was three windows ago
        handle.write(ratelimit._RECORD.pack(int(time.time() // 60) - 3, 5))
    counter.prune(old.parent, 60)
    counter.prune(Path(counter._path("ip:live")).parent, 60)
    assert not old.exists()
    assert counter.peek("ip:live", 60).count == 1
    assert counter.hit("ip:old", 60).count == 1


def spread_over(web: LiveWeb, requests: list[dict[str, str]], threads: int = 20) -> tuple[list[int], int]:
    """Send the requests from ``threads`` threads at once; their status codes and the
    number of hour windows the burst touched."""
    barrier = threading.Barrier(threads)

    def send(i):
        if i < threads:
            barrier.wait()
        return web.get("/api/v1/credits", requests[i])[0]

    started = time.time()
    with ThreadPoolExecutor(threads) as pool:
        codes = list(pool.map(send, range(len(requests))))
    windows = int(time.time() // 3600) - int(started // 3600) + 1
    return codes, windows


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_to_several_web_processes_never_exceed_the_budget(settings, tmp_path):
    user = UserFactory()
    keys = [create_api_key(user=user, name=f"k{n}")[1] for n in range(5)]
    web = LiveWeb(settings, tmp_path, workers=3, API_RATE="120/hour")
    try:
        codes, windows = spread_over(web, [{"Authorization": f"Bearer {keys[n % 5]}"} for n in range(300)])
    finally:
        web.stop()
    assert set(codes) <= {200, 429}
    if windows == 1:
        assert codes.count(200) == 120
    else:  # the burst straddled the turn of an hour
        assert codes.count(200) <= 240


@pytest.mark.django_db(transaction=True)
def test_concurrent_wrong_keys_to_several_web_processes_get_429_after_the_limit(settings, tmp_path):
    web = LiveWeb(settings, tmp_path, workers=3, API_AUTH_FAILURE_RATE="20/hour")
    try:
        codes, windows = spread_over(web, [{"Authorization": f"Bearer i2v_{n:08x}_guess"} for n in range(200)])
    finally:
        web.stop()
    assert set(codes) <= {401, 429}
    assert codes.count(401) <= 20 * windows
    assert codes.count(429) >= 200 - 20 * windows


def test_wrong_keys_on_the_compat_result_poll_spend_the_same_failure_budget(settings):
    settings.API_AUTH_FAILURE_RATE = "3/minute"
    guesser = wrong_key_client("203.0.113.9")
    url = f"/api/img2video/result/{uuid.uuid4().hex}"
    codes = [guesser.get(url).status_code for _ in range(5)]
    assert codes == [401] * 3 + [429] * 2
    refused = guesser.get(url)
    assert "wrong API keys" in refused.json()["error"]
    assert 0 < int(refused["Retry-After"]) <= 60
    assert guesser.get("/api/v1/credits").status_code == 429  # one budget for every endpoint that takes a key
