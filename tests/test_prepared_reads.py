"""Reads built once (``jobs.prepared_reads``) give what their queryset gives, for each call's own values."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import apikeys
from jobs.models import ApiKey, Job
from jobs.prepared_reads import PreparedRead
from tests.factories import UserFactory, make_job

pytestmark = pytest.mark.django_db

KEY_WITH_USER = PreparedRead(
    ApiKey,
    lambda prefix: ApiKey.objects.active().select_related("user").filter(prefix=prefix).order_by()[:1],
    "prefix",
)


def fields_of(obj) -> dict:
    return {field.attname: getattr(obj, field.attname) for field in type(obj)._meta.concrete_fields}


def test_a_key_read_gives_the_querysets_key_and_user_in_one_query(django_assert_num_queries):
    user = UserFactory()
    key, _ = apikeys.create_api_key(user=user, name="ci")
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now() - timedelta(hours=2))
    expected = ApiKey.objects.select_related("user").get(pk=key.pk)

    with django_assert_num_queries(1):
        found = KEY_WITH_USER.first(prefix=key.prefix)
        assert found.user.email == user.email

    assert fields_of(found) == fields_of(expected)  # datetimes aware and equal on both databases
    assert fields_of(found.user) == fields_of(expected.user)
    assert found.last_used_at.tzinfo is not None


def test_each_call_reads_its_own_values_and_keeps_the_querysets_conditions():
    first, second = UserFactory(), UserFactory()
    key_a, _ = apikeys.create_api_key(user=first)
    key_b, _ = apikeys.create_api_key(user=second)
    assert KEY_WITH_USER.first(prefix=key_a.prefix).user == first
    assert KEY_WITH_USER.first(prefix=key_b.prefix).user == second
    assert KEY_WITH_USER.first(prefix="nosuch") is None

    apikeys.revoke_api_key(key_a)
    assert KEY_WITH_USER.first(prefix=key_a.prefix) is None  # active() is part of the built query


def test_a_read_of_some_fields_leaves_the_others_deferred():
    owner = UserFactory(credits=10)
    job = make_job(owner)
    read = PreparedRead(
        Job,
        lambda pk, owner: Job.objects.filter(pk=pk, owner=owner).only("id", "status").order_by()[:1],
        "pk",
        "owner",
    )
    found = read.first(pk=job.pk, owner=owner.pk)
    assert (found.pk, found.status) == (job.pk, job.status)
    assert "provider" in found.get_deferred_fields()
    assert read.first(pk=job.pk, owner=UserFactory().pk) is None  # someone else's job is not found


def test_a_missing_related_row_reads_as_none_as_with_the_queryset():
    owner = UserFactory(credits=10)
    job = make_job(owner)  # made by the native API's path: no queue request behind it
    read = PreparedRead(
        Job,
        lambda pk: Job.objects.filter(pk=pk).select_related("queue_request").order_by()[:1],
        "pk",
    )
    found = read.first(pk=job.pk)
    assert getattr(found, "queue_request", None) is None


def test_a_queryset_whose_stand_in_is_not_among_its_parameters_is_refused_not_run():
    read = PreparedRead(ApiKey, lambda prefix: ApiKey.objects.filter(name="x").order_by()[:1], "prefix")
    with pytest.raises(LookupError, match="prefix"):
        read.first(prefix="anything")


def test_a_read_keyed_on_a_field_it_has_no_stand_in_for_is_refused_when_declared():
    with pytest.raises(TypeError, match="DateTimeField"):
        PreparedRead(Job, lambda created_at: Job.objects.filter(created_at=created_at)[:1], "created_at")
