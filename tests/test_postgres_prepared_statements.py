"""On PostgreSQL the hottest statements (the key lookup, a status poll's job, a
worker's claim of a job) are prepared, parsed and planned once per connection,
unless ``DATABASE_URL`` says ``prepared_statements=false``.

PostgreSQL only: SQLite's module keeps its own statement cache.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from jobs import apikeys, pipeline
from jobs.models import ApiKey
from tests.factories import UserFactory, make_job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")


@pytest.fixture
def prepared_statements_off():
    options = connection.settings_dict["OPTIONS"]
    options["prepared_statements"] = False
    yield
    options["prepared_statements"] = True


def prepared_statements() -> list[tuple[str, int]]:
    """This connection's prepared statements, and how often each ran."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        return cursor.fetchall()


def prepared() -> dict[str, int]:
    """The reads among them: the table of the first column each reads, and how often each ran."""
    return {
        statement.split('"')[1]: runs for statement, runs in prepared_statements() if statement.startswith("SELECT")
    }


def poll(client, key: str, job) -> dict:
    response = client.get(f"/api/v1/jobs/{job.pk}", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200, response.content
    return response.json()


def test_polls_run_the_key_and_job_reads_prepared_once_per_connection(client):
    owner = UserFactory()
    _, key = apikeys.create_api_key(user=owner)
    job = make_job(owner)

    first, second = poll(client, key, job), poll(client, key, job)

    assert first["id"] == second["id"] == str(job.pk)
    # Prepared on the first poll, run again by the second: parsed and planned once.
    assert prepared() == {"jobs_apikey": 2, "jobs_job": 2}


def test_with_prepared_statements_off_the_same_polls_prepare_nothing(client, prepared_statements_off):
    owner = UserFactory()
    _, key = apikeys.create_api_key(user=owner)
    job = make_job(owner)

    assert poll(client, key, job)["id"] == str(job.pk)
    assert poll(client, key, job)["id"] == str(job.pk)

    assert prepared() == {}


def test_a_read_prepared_in_a_transaction_that_rolled_back_still_answers(client):
    owner = UserFactory()
    stored, key = apikeys.create_api_key(user=owner)
    job = make_job(owner)

    with pytest.raises(RuntimeError), transaction.atomic():
        assert apikeys.find_key(key) == stored  # prepared inside the transaction
        raise RuntimeError("rolled back")

    assert apikeys.find_key(key) == stored
    assert poll(client, key, job)["status"] == job.status


def test_a_revoked_key_is_refused_by_the_prepared_read_at_once(client):
    owner = UserFactory()
    stored, key = apikeys.create_api_key(user=owner)
    job = make_job(owner)
    poll(client, key, job)  # the key read is prepared now

    ApiKey.objects.filter(pk=stored.pk).update(revoked_at=stored.created_at)

    response = client.get(f"/api/v1/jobs/{job.pk}", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 401


def test_a_workers_claims_run_one_prepared_statement():
    owner = UserFactory()
    first, second = make_job(owner), make_job(owner)

    assert [job.pk for job in pipeline.claim_many([first.pk])] == [first.pk]
    assert [job.pk for job in pipeline.claim_many([second.pk])] == [second.pk]

    claims = [runs for statement, runs in prepared_statements() if statement.startswith("UPDATE")]
    assert claims == [2]


def test_with_prepared_statements_off_a_claim_prepares_nothing(prepared_statements_off):
    job = make_job(UserFactory())

    assert [claimed.pk for claimed in pipeline.claim_many([job.pk])] == [job.pk]
    assert prepared_statements() == []
