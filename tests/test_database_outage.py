"""A database outage under ``serve``: everything waits, nothing dies, every job finishes.

The outage is real as the processes see it: their database address is a TCP
proxy that the test cuts (open sessions dropped, new ones refused) and
restores. PostgreSQL only: SQLite has no connection to lose.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client, RequestFactory

from jobs.apikeys import create_api_key
from jobs.middleware import DatabaseOutageMiddleware
from jobs.models import Job
from tests.factories import UserFactory, make_job
from tests.processes import free_port, wait_until
from tests.tcp_proxy import TcpProxy

OUTAGE_SECONDS = 8


def fetch(url: str, **headers: str) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
    except OSError:
        return 0, {}, b""


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


@pytest.fixture
def database_proxy():
    db = connection.settings_dict
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("a database outage through a TCP proxy needs PostgreSQL")
    host, port = db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)
    proxy = TcpProxy((host, port))
    yield proxy
    proxy.close()
    # The killed processes' sessions end a moment after them; the test
    # database can only be dropped once they have.
    import psycopg

    with psycopg.connect(host=host, port=port, user=db.get("USER") or "postgres", dbname="postgres") as admin:
        wait_until(
            lambda: (
                admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db["NAME"],)).fetchone()[0]
                <= 1
            ),  # this test's own
            20,
            lambda: str(
                admin.execute(
                    "SELECT pid, client_port, backend_start, state, left(query, 80) FROM pg_stat_activity"
                    " WHERE datname = %s",
                    (db["NAME"],),
                ).fetchall()
            ),
        )


def test_a_lost_connection_answers_503_in_the_api_error_shape():
    from django.db import OperationalError

    middleware = DatabaseOutageMiddleware(lambda request: None)
    request = RequestFactory().get("/api/v1/jobs")
    response = middleware.process_exception(request, OperationalError("connection refused"))
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert json.loads(response.content)["error"]["code"] == "database_unavailable"
    page = middleware.process_exception(RequestFactory().get("/videos/"), OperationalError("gone"))
    assert page.status_code == 503 and page["Content-Type"].startswith("text/plain")
    assert middleware.process_exception(request, ValueError("a bug")) is None  # bugs stay 500s


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_serve_rides_out_a_database_outage_and_every_job_finishes(database_proxy, cluster_factory):
    db = connection.settings_dict
    through_proxy = f"postgres://{db.get('USER') or 'postgres'}@127.0.0.1:{database_proxy.port}/{db['NAME']}"
    # (The proxy fixture comes first so that it goes last, after the processes.)
    cluster = cluster_factory(DATABASE_URL=through_proxy, LOCAL_FRAMES="48", WORKER_STOP_GRACE="3")
    port = free_port()
    serve = cluster.start("serve", "--bind", f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    user = UserFactory()
    _, secret = create_api_key(user=user)
    auth = {"Authorization": f"Bearer {secret}"}
    wait_until(lambda: fetch(f"{base}/api/v1/jobs", **auth)[0] == 200, 90, cluster.log_text)

    jobs = [make_job(user, enqueue=True) for _ in range(6)]
    wait_until(lambda: Job.objects.filter(status=Job.COMPLETED).exists(), 60, cluster.log_text)

    database_proxy.cut()
    cut_at = time.monotonic()
    _, headers, body = wait_until(
        lambda: (answer := fetch(f"{base}/api/v1/jobs", **auth))[0] == 503 and answer, 30, cluster.log_text
    )
    assert headers["Retry-After"] == "5" and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "database_unavailable"
    assert fetch(f"{base}/videos/", Cookie=session_cookie(user))[0] == 503
    wait_until(lambda: "sweeper: cannot use the database" in cluster.log_text(), 30, cluster.log_text)
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - cut_at)))  # the outage lasts this long
    database_proxy.restore()

    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline
        and Job.objects.filter(pk__in=[j.pk for j in jobs]).exclude(status=Job.COMPLETED).exists()
    ):
        time.sleep(0.5)
    statuses = dict(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("pk", "status"))
    assert set(statuses.values()) == {Job.COMPLETED}, (statuses, cluster.log_text()[-4000:])
    assert serve.poll() is None
    assert fetch(f"{base}/api/v1/jobs", **auth)[0] == 200
    assert "sweeper: working again" in cluster.log_text()
    assert "exited with code" not in cluster.log_text()  # rode it out: nothing had to be started again
