"""The login page's "make run printed a demo login" hint is shown only where
``demouser`` made that login on this install, so production never shows it."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
HINT = "printed a demo login"


@pytest.fixture(autouse=True)
def _own_var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"


def login_page(client) -> str:
    return client.get(reverse("login")).content.decode()


def test_an_install_without_the_demo_login_does_not_mention_one(client, settings):
    settings.DEBUG = True  # not the test: a debug install without a demo user says nothing either
    assert HINT not in login_page(client)


def test_a_user_named_demo_made_some_other_way_does_not_bring_the_hint(client):
    UserFactory(username="demo")
    assert HINT not in login_page(client)


def test_after_demouser_the_login_page_mentions_the_demo_login_and_it_works(client, capsys):
    call_command("demouser")
    printed = capsys.readouterr().out.split()
    password = printed[printed.index("password") + 1]
    assert HINT in login_page(client)
    assert client.login(username="demo", password=password)


def test_a_deactivated_demo_account_is_not_advertised(client):
    call_command("demouser")
    get_user_model().objects.filter(username="demo").update(is_active=False)
    assert HINT not in login_page(client)
